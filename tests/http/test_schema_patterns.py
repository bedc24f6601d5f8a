"""End-to-end: the server refuses a schema whose pattern RE2 cannot run, with its pointer, and
runs RE2 on pushes (the keywords themselves: tests/schema/test_keywords.py)."""

from __future__ import annotations

import httpx

from tests.serving import ServerProcess, assert_error, push

EVIL = "^(a+)+$"
CRAFTED = "a" * 40 + "!"


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
