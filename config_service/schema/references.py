"""How schemas name and reach each other: the walk over subschemas, `$id`s and `$ref`s, the registry.

A schema is known by its name only (docs/server.md, "Schemas"): the registry holds every
current schema under `<name>.json`, a schema's `$id` (or draft-04 `id`) may only repeat that
name at its top level, and a schema may `$ref` itself and the section schemas, nothing else.
So no schema can stand in for another, and no team's schema reaches another team's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urljoin

from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from config_service.tsk import json_pointer, pointer_key


def schema_file_name(name: str) -> str:
    """The name under which schema `name` is known: `<name>.json`."""
    return f"{name}.json"


# -- the walk over subschemas -------------------------------------------------------------------

# Keywords whose value is one subschema, an object of subschemas, or an array of subschemas:
# where `pattern`, `patternProperties` and identifiers can appear as keywords rather than as
# data. Older drafts' positions (`additionalItems`, `dependencies`, `items` as an array) are
# walked too: a subschema that names such a draft is crawled by its rules.
_ONE_SUBSCHEMA = (
    "additionalProperties", "unevaluatedProperties", "propertyNames", "items", "contains",
    "unevaluatedItems", "not", "if", "then", "else", "contentSchema", "additionalItems",
)
_SUBSCHEMA_OBJECTS = (
    "properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies",
)
_SUBSCHEMA_ARRAYS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")


def subschemas(
    schema: Any, path: tuple[Any, ...] = (), seen: set[int] | None = None
) -> Iterator[tuple[dict[str, Any], tuple[Any, ...]]]:
    """Every subschema (object) of a schema in a keyword position, with its path in the schema.

    `seen` (ids of the subschemas walked already) lets several walks share the work.
    """
    seen = set() if seen is None else seen
    pending = [(schema, path)]
    while pending:
        node, where = pending.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        yield node, where
        for keyword in _ONE_SUBSCHEMA:
            if keyword in node:
                pending.append((node[keyword], (*where, keyword)))
        for keyword in _SUBSCHEMA_OBJECTS:
            children = node.get(keyword)
            if isinstance(children, dict):
                pending.extend((child, (*where, keyword, key)) for key, child in children.items())
        for keyword in _SUBSCHEMA_ARRAYS:
            children = node.get(keyword)
            if isinstance(children, list):
                pending.extend((child, (*where, keyword, index)) for index, child in enumerate(children))


def pointer_targets(schema: Any) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """What each `"$ref": "#/..."` of `schema` points at, with its path: a `$ref` can make a
    schema of any part of the document, not only of what stands at a keyword position."""
    for reference in sorted(set(references(schema))):
        if not reference.startswith("#/"):
            continue
        node, path = schema, list[Any]()
        for token in reference[2:].split("/"):
            part = pointer_key(unquote(token))
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                path.append(int(part))
            else:
                break
        else:
            yield node, tuple(path)


def schema_positions(schema: Any) -> Iterator[tuple[dict[str, Any], tuple[Any, ...]]]:
    """Every subschema of `schema`, and of what its `"#/..."` references make schemas of."""
    seen: set[int] = set()
    for root, where in [(schema, ()), *pointer_targets(schema)]:
        yield from subschemas(root, where, seen)


# -- a schema is known by its name only ---------------------------------------------------------

# `$id` names a schema in draft 6 and later, `id` in draft 4 (a subschema may name its draft).
_IDENTIFIERS = ("$id", "id")


# Keys that move the base a part of the schema is read against, wherever they stand. What the
# metaschema reads as data (`default`, `examples`, `const`, an unknown keyword) still becomes a
# schema when a `$ref` points into it, under any spelling of the schema's own address, so their
# position cannot clear them. No TSK document has a key that starts with `$`, so refusing them
# below the top level costs a schema nothing it could use.
_BASE_KEYWORDS = ("$id", "$schema")
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _foreign_identifiers(name: str, schema: Any) -> list[tuple[tuple[Any, ...], str, Any]]:
    """(path, keyword, value) of every identifier in `schema` other than its own top-level name,
    and of every `$id` or `$schema` below the top level, in document order."""
    own = schema_file_name(name)
    found: dict[tuple[tuple[Any, ...], str], Any] = {}
    for node, path in schema_positions(schema):
        for keyword in _IDENTIFIERS:
            value = node.get(keyword)
            if isinstance(value, str) and not (path == () and value.rstrip("#") == own):
                found[(path, keyword)] = value
    if isinstance(schema, dict):
        dialect = schema.get("$schema", _DIALECT)
        if not isinstance(dialect, str) or dialect.rstrip("#") != _DIALECT:
            found[((), "$schema")] = dialect
    stack: list[tuple[Any, tuple[Any, ...]]] = [(schema, ())]
    while stack:  # no recursion: the depth of a schema is the client's to choose
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key in _BASE_KEYWORDS and path != ():
                    found[(path, key)] = child
                stack.append((child, (*path, key)))
        elif isinstance(node, list):
            stack.extend((child, (*path, index)) for index, child in enumerate(node))
    return [
        (path, keyword, value)
        for (path, keyword), value in sorted(found.items(), key=lambda item: _order(item[0]))
    ]


def _order(key: tuple[tuple[Any, ...], str]) -> tuple[Any, ...]:
    path, keyword = key
    return (tuple((0, step) if isinstance(step, int) else (1, str(step)) for step in path), keyword)


def identifier_failures(name: str, schema: Any) -> list[dict[str, str]]:
    """`{path, message}` for every `$id` or `id` by which `schema` would be known as anything
    but `<name>.json`: at its top level another name, and below it any name at all (an embedded
    identifier makes a schema of its own)."""
    own = schema_file_name(name)
    failures = []
    for path, keyword, value in _foreign_identifiers(name, schema):
        where = "" if path == () else " inside the schema"
        if keyword == "$schema":
            message = (
                f"$schema {value!r}{where} would read part of the schema in another dialect: "
                f"schemas are draft 2020-12; leave $schema out, or put {_DIALECT!r} at the top level"
            )
        else:
            message = (
                f"{keyword} {value!r}{where} would name a schema other than this one: "
                f"a schema is known by its name only, as {own!r}; leave {keyword} out, or put "
                f"{own!r} at the top level"
            )
        failures.append({"path": json_pointer((*path, keyword)), "message": message})
    if failures:
        return failures
    # Whatever the walk above missed, the resolver itself would register: ask it.
    try:
        resource = Resource.from_contents(schema, default_specification=DRAFT202012)
        known = set(Registry().with_resource(own, resource).crawl())
    except ValueError as error:  # an identifier that is not a URI
        return [{"path": "", "message": f"an identifier in the schema is not a valid URI: {error}"}]
    return [
        {
            "path": "",
            "message": f"the schema names a schema {uri!r} inside it: a schema is known by its "
            f"name only, as {own!r}",
        }
        for uri in sorted(known - {own})
    ]


def known_by_name(name: str, schema: Any) -> Any:
    """`schema` without identifiers other than its own name (a copy when there are any).

    A schema stored before identifiers were checked could otherwise answer for another
    schema's name in the registry, or move the base of its own references.
    """
    foreign = _foreign_identifiers(name, schema) if isinstance(schema, dict) else []
    if not foreign:
        return schema
    result = dict(schema)
    for path, keyword, _ in foreign:
        # Copy each container on the way down, so the original is left as it was.
        node: Any = result
        for step in path:
            child = node[step]
            node[step] = dict(child) if isinstance(child, dict) else list(child)
            node = node[step]
        node.pop(keyword, None)
    return result


def build_registry(schemas: Mapping[str, Mapping[str, Any]]) -> Registry[Any]:
    """A registry holding each schema under `<name>.json`, and under nothing else."""
    pairs: list[tuple[str, Resource[Any]]] = []
    for name, schema in schemas.items():
        contents = known_by_name(name, dict(schema))
        pairs.append(
            (schema_file_name(name), Resource.from_contents(contents, default_specification=DRAFT202012))
        )
    registry: Registry[Any] = Registry().with_resources(pairs)
    return registry.crawl()


# -- references: the section schemas and itself ------------------------------------------------

_REFERENCES = ("$ref", "$dynamicRef")


def _references_with_paths(node: Any) -> Iterator[tuple[str, str, tuple[Any, ...]]]:
    """(keyword, value, path) of every `$ref` and `$dynamicRef` in a schema (walked without
    recursion: a schema nested thousands deep is refused by check_schema, not by a RecursionError)."""
    pending: list[tuple[Any, tuple[Any, ...]]] = [(node, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _REFERENCES and isinstance(value, str):
                    yield key, value, (*path, key)
                else:
                    pending.append((value, (*path, key)))
        elif isinstance(item, list):
            pending.extend((value, (*path, index)) for index, value in enumerate(item))


def references(node: Any) -> Iterable[str]:
    """Every `$ref` and `$dynamicRef` value in a schema."""
    return (value for _, value, _ in _references_with_paths(node))


def referenced_schemas(schema: Any) -> set[str]:
    """The names of the other schemas a schema refers to by file name (`"database.json"`)."""
    names = set()
    for reference in references(schema):
        target = reference.split("#", 1)[0]
        if target.endswith(".json") and "/" not in target:
            names.add(target[: -len(".json")])
    return names


def _referenced_uri(name: str, reference: str) -> str:
    """The schema a reference of schema `name` names ("" for a reference within the schema):
    every reference resolves against `<name>.json`, the only base a schema may have."""
    target = reference.split("#", 1)[0]
    return _join(schema_file_name(name), target) if target else ""


def reference_failures(name: str, schema: Any, sections: Iterable[str]) -> list[dict[str, str]]:
    """`{path, message}` for every reference of `schema` to something other than itself and
    the section schemas."""
    own = schema_file_name(name)
    allowed = [schema_file_name(section) for section in sections]
    failures = []
    for keyword, reference, path in _references_with_paths(schema):
        uri = _referenced_uri(name, reference)
        if uri in ("", own) or uri in allowed:
            continue
        failures.append(
            {
                "path": json_pointer(path),
                "message": f"{keyword} {reference!r} names {uri!r}: a schema may refer only to "
                f"itself ({own!r}) and to the section schemas ({', '.join(allowed)})",
            }
        )
    failures.sort(key=lambda failure: failure["path"])
    return failures


def schemas_reached(name: str, schema: Any, others: Iterable[str]) -> set[str]:
    """The names among `others` that the references of schema `name` reach."""
    by_uri = {schema_file_name(other): other for other in others}
    reached = set()
    for reference in references(schema):
        uri = _referenced_uri(name, reference)
        if uri in by_uri:
            reached.add(by_uri[uri])
    return reached


def _join(base: str, target: str) -> str:
    try:
        return urljoin(base, target)
    except ValueError:  # not a URI: refused as a reference to nothing the schema may name
        return target
