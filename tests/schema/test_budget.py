"""The step budget: a small schema cannot make one validation take exponential time."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from config_service.schema import SchemaSet, check_schema

from .test_keywords import judged


def chain_of_defs(depth: int, leaf: dict[str, Any], unevaluated: bool) -> dict[str, Any]:
    """`$defs` l1..lN, each an `anyOf` of two `$ref`s to the one below: 2^N paths, ~100 bytes a level."""
    defs: dict[str, Any] = {"l0": leaf}
    for level in range(1, depth + 1):
        below = {"$ref": f"#/$defs/l{level - 1}"}
        defs[f"l{level}"] = {"anyOf": [below, dict(below)]}
        if unevaluated:
            defs[f"l{level}"]["unevaluatedProperties"] = False
    return {"$defs": defs, "$ref": f"#/$defs/l{depth}"}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("unevaluated", [False, True])
def test_a_small_schema_cannot_make_one_validation_take_exponential_time(unevaluated: bool) -> None:
    leaf = {"properties": {"a": {}}} if unevaluated else {"required": ["missing"]}
    schema = chain_of_defs(40, leaf, unevaluated)  # 2^40 paths in 4 KB: years, unbounded
    check_schema("svc", schema, {})
    failures = SchemaSet({"svc": schema}, 1).errors("svc", {"a": 1})
    assert failures == [
        {
            "path": "",
            "message": "the schema takes too many steps to check this document (its $refs "
            "and combinators name the same subschemas over and over, or its patterns, enums "
            "or uniqueItems meet more of the document than one check may)",
        }
    ]
    # The same construction a few levels deep is checked as usual.
    shallow = chain_of_defs(3, leaf, unevaluated)
    expected = judged(Draft202012Validator(shallow), {"a": 1})
    assert [failure["message"] for failure in SchemaSet({"svc": shallow}, 1).errors("svc", {"a": 1})] == [
        message for _, message in expected
    ]


TOO_COSTLY = "the schema takes too many steps to check this document"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        # 3,000 patterns over 3,000 keys: nine million matches (17 s on the event loop before).
        (
            {"patternProperties": {f"^k{index}x$": {"type": "integer"} for index in range(3000)}},
            {f"key{index}": index for index in range(3000)},
        ),
        # Every item against 20,000 entries (4 s before).
        ({"items": {"enum": [f"value-{index}" for index in range(20_000)]}}, ["value-19999"] * 2000),
        # Mixed items cannot be sorted: every pair is compared (6 s before).
        ({"uniqueItems": True}, [str(index) if index % 2 else index for index in range(16_000)]),
    ],
    ids=["patternProperties", "enum", "uniqueItems"],
)
def test_work_that_grows_with_the_document_spends_from_the_budget(schema: Any, instance: Any) -> None:
    check_schema("svc", schema, {})
    failures = SchemaSet({"svc": schema}, 1).errors("svc", instance)
    assert len(failures) == 1 and failures[0]["message"].startswith(TOO_COSTLY)


def test_ordinary_enums_patterns_and_unique_items_stay_within_the_budget() -> None:
    schema = {
        "patternProperties": {"^feature_": {"type": "boolean"}, "^limit_": {"type": "integer"}},
        "properties": {
            "regions": {"type": "array", "uniqueItems": True, "items": {"enum": ["eu", "us", "ap"]}},
            "tags": {"type": "array", "uniqueItems": True},
        },
    }
    instance = {
        **{f"feature_{index}": True for index in range(500)},
        **{f"limit_{index}": index for index in range(500)},
        "regions": ["eu", "us", "ap"],
        "tags": [f"tag-{index}" for index in range(1000)] + [1, 2, 3],
    }
    assert SchemaSet({"svc": schema}, 1).errors("svc", instance) == []
    instance["regions"] = ["eu", "eu"]
    assert [failure["path"] for failure in SchemaSet({"svc": schema}, 1).errors("svc", instance)] == ["/regions"]
