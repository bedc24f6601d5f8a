"""Environment-local values: `"x-environment-local": true` on a schema property marks a value as
belonging to its environment, so promotion keeps the target's (docs/lifecycle.md).

A marker counts through `properties`, `patternProperties`, `additionalProperties` and `$ref`
(into the section schemas too); a marker on an object keeps the whole object. A marker where
it could not count (under `allOf`, `anyOf`, `oneOf`, `items`, ...) is refused when the schema
is put, rather than ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from referencing import Registry
from referencing.exceptions import Unresolvable

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
