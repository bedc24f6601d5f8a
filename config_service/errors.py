"""The one error shape every failure takes: `{"error", "message", "details"}` with a fitting status.

The rules of the server raise `ApiError`; the HTTP layer turns it into a response. Anything
else that escapes a handler becomes a 500 `internal` with no trace in the body.
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A refusal the client should see: HTTP status, a stable code, one human sentence, details."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details if details is not None else []
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.error, self.message, self.details)


def error_body(error: str, message: str, details: list[Any] | None = None) -> bytes:
    payload = {"error": error, "message": message, "details": details or []}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def bad_request(message: str, details: list[Any] | None = None) -> ApiError:
    return ApiError(400, "bad_request", message, details)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def forbidden(message: str = "this token does not allow that") -> ApiError:
    return ApiError(403, "forbidden", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def precondition_failed(message: str, current: int | None) -> ApiError:
    return ApiError(412, "precondition_failed", message, [{"current_version": current}])
