"""Schema checks that guard the server itself: a schema nested thousands deep is refused, and one
that refers to itself without end is a clean failure, in any thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from config_service.schema import SchemaInvalid, SchemaSet, check_schema

from .test_keywords import ENDLESS


def test_a_schema_nested_thousands_deep_is_refused_cleanly() -> None:
    schema: dict[str, Any] = {"pattern": "^a"}
    for _ in range(5000):
        schema = {"not": schema, "$ref": "#/$defs/x"}
    with pytest.raises(SchemaInvalid):
        check_schema("svc", schema, {})


def test_a_schema_that_refers_to_itself_under_not_is_a_clean_failure_in_any_thread() -> None:
    # The recursion limit strikes inside the resolver's Rust code: a PanicException (a
    # BaseException) used to escape SchemaSet.errors, through the server's handlers.
    schema = {"$defs": {"named": {"not": {"$ref": "#/$defs/named"}}}, "$ref": "#/$defs/named"}
    check_schema("svc", schema, {})
    schemas = SchemaSet({"svc": schema}, 1)
    results: list[Any] = []

    def validate(frames: int = 0) -> None:
        # Where the limit strikes depends on how deep the caller's stack already is.
        if frames:
            validate(frames - 1)
            return
        for instance in ({"a": 1}, 1, "x"):
            results.append(schemas.errors("svc", instance))

    for frames in range(0, 60, 3):
        validate(frames)
    worker = threading.Thread(target=validate)
    worker.start()
    worker.join(30)
    assert results == [ENDLESS] * (3 * 20 + 3)
    # The set still validates (the panic left nothing broken behind).
    assert SchemaSet({"svc": {"type": "integer"}}, 2).errors("svc", "x")[0]["path"] == ""
