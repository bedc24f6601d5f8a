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
            "and combinators name the same subschemas over and over)",
        }
    ]
    # The same construction a few levels deep is checked as usual.
    shallow = chain_of_defs(3, leaf, unevaluated)
    expected = judged(Draft202012Validator(shallow), {"a": 1})
    assert [failure["message"] for failure in SchemaSet({"svc": shallow}, 1).errors("svc", {"a": 1})] == [
        message for _, message in expected
    ]
