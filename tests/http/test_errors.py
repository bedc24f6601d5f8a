"""The one table from refusal code to HTTP status (`config_service/http/errors.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

from config_service.core import refusals
from config_service.core.refusals import Refused
from config_service.http.errors import STATUS, refusal_body, refusal_headers, status_of

SERVER = Path(__file__).resolve().parents[2] / "config_service"


def _codes_raised() -> set[str]:
    """Every code a `Refused(...)` is made with, anywhere in the server and its sync."""
    codes: set[str] = set()
    for folder in ("core", "http", "sync"):
        for path in (SERVER / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Refused"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    codes.add(node.args[0].value)
    return codes


def test_every_code_the_rules_raise_has_a_status() -> None:
    helpers = {
        refusals.bad_request("x").code,
        refusals.unauthorized("x").code,
        refusals.forbidden().code,
        refusals.not_found("x").code,
        refusals.precondition_failed("x", 1).code,
        refusals.too_large("x").code,
        refusals.unsupported_media_type("x").code,
        refusals.store_unavailable(RuntimeError("x")).code,
    }
    # File sync's own refusals never reach HTTP: they are audited as they are.
    sync_only = {"unknown_environment", "unreadable", "internal_error"}
    missing = (_codes_raised() | helpers) - set(STATUS) - sync_only
    assert missing == set()


def test_the_documented_statuses() -> None:
    expected = {
        "bad_request": 400,
        "unauthorized": 401,
        "forbidden": 403,
        "not_found": 404,
        "unknown_environment": 404,
        "conflict": 409,
        "schema_conflict": 409,
        "precondition_failed": 412,
        "too_large": 413,
        "unsupported_media_type": 415,
        "invalid_tsk": 422,
        "schema_violation": 422,
        "invalid_schema": 422,
        "invalid_name": 422,
        "too_many_requests": 429,
        "too_many_instances": 429,
        "request_timeout": 408,
        "store_unavailable": 503,
    }
    assert {code: STATUS[code] for code in expected} == expected


def test_a_refusal_becomes_the_error_shape_with_its_headers() -> None:
    limited = Refused("too_many_requests", "slow down", retry_after=7)
    assert status_of(limited) == 429
    assert refusal_headers(limited) == {"Retry-After": "7"}
    assert refusal_headers(refusals.unauthorized("who?")) == {"WWW-Authenticate": "Bearer"}
    failing = Refused("schema_violation", "no", [{"path": "/port", "message": "must be an integer"}])
    assert refusal_body(failing) == (
        b'{"error": "schema_violation", "message": "no", '
        b'"details": [{"path": "/port", "message": "must be an integer"}]}'
    )


def test_a_code_missing_from_the_table_is_the_servers_fault() -> None:
    assert status_of(Refused("no_such_code", "?")) == 500
