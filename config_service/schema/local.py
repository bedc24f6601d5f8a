"""Environment-local values: `"x-environment-local": true` on a schema property marks a value as
belonging to its environment, so promotion keeps the target's (docs/lifecycle.md).

A marker counts through `properties`, `patternProperties`, `additionalProperties` and `$ref`
(into the section schemas too); a marker on an object keeps the whole object. A marker where
it could not count (under `allOf`, `anyOf`, `oneOf`, `items`, ...) is refused when the schema
is put, rather than ignored: both where it stands in the schema being put (`marker_failures`)
and where the schema reaches it over its references, into its own `$defs` and the section
schemas (`MarkerReach`), whichever of the two schemas is put last.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

from config_service.schema.keywords import pattern_matches
from config_service.schema.references import schema_file_name
from config_service.tsk import json_pointer

MARKER = "x-environment-local"

# Where a marker counts: the keywords that say which key of an object a subschema governs.
_KEYED = ("properties", "patternProperties")
_ONE = ("additionalProperties",)
# Holders of subschemas a marker cannot count through (it would depend on which branch or
# item applies): a marker under them is refused.
_ONE_ELSEWHERE = (
    "unevaluatedProperties", "propertyNames", "items", "contains", "unevaluatedItems", "not",
    "if", "then", "else", "contentSchema", "additionalItems",
)
_OBJECTS_ELSEWHERE = ("dependentSchemas", "dependencies")
_ARRAYS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_DEFINITIONS = ("$defs", "definitions")
# Deepest schema nesting or `$ref` chain followed when finding local paths.
MAX_DEPTH = 64


def marker_failures(schema: Any, root_allowed: bool) -> list[dict[str, str]]:
    """Every marker that is not `true`/`false`, or stands where it cannot count, as `{path,
    message}` (path: where in the schema). `root_allowed`: a section schema may mark itself
    whole (every service keeps that section); a service schema may not mark its root."""
    failures: list[dict[str, str]] = []
    pending: list[tuple[Any, tuple[Any, ...], str | None]] = [(schema, (), None)]
    seen: set[int] = set()
    while pending:
        node, path, refused_under = pending.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        if MARKER in node:
            where = json_pointer(path)
            if not isinstance(node[MARKER], bool):
                failures.append({"path": where, "message": f"{MARKER} must be true or false"})
            elif node[MARKER] and refused_under is not None:
                failures.append({
                    "path": where,
                    "message": f"{MARKER} under {refused_under} cannot count (promotion could not "
                    "tell which value is local); mark the property itself",
                })
            elif node[MARKER] and not path and not root_allowed:
                failures.append({
                    "path": where,
                    "message": f"{MARKER} on a service schema's root would keep the whole document; "
                    "mark its properties",
                })
        for keyword in _KEYED + _DEFINITIONS + _OBJECTS_ELSEWHERE:
            children = node.get(keyword)
            if isinstance(children, dict):
                under = refused_under if keyword not in _OBJECTS_ELSEWHERE else refused_under or keyword
                pending.extend((child, (*path, keyword, key), under) for key, child in children.items())
        for keyword in _ONE + _ONE_ELSEWHERE:
            if keyword in node and isinstance(node[keyword], dict):
                under = refused_under if keyword in _ONE else refused_under or keyword
                pending.append((node[keyword], (*path, keyword), under))
        for keyword in _ARRAYS:
            children = node.get(keyword)
            if isinstance(children, list):
                pending.extend(
                    (child, (*path, keyword, index), refused_under or keyword)
                    for index, child in enumerate(children)
                )
    failures.sort(key=lambda failure: failure["path"])
    return failures


def local_paths(registry: Registry[Any], name: str, documents: Iterable[Any]) -> list[tuple[str, ...]]:
    """The local paths (keys from the root) of schema `name` found in any of `documents` (parsed
    data), sorted; a marked object is one path, nothing below it."""
    try:
        resolved = registry.resolver(base_uri=schema_file_name(name)).lookup(schema_file_name(name))
    except Unresolvable:
        return []
    found: set[tuple[str, ...]] = set()
    for data in documents:
        _walk(resolved.contents, resolved.resolver, data, (), found, 0)
    # A path below another local path is kept with it.
    return sorted(
        path for path in found if not any(path[:size] in found for size in range(1, len(path)))
    )


def _walk(
    schema: Any, resolver: Any, data: Any, path: tuple[str, ...], found: set[tuple[str, ...]], depth: int
) -> None:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return
    if schema.get(MARKER) is True:
        if path:
            found.add(path)
        return
    reference = schema.get("$ref")
    if isinstance(reference, str):
        try:
            target = resolver.lookup(reference)
        except Unresolvable:
            target = None
        if target is not None:
            _walk(target.contents, target.resolver, data, path, found, depth + 1)
    if not isinstance(data, dict):
        return
    properties = schema.get("properties")
    patterns = schema.get("patternProperties")
    additional = schema.get("additionalProperties")
    for key, value in data.items():
        matched = False
        if isinstance(properties, dict) and key in properties:
            matched = True
            _walk(properties[key], resolver, value, (*path, key), found, depth + 1)
        if isinstance(patterns, dict):
            for pattern, subschema in patterns.items():
                if pattern_matches(pattern, key):
                    matched = True
                    _walk(subschema, resolver, value, (*path, key), found, depth + 1)
        if not matched and isinstance(additional, dict):
            _walk(additional, resolver, value, (*path, key), found, depth + 1)


# -- markers reached over references -----------------------------------------------------------

Location = tuple[str, tuple[Any, ...]]  # (schema file name, path inside it)


def _where(location: Location) -> str:
    return f"{location[0]}#{json_pointer(location[1])}"


def _positions(contents: Any, file: str) -> Iterator[tuple[int, Location]]:
    """(id, location) of every object and array of a schema, since a `$ref` may point anywhere."""
    pending: list[tuple[Any, tuple[Any, ...]]] = [(contents, ())]
    while pending:
        node, path = pending.pop()
        if isinstance(node, dict):
            yield id(node), (file, path)
            pending.extend((child, (*path, key)) for key, child in node.items())
        elif isinstance(node, list):
            yield id(node), (file, path)
            pending.extend((child, (*path, index)) for index, child in enumerate(node))


class MarkerReach:
    """Which markers the schemas of one registry reach only where promotion cannot count them.

    A walk from a schema's root follows what local paths follow (`properties`,
    `patternProperties`, `additionalProperties`, `$ref`); every other subschema keyword
    (`allOf`, `anyOf`, `oneOf`, `items`, `not`, ...) and `$dynamicRef` is followed too, but
    marks the walk as past that keyword: a marker it then reaches would be ignored by
    promotion, so it is a failure naming the keyword and the marker.
    """

    def __init__(self, registry: Registry[Any], names: Iterable[str]) -> None:
        self._registry = registry
        self._locations: dict[int, Location] = {}
        for name in names:
            file = schema_file_name(name)
            try:
                contents = registry.contents(file)
            except NoSuchResource:
                continue
            self._locations.update(_positions(contents, file))

    def failures(self, name: str) -> list[dict[str, str]]:
        """`{path, combinator, marker, message}` for every marker schema `name` reaches only past
        a keyword where it cannot count; `path` is in schema `name` (the keyword, or the `$ref`
        by which the walk left the schema), `combinator` and `marker` are `file#pointer`."""
        own = schema_file_name(name)
        try:
            resolved = self._registry.resolver(base_uri=own).lookup(own)
        except Unresolvable:
            return []
        failures: dict[int, dict[str, str]] = {}
        # (node, resolver, its location, the pointer in `name` the walk last stood at, where it
        # went past a keyword that cannot count: (that keyword's location, pointer in `name`)).
        pending: list[tuple[Any, Any, Location, tuple[Any, ...], tuple[Location, tuple[Any, ...]] | None]]
        pending = [(resolved.contents, resolved.resolver, (own, ()), (), None)]
        seen: set[tuple[int, bool]] = set()
        while pending:
            node, resolver, location, inside, past = pending.pop()
            if not isinstance(node, dict) or (id(node), past is not None) in seen:
                continue
            seen.add((id(node), past is not None))
            if location[0] == own:
                inside = location[1]
            if node.get(MARKER) is True:
                if past is not None and id(node) not in failures:
                    combinator, at = past
                    failures[id(node)] = {
                        "path": json_pointer(at),
                        "combinator": _where(combinator),
                        "marker": _where(location),
                        "message": f"{MARKER} at {_where(location)} is reached through "
                        f"{_where(combinator)}, where promotion could not tell which value is "
                        "local; refer to the schema that carries it outside allOf/anyOf/oneOf/items, "
                        "or unmark it",
                    }
                if past is None:
                    continue  # counted: the whole object is kept, whatever is below it
            file, path = location
            for keyword in ("$ref", "$dynamicRef"):
                reference = node.get(keyword)
                if not isinstance(reference, str):
                    continue
                try:
                    target = resolver.lookup(reference)
                except Unresolvable:
                    continue
                at = (*inside, keyword) if file == own else inside
                after = past
                if keyword == "$dynamicRef" and past is None:
                    after = ((file, (*path, keyword)), at)
                where = self._locations.get(id(target.contents), (reference, ()))
                pending.append((target.contents, target.resolver, where, at, after))
            for keyword, value in node.items():
                counts = keyword in _KEYED or keyword in _ONE
                if not counts and keyword not in _ONE_ELSEWHERE + _OBJECTS_ELSEWHERE + _ARRAYS:
                    continue
                after = past
                if not counts and past is None:
                    after = ((file, (*path, keyword)), (*inside, keyword) if file == own else inside)
                for child, step in _children(keyword, value):
                    pending.append((child, resolver, (file, (*path, *step)), inside, after))
        return sorted(failures.values(), key=lambda failure: (failure["path"], failure["marker"]))


def _children(keyword: str, value: Any) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """The subschemas under one keyword, with their steps from the node that holds it."""
    if isinstance(value, dict) and keyword in _KEYED + _OBJECTS_ELSEWHERE:
        yield from ((child, (keyword, key)) for key, child in value.items())
    elif isinstance(value, dict):
        yield value, (keyword,)
    elif isinstance(value, list) and keyword in _ARRAYS:
        yield from ((child, (keyword, index)) for index, child in enumerate(value))
