"""JSON Schema checks: schemas compiled once per set of schema versions, every failure as a JSON pointer.

A schema is known by its name only (docs/server.md, "Schemas"): the registry holds every
current schema under `<name>.json`, a schema's `$id` (or draft-04 `id`) may only repeat that
name at its top level, and a schema may `$ref` itself and the section schemas, nothing else.
So no schema can stand in for another, and no team's schema reaches another team's.

Regular expressions in schemas (`pattern`, `patternProperties`) run on RE2, which matches
in time linear in the text: with a backtracking engine such as Python's `re`, a schema
writer could pick a pattern like `^(a+)+$` that makes one push of a 30-character value hold
the server for minutes. A schema is refused when a pattern is not RE2 syntax (lookaround
and backreferences are not), with the pattern's JSON pointer. `Validator` is jsonschema's
draft 2020-12 validator with the keywords that evaluate patterns replaced by RE2 ones.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urljoin

import re2
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from config_service import tsk
from config_service.settings import DEFAULT_SECTIONS

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_QUOTED_NAME = re.compile(r"^(?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


# -- regular expressions on RE2 ---------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the client, not to stderr
_RE2_OPTIONS.never_capture = True  # only "does it match" is ever asked


class PatternUnsupported(ValueError):
    """A pattern RE2 cannot run: not its syntax, or too large to compile."""


def _shortened(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters: a refusal names the pattern, not all megabytes of it."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 program of a schema pattern (cached); PatternUnsupported if RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternUnsupported(
            f"the pattern {_shortened(repr(pattern))} is not supported: {_shortened(str(reason))} "
            "(patterns run on RE2, which "
            "has no lookaround and no backreferences, so that matching takes linear time)"
        ) from None
    except UnicodeEncodeError:
        raise PatternUnsupported(
            f"the pattern {_shortened(repr(pattern))} is not valid Unicode text"
        ) from None


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether `pattern` matches anywhere in `text` (JSON Schema patterns are not anchored)."""
    compiled = compile_pattern(pattern)
    try:
        return compiled.search(text) is not None
    except UnicodeEncodeError:
        # A lone surrogate (an environment value that is not UTF-8 reaches the client's
        # validation as one): matched as one U+FFFD, so it still counts as one character.
        return compiled.search(_LONE_SURROGATE.sub("\ufffd", text)) is not None


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


def schema_patterns(
    schema: Any, path: tuple[Any, ...] = (), seen: set[int] | None = None
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every regular expression a schema evaluates, with its path in the schema."""
    for node, where in subschemas(schema, path, seen):
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            yield pattern, (*where, "pattern")
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict):
            for key in patterns:
                yield key, (*where, "patternProperties", key)


def _pointer_targets(schema: Any) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """What each `"$ref": "#/..."` of `schema` points at, with its path: a `$ref` can make a
    schema of any part of the document, not only of what stands at a keyword position."""
    for reference in sorted(set(references(schema))):
        if not reference.startswith("#/"):
            continue
        node, path = schema, list[Any]()
        for token in reference[2:].split("/"):
            part = unquote(token).replace("~1", "/").replace("~0", "~")
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


def _schema_positions(schema: Any) -> Iterator[tuple[dict[str, Any], tuple[Any, ...]]]:
    """Every subschema of `schema`, and of what its `"#/..."` references make schemas of."""
    seen: set[int] = set()
    for root, where in [(schema, ()), *_pointer_targets(schema)]:
        yield from subschemas(root, where, seen)


def pattern_failures(schema: Any) -> list[dict[str, str]]:
    """`{path, message}` for every pattern in `schema` that RE2 refuses."""
    failures = []
    seen: set[int] = set()
    walks = [(schema, ())] + list(_pointer_targets(schema))
    for root, where in walks:
        for pattern, path in schema_patterns(root, where, seen):
            try:
                compile_pattern(pattern)
            except PatternUnsupported as error:
                failures.append({"path": json_pointer(path), "message": str(error)})
    return failures


def _compiles_on_re2(pattern: object) -> bool:
    if isinstance(pattern, str):
        compile_pattern(pattern)
    return True


# The metaschema marks every pattern position with `"format": "regex"`, which jsonschema
# checks by compiling the pattern with Python's `re`: that refuses RE2 syntax that JSON
# Schema allows (`\p{L}`) and raises OverflowError (not a schema error) on `a{99999999999}`.
# Schemas are checked with RE2 here too, which also catches a pattern `schema_patterns` missed.
_SCHEMA_FORMATS = FormatChecker(formats=())
_SCHEMA_FORMATS.checkers = {
    **Draft202012Validator.FORMAT_CHECKER.checkers,
    "regex": (_compiles_on_re2, PatternUnsupported),
}


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not pattern_matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if pattern_matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _unmatched_keys(instance, schema)
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        if "patternProperties" in schema:
            patterns = ", ".join(repr(pattern) for pattern in sorted(schema["patternProperties"]))
            names = ", ".join(repr(key) for key in sorted(extras, key=str))
            verb = "does" if len(extras) == 1 else "do"
            yield ValidationError(f"{names} {verb} not match any of the regexes: {patterns}")
        else:
            names = ", ".join(repr(key) for key in sorted(extras, key=str))
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")


def _unmatched_keys(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Keys of `instance` that neither `properties` nor `patternProperties` of `schema` cover."""
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        key
        for key in instance
        if key not in properties and not any(pattern_matches(pattern, key) for pattern in patterns)
    ]


