"""Schema patterns run on RE2: a pattern cannot make validation take exponential time.

With a backtracking engine, `^(a+)+$` against forty `a`s and a `!` takes longer than the
age of the universe; these tests would hang (and fail on the per-test timeout) if any
keyword that evaluates a pattern went back to Python's `re`. The keywords re-implemented
for RE2 are also checked against jsonschema's own validator on ordinary patterns.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from config_service.validation import (
    SchemaInvalid,
    SchemaSet,
    Validator,
    check_schema,
    pattern_failures,
)
from tests.serving import ServerProcess, assert_error, push

EVIL = "^(a+)+$"
CRAFTED = "a" * 40 + "!"


def errors(schema: dict[str, Any], instance: Any) -> list[dict[str, str]]:
    return SchemaSet({"svc": schema}, 1).errors("svc", instance)


@pytest.mark.timeout(20)
def test_a_catastrophic_pattern_is_answered_at_once_by_every_keyword_that_uses_patterns() -> None:
    assert errors({"properties": {"name": {"pattern": EVIL}}}, {"name": CRAFTED}) == [
        {"path": "/name", "message": f"{CRAFTED!r} does not match {EVIL!r}"}
    ]
    assert errors({"properties": {"name": {"pattern": EVIL}}}, {"name": "aaaa"}) == []
    only_evil_keys = {"patternProperties": {EVIL: {"type": "integer"}}, "additionalProperties": False}
    failures = errors(only_evil_keys, {CRAFTED: 1, "aaa": 2})
    assert [failure["path"] for failure in failures] == [""]
    assert CRAFTED in failures[0]["message"]
    assert errors(only_evil_keys, {"aaa": "x"})[0]["path"] == "/aaa"
    unevaluated = {"patternProperties": {EVIL: {}}, "unevaluatedProperties": False}
    assert len(errors(unevaluated, {CRAFTED: 1})) == 1
    assert errors(unevaluated, {"aa": 1}) == []
    assert errors({"propertyNames": {"pattern": EVIL}}, {CRAFTED: 1})


def test_patterns_that_re2_cannot_run_are_refused_with_their_pointer() -> None:
    schema = {
        "type": "object",
        "properties": {
            "release": {"type": "string", "pattern": "^(?!v)[0-9.]+$"},
            "items": {"type": "array", "items": {"pattern": "(a)\\1"}},
        },
        "patternProperties": {"^(?<=x)y": {}},
        "$defs": {"fine": {"pattern": "^[a-z]+$"}},
        # Data, not keywords: never evaluated as patterns, so never refused.
        "default": {"pattern": "(?=data)"},
        "examples": [{"patternProperties": {"(?=data)": 1}}],
    }
    with pytest.raises(SchemaInvalid) as raised:
        check_schema("svc", schema, {})
    paths = sorted(detail["path"] for detail in raised.value.details)
    assert paths == [
        "/patternProperties/^(?<=x)y",
        "/properties/items/items/pattern",
        "/properties/release/pattern",
    ]
    assert all("RE2" in detail["message"] for detail in raised.value.details)
    assert pattern_failures({"pattern": "(a{500}){50}"})  # a program too large to compile: refused too
    check_schema("svc", {"properties": {"v": {"pattern": EVIL}}}, {})  # RE2 runs this one safely


def test_a_stored_pattern_re2_cannot_run_fails_validation_instead_of_running() -> None:
    # Schemas stored before patterns were checked at PUT: validation says why, and runs nothing.
    failures = errors({"properties": {"v": {"pattern": "(?=x)"}}}, {"v": "x"})
    assert failures == [
        {"path": "", "message": failures[0]["message"]},
    ] and "cannot be used" in failures[0]["message"]


SCHEMAS: list[dict[str, Any]] = [
    {"properties": {"a": {"type": "integer"}}, "patternProperties": {"^x-": {"type": "string"}},
     "additionalProperties": False},
    {"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
    {"properties": {"a": {}}, "additionalProperties": False},
    {"allOf": [{"properties": {"a": {}}}], "patternProperties": {"^p": {}}, "unevaluatedProperties": False},
    {"$defs": {"base": {"properties": {"a": {}}}}, "$ref": "#/$defs/base", "unevaluatedProperties": False},
    {"anyOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {}}}],
     "unevaluatedProperties": False},
    {"oneOf": [{"properties": {"a": {}}, "required": ["a"]}, {"properties": {"b": {}}, "required": ["b"]}],
     "unevaluatedProperties": {"type": "string"}},
    {"if": {"properties": {"kind": {"const": "db"}}, "required": ["kind"]},
     "then": {"properties": {"url": {}}}, "else": {"properties": {"path": {}}},
     "properties": {"kind": {}}, "unevaluatedProperties": False},
    {"dependentSchemas": {"a": {"properties": {"b": {}}}}, "properties": {"a": {}},
     "unevaluatedProperties": False},
    {"properties": {"nested": {"properties": {"a": {}}, "additionalProperties": {"type": "boolean"}}},
     "unevaluatedProperties": False},
    {"patternProperties": {"[0-9]": {"type": "integer"}, "^[a-z]+$": {"type": "string"}}},
    {"properties": {"v": {"pattern": "^[0-9]+\\.[0-9]+$"}}},
]
INSTANCES: list[Any] = [
    {}, {"a": 1}, {"a": "x"}, {"x-y": "s"}, {"x-y": 1}, {"b": 2}, {"p1": 1, "a": 1}, {"z": 1},
    {"a": 1, "b": "s"}, {"b": "s", "c": "t"}, {"kind": "db", "url": 1}, {"kind": "db", "path": 1},
    {"kind": "file", "path": 1}, {"nested": {"a": 1, "b": True}}, {"nested": {"b": 1}},
    {"k1": 1, "abc": "s"}, {"k1": "s"}, {"v": "1.2"}, {"v": "1.2.3x"}, {"v": "x1.2"}, [1], "text",
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[str(index) for index in range(len(SCHEMAS))])
def test_the_re2_keywords_judge_like_jsonschemas_own_on_ordinary_patterns(schema: dict[str, Any]) -> None:
    ours, theirs = Validator(schema), Draft202012Validator(schema)
    for instance in INSTANCES:
        assert ours.is_valid(instance) == theirs.is_valid(instance), instance
        assert sorted(error.message for error in ours.iter_errors(instance)) == sorted(
            error.message for error in theirs.iter_errors(instance)
        ), instance


def test_the_server_refuses_such_a_schema_with_a_pointer_and_runs_re2_on_pushes(
    server: ServerProcess, admin: httpx.Client
) -> None:
    refused = assert_error(
        admin.put("/v1/schemas/patterned", json={"properties": {"tag": {"pattern": "^(?!latest$)"}}}),
        422,
        "invalid_schema",
    )
    assert refused["details"][0]["path"] == "/properties/tag/pattern"
    assert "RE2" in refused["details"][0]["message"]
    assert admin.put("/v1/schemas/patterned", json={"properties": {"tag": {"pattern": EVIL}}}).status_code == 201
    pushed = push(admin, "patterned", "staging", f'tag: "{CRAFTED}"\n')
    failure = assert_error(pushed, 422, "schema_violation")
    assert failure["details"][0]["path"] == "/tag"
    assert push(admin, "patterned", "staging", 'tag: "aaaa"\n').status_code == 201
    assert admin.get("/health").status_code == 200
