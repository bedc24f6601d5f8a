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
