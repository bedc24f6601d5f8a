"""The one error shape every failure takes at the edge: `{"error", "message", "details"}`, and the
one table that says which HTTP status each refusal code is.

The rules raise `Refused(code, ...)`; only this module knows statuses. Anything else that
escapes a handler becomes a 500 `internal` with no trace in the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from config_service.core.refusals import Refused

# Every code a refusal may carry, and its status (docs/server.md, "Errors").
STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_environment": 404,
    "unknown_service": 404,
    "retired": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "schema_conflict": 409,
    "sync_conflict": 409,  # a file change file sync held back (audited; no request sees it)
    "rollout_in_progress": 409,
    "precondition_failed": 412,
    "too_large": 413,
    "unsupported_media_type": 415,
    "invalid_tsk": 422,
    "schema_violation": 422,
    "invalid_schema": 422,
    "invalid_name": 422,
    "missing_local_value": 422,
    "too_many_requests": 429,
    "too_many_instances": 429,
    "internal": 500,
    "store_unavailable": 503,
}


def status_of(refused: Refused) -> int:
    """The HTTP status of a refusal; a code missing from `STATUS` is the server's own fault."""
    return STATUS.get(refused.code, 500)


def refusal_headers(refused: Refused) -> dict[str, str]:
    """The headers a refusal's answer carries besides its content type."""
    headers: dict[str, str] = {}
    if refused.code == "unauthorized":
        headers["WWW-Authenticate"] = "Bearer"
    if refused.retry_after is not None:
        headers["Retry-After"] = str(refused.retry_after)
    return headers


def refusal_body(refused: Refused) -> bytes:
    return error_body(refused.code, refused.message, refused.details)


def error_body(error: str, message: str, details: Iterable[Mapping[str, Any]] = ()) -> bytes:
    payload = {"error": error, "message": message, "details": [dict(detail) for detail in details]}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")
