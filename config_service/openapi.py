"""The OpenAPI 3.1 description of the HTTP API, built from the route table so the two cannot drift."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config_service import __version__


@dataclass(frozen=True)
class Endpoint:
    """One row of the route table: method, path template, handler, who may call it, what it does."""

    method: str
    path: str
    handler: Any
    summary: str
    access: str  # "public", "reader", "writer", "admin", "token"
    responses: tuple[int, ...] = (200,)
    request_body: str | None = None  # "tsk-or-json", "json"


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message", "details"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "array"},
    },
}

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad request (bad_request)",
    401: "No valid bearer token (unauthorized)",
    403: "The token's role or scope does not allow it (forbidden)",
    404: "Not found (not_found, unknown_environment)",
    409: "Conflict (conflict, schema_conflict)",
    412: "If-Match does not hold (precondition_failed)",
    413: "Body over the size limit (too_large)",
    415: "Unsupported content type (unsupported_media_type)",
    422: "Refused document (invalid_tsk, schema_violation, invalid_schema, invalid_name)",
    503: "The store is not available",
}


def _parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)(?::\w+)?}", path)
    ]


def build_openapi(endpoints: Sequence[Endpoint]) -> bytes:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = re.sub(r"{(\w+):\w+}", r"{\1}", endpoint.path)
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
            "parameters": _parameters(endpoint.path),
            "responses": {},
        }
        statuses = set(endpoint.responses)
        if endpoint.access != "public":
            operation["security"] = [{"bearer": []}]
            statuses |= {401, 403}
            operation["description"] = f"Needs a token with role {endpoint.access} (or above)."
        for status in sorted(statuses):
            response: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "")}
            if status >= 400:
                response["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }
            operation["responses"][str(status)] = response
        if endpoint.request_body == "tsk-or-json":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "text/x-tsk": {"schema": {"type": "string"}},
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["source"],
                            "properties": {
                                "source": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            }
        elif endpoint.request_body == "json":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(path, {})[endpoint.method.lower()] = operation
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "tskcfg config service",
            "version": __version__,
            "description": "Versioned, validated TSK configuration per service and environment.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    return json.dumps(document, indent=2).encode("utf-8")