def _valid(validator: Any, instance: Any, subschema: Any) -> bool:
    """Whether `instance` is valid under a subschema, entered as the keywords enter it (an `$id`
    in the subschema is the base its `$ref`s resolve against)."""
    return next(validator.descend(instance, subschema), None) is None


def _entered(validator: Any, subschema: Any) -> Any:
    """`validator` for a subschema, with its resolver inside the subschema's own `$id`."""
    resource = DRAFT202012.create_resource(subschema)
    return validator.evolve(schema=subschema, _resolver=validator._resolver.in_subresource(resource))


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """The keys of `instance` that `schema` and its valid subschemas evaluate (JSON Schema
    2020-12, section 11.3: what `unevaluatedProperties` leaves alone).

    `validator` must already be inside `schema` (its resolver at the schema's base URI)."""
    if not isinstance(schema, dict):
        return set()
    _spend(REFERENCE_STEPS)
    evaluated: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        reference = schema.get(keyword)
        if isinstance(reference, str):
            resolved = validator._resolver.lookup(reference)
            inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            evaluated |= _evaluated_keys(inner, instance, resolved.contents)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        evaluated |= properties.keys() & instance.keys()
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        evaluated |= {key for key in instance if any(pattern_matches(p, key) for p in patterns)}
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            evaluated |= {
                key for key, value in instance.items() if _valid(validator, value, subschema)
            }
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for key, subschema in dependent.items():
            if key in instance:
                evaluated |= _evaluated_keys(_entered(validator, subschema), instance, subschema)
    for keyword in ("allOf", "anyOf", "oneOf"):
        for subschema in schema.get(keyword, ()):
            if _valid(validator, instance, subschema):
                evaluated |= _evaluated_keys(_entered(validator, subschema), instance, subschema)
    if "if" in schema:
        if _valid(validator, instance, schema["if"]):
            evaluated |= _evaluated_keys(_entered(validator, schema["if"]), instance, schema["if"])
            if "then" in schema:
                then = schema["then"]
                evaluated |= _evaluated_keys(_entered(validator, then), instance, then)
        elif "else" in schema:
            otherwise = schema["else"]
            evaluated |= _evaluated_keys(_entered(validator, otherwise), instance, otherwise)
    return evaluated


def jsonschema_internals_missing(validator_class: Any = Draft202012Validator) -> str | None:
    """What of jsonschema's private resolver `unevaluatedProperties` needs is missing, or None.

    `_evaluated_keys` follows `$ref`s with the validator's `_resolver` (private, in jsonschema
    since 4.18); the server checks it at start and says so when it is gone.
    """
    try:
        resolver = validator_class({})._resolver
        for name in ("lookup", "in_subresource"):
            if not callable(getattr(resolver, name, None)):
                return f"the validator's _resolver has no {name}()"
        validator_class({}).evolve(schema={}, _resolver=resolver)
    except (AttributeError, TypeError) as error:
        return f"the validator's private _resolver is not usable ({error})"
    return None


