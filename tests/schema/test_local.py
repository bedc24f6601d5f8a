"""Environment-local markers: where they count (local paths of a document) and where they are refused."""

from __future__ import annotations

from typing import Any

import pytest

from config_service.schema import SchemaInvalid, SchemaSet, check_schema

DATABASE = {
    "type": "object",
    "properties": {"url": {"x-environment-local": True, "type": "string"}, "pool": {"type": "integer"}},
}
SERVICE = {
    "type": "object",
    "properties": {
        "database": {"$ref": "database.json"},
        "hosts": {"x-environment-local": True, "type": "object"},
        "limits": {"$ref": "#/$defs/limits"},
    },
    "patternProperties": {"^region_": {"x-environment-local": True}},
    "additionalProperties": {"type": "object", "properties": {"endpoint": {"x-environment-local": True}}},
    "$defs": {"limits": {"type": "object", "properties": {"rate": {"x-environment-local": True}}}},
}


def test_markers_count_through_properties_patterns_additional_properties_and_refs() -> None:
    schemas = SchemaSet({"database": DATABASE, "api": SERVICE}, 1)
    first = {
        "database": {"url": "a", "pool": 1},
        "hosts": {"x": {"deep": 1}},
        "region_eu": "eu",
        "queue": {"endpoint": "q", "size": 3},
        "limits": {"rate": 5, "burst": 2},
    }
    second = {"database": {"pool": 2}, "mailer": {"endpoint": "m"}}
    assert schemas.local_paths("api", [first, second]) == [
        ("database", "url"), ("hosts",), ("limits", "rate"), ("mailer", "endpoint"),
        ("queue", "endpoint"), ("region_eu",),
    ]
    assert schemas.local_paths("no-schema", [first]) == []


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"allOf": [{"properties": {"a": {"x-environment-local": True}}}]}, "/allOf/0/properties/a"),
        ({"properties": {"a": {"anyOf": [{"x-environment-local": True}]}}}, "/properties/a/anyOf/0"),
        ({"oneOf": [{"x-environment-local": True}, {}]}, "/oneOf/0"),
        ({"properties": {"a": {"items": {"x-environment-local": True}}}}, "/properties/a/items"),
        ({"properties": {"a": {"x-environment-local": "yes"}}}, "/properties/a"),
        ({"x-environment-local": True}, ""),
    ],
)
def test_a_marker_where_it_cannot_count_is_refused(schema: dict[str, Any], path: str) -> None:
    with pytest.raises(SchemaInvalid) as raised:
        check_schema("api", schema, {})
    assert [detail["path"] for detail in raised.value.details] == [path]


def test_a_section_schema_may_mark_itself_whole() -> None:
    check_schema("database", {"x-environment-local": True, "type": "object"}, {})
    check_schema("api", {"properties": {"a": {"x-environment-local": False}}}, {})


MARKED_DATABASE = {
    "type": "object",
    "properties": {"url": {"x-environment-local": True, "type": "string"}, "pool_size": {"type": "integer"}},
}


def _refused(name: str, schema: dict[str, Any], others: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(SchemaInvalid) as raised:
        check_schema(name, schema, others)
    return raised.value.details


@pytest.mark.parametrize(
    ("database", "combinator"),
    [
        ({"anyOf": [{"$ref": "database.json"}, {"type": "null"}]}, "/properties/database/anyOf"),
        ({"allOf": [{"$ref": "database.json"}]}, "/properties/database/allOf"),
        ({"oneOf": [{"$ref": "database.json"}]}, "/properties/database/oneOf"),
        ({"not": {"not": {"$ref": "database.json"}}}, "/properties/database/not"),
    ],
)
def test_a_section_marker_reached_through_a_combinator_is_refused(
    database: dict[str, Any], combinator: str
) -> None:
    schema = {"type": "object", "properties": {"database": database}}
    assert _refused("svc", schema, {"database": MARKED_DATABASE}) == [
        {
            "path": combinator,
            "combinator": f"svc.json#{combinator}",
            "marker": "database.json#/properties/url",
            "message": f"x-environment-local at database.json#/properties/url is reached through "
            f"svc.json#{combinator}, where promotion could not tell which value is local; "
            "refer to the schema that carries it outside allOf/anyOf/oneOf/items, or unmark it",
        }
    ]


def test_a_marker_in_defs_reached_through_a_combinator_is_refused() -> None:
    schema = {
        "type": "object",
        "properties": {"database": {"allOf": [{"$ref": "#/$defs/db"}]}},
        "$defs": {"db": {"type": "object", "properties": {"url": {"x-environment-local": True}}}},
    }
    details = _refused("svc", schema, {})
    assert [(d["path"], d["marker"]) for d in details] == [
        ("/properties/database/allOf", "svc.json#/$defs/db/properties/url")
    ]
    # Through a chain of references, and items, the same.
    chained = {
        "properties": {"hosts": {"type": "array", "items": {"$ref": "#/$defs/host"}}},
        "$defs": {"host": {"$ref": "#/$defs/marked"}, "marked": {"x-environment-local": True}},
    }
    details = _refused("svc", chained, {})
    assert [(d["path"], d["marker"]) for d in details] == [
        ("/properties/hosts/items", "svc.json#/$defs/marked")
    ]


def test_a_combinator_in_a_section_schema_is_named_from_the_reference_that_leaves() -> None:
    # svc -> database.json (counting) -> anyOf -> cache.json's marker.
    database = {"type": "object", "properties": {"cache": {"anyOf": [{"$ref": "cache.json"}]}}}
    cache = {"type": "object", "properties": {"ttl": {"x-environment-local": True}}}
    schema = {"properties": {"database": {"$ref": "database.json"}}}
    details = _refused("svc", schema, {"database": database, "cache": cache})
    assert [(d["path"], d["combinator"], d["marker"]) for d in details] == [
        ("/properties/database/$ref", "database.json#/properties/cache/anyOf", "cache.json#/properties/ttl")
    ]


def test_markers_reached_only_where_they_count_are_accepted() -> None:
    others = {"database": MARKED_DATABASE}
    # Through properties, $ref and $defs: counted.
    check_schema(
        "svc",
        {
            "properties": {"database": {"$ref": "database.json"}, "limits": {"$ref": "#/$defs/limits"}},
            "$defs": {
                "limits": {"properties": {"rate": {"x-environment-local": True}}},
                "unused": {"properties": {"host": {"x-environment-local": True}}},
            },
        },
        others,
    )
    # A combinator over a schema without markers, or inside a marked (kept whole) object.
    check_schema("svc", {"properties": {"cache": {"anyOf": [{"$ref": "cache.json"}, {"type": "null"}]}}},
                 {"cache": {"type": "object"}})
    check_schema(
        "svc",
        {"properties": {"hosts": {"x-environment-local": True, "anyOf": [{"$ref": "database.json"}]}}},
        others,
    )


def test_a_section_gaining_a_marker_a_service_wraps_is_found() -> None:
    service = {"properties": {"cache": {"anyOf": [{"$ref": "cache.json"}, {"type": "null"}]}}}
    before = SchemaSet({"cache": {"type": "object"}, "svc": service, "other": {"type": "object"}}, 1)
    assert before.wrapped_markers("cache") == []
    marked = {"type": "object", "properties": {"ttl": {"x-environment-local": True}}}
    after = SchemaSet({"cache": marked, "svc": service, "other": {"type": "object"}}, 2)
    assert [(d["schema"], d["path"], d["marker"]) for d in after.wrapped_markers("cache")] == [
        ("svc", "/properties/cache/anyOf", "cache.json#/properties/ttl")
    ]