# Checked once; when jsonschema lacks what `_evaluated_keys` needs, `unevaluatedProperties`
# falls back to jsonschema's own keyword (the server warns at start).
JSONSCHEMA_INTERNALS_MISSING = jsonschema_internals_missing()


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if JSONSCHEMA_INTERNALS_MISSING is not None:
        yield from Draft202012Validator.VALIDATORS["unevaluatedProperties"](
            validator, unevaluated, instance, schema
        )
        return
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    # A key once per failure of its value, as jsonschema words it ("'a', 'a' were ...").
    failing = [
        key
        for key in instance
        if key not in evaluated
        for _ in validator.descend(instance[key], unevaluated, path=key, schema_path=key)
    ]
    if not failing:
        return
    if unevaluated is False:
        names = ", ".join(repr(key) for key in sorted(failing, key=str))
        verb = "was" if len(failing) == 1 else "were"
        yield ValidationError(f"Unevaluated properties are not allowed ({names} {verb} unexpected)")
    else:
        # In the document's order, not sorted: jsonschema words it so.
        names = ", ".join(repr(key) for key in failing)
        verb = "was" if len(failing) == 1 else "were"
        yield ValidationError(
            f"Unevaluated properties are not valid under the given schema ({names} {verb} "
            "unevaluated and invalid)"
        )


class ValidationTooCostly(Exception):
    """Validating one document took more keyword evaluations than its budget allows."""


# Keyword evaluations left for the validation running on this thread (None: no limit).
# `$ref`s let a small schema name a subschema many times over (ten `$defs` each an `anyOf`
# of two `$ref`s to the next reach 2^10 paths): without a bound one push could hold the
# server for minutes, whatever the regular expressions run on.
_steps = threading.local()
STEPS_PER_VALUE = 200  # keyword evaluations a document's value may cost, on average ...
MIN_STEPS = 1_000_000  # ... and what any document may cost (a second or two at most)


# A reference costs as much as some twenty plain keywords (the resolver looks it up anew).
REFERENCE_STEPS = 20


def _spend(steps: int) -> None:
    remaining = getattr(_steps, "remaining", None)
    if remaining is not None:
        if remaining < steps:
            raise ValidationTooCostly
        _steps.remaining = remaining - steps


def _counted(keyword: Any, steps: int) -> Any:
    def evaluate(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        _spend(steps)
        return keyword(validator, value, instance, schema)

    return evaluate


def _step_budget(instance: Any) -> int:
    values = 0
    pending = [instance]
    while pending:
        item = pending.pop()
        values += 1
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return max(MIN_STEPS, STEPS_PER_VALUE * values)


Validator: Any = validators.extend(
    Draft202012Validator,
    {
        name: _counted(keyword, REFERENCE_STEPS if name in ("$ref", "$dynamicRef") else 1)
        for name, keyword in {
            **Draft202012Validator.VALIDATORS,
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
            "unevaluatedProperties": _unevaluated_properties,
        }.items()
    },
)


class SchemaInvalid(ValueError):
    """A schema that is not a valid draft 2020-12 schema, or whose `$ref`s do not resolve."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 pointer of a path given as keys and indexes; the root is ""."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def schema_file_name(name: str) -> str:
    return f"{name}.json"


# -- a schema is known by its name only ---------------------------------------------------------

# `$id` names a schema in draft 6 and later, `id` in draft 4 (a subschema may name its draft).
_IDENTIFIERS = ("$id", "id")


def _foreign_identifiers(name: str, schema: Any) -> list[tuple[tuple[Any, ...], str, str]]:
    """(path, keyword, value) of every identifier in `schema` other than its own top-level name."""
    own = schema_file_name(name)
    found = []
    for node, path in _schema_positions(schema):
        for keyword in _IDENTIFIERS:
            value = node.get(keyword)
            if isinstance(value, str) and not (path == () and value.rstrip("#") == own):
                found.append((path, keyword, value))
    return found


def identifier_failures(name: str, schema: Any) -> list[dict[str, str]]:
    """`{path, message}` for every `$id` or `id` by which `schema` would be known as anything
    but `<name>.json`: at its top level another name, and below it any name at all (an embedded
    identifier makes a schema of its own)."""
    own = schema_file_name(name)
    failures = []
    for path, keyword, value in _foreign_identifiers(name, schema):
        where = "" if path == () else " inside the schema"
        failures.append(
            {
                "path": json_pointer((*path, keyword)),
                "message": f"{keyword} {value!r}{where} would name a schema other than this one: "
                f"a schema is known by its name only, as {own!r}; leave {keyword} out, or put "
                f"{own!r} at the top level",
            }
        )
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


def non_finite_numbers(schema: Any) -> list[dict[str, str]]:
    """`{path, message}` for every number in `schema` that is infinite or NaN: JSON has no
    such numbers, so the schema could be neither stored nor served as JSON."""
    failures = []
    pending: list[tuple[Any, tuple[Any, ...]]] = [(schema, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            failures.append({"path": json_pointer(path), "message": f"{item} is not a finite number"})
        elif isinstance(item, dict):
            pending.extend((value, (*path, key)) for key, value in item.items())
        elif isinstance(item, list):
            pending.extend((value, (*path, index)) for index, value in enumerate(item))
    failures.sort(key=lambda failure: failure["path"])
    return failures


def check_schema(
    name: str,
    schema: Any,
    others: Mapping[str, Mapping[str, Any]],
    sections: Iterable[str] = DEFAULT_SECTIONS,
) -> None:
    """Raise SchemaInvalid unless `schema` is a valid 2020-12 schema known by its name only,
    whose references name only itself and the `sections`, and resolve among `others` (the
    other current schemas) and itself.
    """
    if not isinstance(schema, dict):
        raise SchemaInvalid(
            "a schema must be a JSON object", [{"path": "", "message": "not an object"}]
        )
    infinite = non_finite_numbers(schema)
    if infinite:
        raise SchemaInvalid("the schema has a number that is not finite", infinite)
    unsupported = pattern_failures(schema)
    if unsupported:
        raise SchemaInvalid(
            "the schema has a pattern the server cannot run in linear time (RE2 syntax)", unsupported
        )
    try:
        Draft202012Validator.check_schema(schema, format_checker=_SCHEMA_FORMATS)
    except RecursionError:
        raise SchemaInvalid(
            "the schema is nested too deeply", [{"path": "", "message": "nested too deeply"}]
        ) from None
    except SchemaError as error:
        raise SchemaInvalid(
            f"not a valid draft 2020-12 schema: {error.message}",
            [{"path": json_pointer(error.absolute_path), "message": error.message}],
        ) from None
    foreign = identifier_failures(name, schema)
    if foreign:
        raise SchemaInvalid(
            f"the schema would be known by another name than {schema_file_name(name)!r}", foreign
        )
    outside = reference_failures(name, schema, sections)
    if outside:
        raise SchemaInvalid(
            "the schema refers to a schema that is neither itself nor a section schema", outside
        )
    try:
        registry = build_registry({**others, name: schema})
    except ValueError as error:  # an `$id` that is not a URI (urllib: "Invalid IPv6 URL")
        raise SchemaInvalid(
            f"the schema has an $id that is not a valid URI: {error}",
            [{"path": "", "message": f"an $id is not a valid URI: {error}"}],
        ) from None
    resolver = registry.resolver(base_uri=schema_file_name(name))
    failures = []
    for reference in sorted(set(references(schema))):
        try:
            resolver.lookup(reference)
        except Unresolvable:
            failures.append({"path": "", "message": f"$ref {reference!r} does not resolve"})
        except ValueError:
            failures.append({"path": "", "message": f"$ref {reference!r} is not a valid URI"})
    if failures:
        raise SchemaInvalid("the schema refers to schemas the server does not have", failures)


def _recursion_panic(error: BaseException) -> bool:
    return type(error).__name__ == "PanicException" and "RecursionError" in str(error)


def _error_path(error: ValidationError) -> list[Any]:
    """The instance path of a failure; a missing required key is reported at its own path."""
    path = list(error.absolute_path)
    if error.validator in ("required", "dependentRequired"):
        match = _QUOTED_NAME.match(error.message)
        if match:
            try:
                path.append(json.loads(_to_json_string(match.group("name"))))
            except ValueError:
                pass
    return path


def _to_json_string(quoted: str) -> str:
    # jsonschema quotes names with repr(); turn a repr'd str into a JSON string literal.
    import ast

    value = ast.literal_eval(quoted)
    return json.dumps(value)


class SchemaSet:
    """Validators for every schema of one generation (one set of current schema versions)."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]], generation: int) -> None:
        self.schemas = {name: known_by_name(name, schema) for name, schema in schemas.items()}
        self.generation = generation
        self._registry = build_registry(self.schemas)
        self._validators: dict[str, Any] = {}
        self._referenced_by: dict[str, set[str]] | None = None

    def users_of(self, name: str) -> set[str]:
        """`name` and every schema that refers to it, directly or through others."""
        referenced_by = self._referenced_by
        if referenced_by is None:
            # Built once per generation (the set never changes); a race only builds it twice.
            referenced_by = {}
            for user, schema in self.schemas.items():
                others = [key for key in self.schemas if key != user]
                for target in schemas_reached(user, schema, others):
                    referenced_by.setdefault(target, set()).add(user)
            self._referenced_by = referenced_by
        users = {name}
        pending = [name]
        while pending:
            for user in referenced_by.get(pending.pop(), ()):
                if user not in users:
                    users.add(user)
                    pending.append(user)
        return users

    def validator(self, name: str) -> Any | None:
        """The compiled validator of schema `name` (built on first use), or None without a schema."""
        validator = self._validators.get(name)
        if validator is None:
            schema = self.schemas.get(name)
            if schema is None:
                return None
            validator = Validator(schema, registry=self._registry)
            self._validators[name] = validator
        return validator

    def document_errors(self, name: str, data: Any) -> list[dict[str, str]]:
        """Every failure of a parsed TSK document, each `@env` standing for its default.

        A reference without a default is not checked at its path, even where the schema
        requires the key (TSK.md section 4); the service validates again after resolving.
        """
        if self.validator(name) is None:
            return []
        skipped: list[str] = []
        failures = self.errors(name, tsk.validation_view(data, skipped))
        if failures and skipped:
            ignored = set(skipped)
            failures = [failure for failure in failures if failure["path"] not in ignored]
        return failures

    def errors(self, name: str, instance: Any) -> list[dict[str, str]]:
        """Every failure of `instance` against schema `name`, as `{path, message}`, sorted by path."""
        validator = self.validator(name)
        if validator is None:
            return []
        _steps.remaining = _step_budget(instance)
        try:
            failures = [
                {"path": json_pointer(_error_path(error)), "message": error.message}
                for error in validator.iter_errors(instance)
            ]
        except ValidationTooCostly:
            return [
                {
                    "path": "",
                    "message": "the schema takes too many steps to check this document (its $refs "
                    "and combinators name the same subschemas over and over)",
                }
            ]
        except Unresolvable as error:
            return [{"path": "", "message": f"the schema has a $ref that does not resolve: {error}"}]
        except RecursionError:
            # A schema that refers to itself without consuming the instance ({"$ref": "#"}).
            return [{"path": "", "message": "the schema refers to itself without end"}]
        except PatternUnsupported as error:
            # Only a schema stored before patterns were checked can get here.
            return [{"path": "", "message": f"the schema cannot be used: {error}"}]
        except BaseException as error:
            # The same endless self-reference, when the recursion limit strikes inside the
            # resolver's Rust code: it comes out as pyo3's PanicException, a BaseException
            # that would otherwise go through every handler (`"not": {"$ref": "#"}`).
            if not _recursion_panic(error):
                raise
            return [{"path": "", "message": "the schema refers to itself without end"}]
        finally:
            _steps.remaining = None
        failures.sort(key=lambda failure: (failure["path"], failure["message"]))
        return failures
