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
    parameters: tuple[str, ...] = ()  # keys of PARAMETERS: the query parameters and headers it reads


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
    413: "Body or version message over its size limit (too_large)",
    415: "Unsupported content type (unsupported_media_type)",
    422: "Refused document (invalid_tsk, schema_violation, invalid_schema, invalid_name)",
    429: "Over a per-token or per-document bound (too_many_requests, too_many_instances); see Retry-After",
    503: "The store is not available",
}


_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"}
_NUMBER = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "service": _NAME,
    "environment": _NAME,
    "version": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": description}


# The query parameters and request headers of the API, described once; endpoints name theirs.
PARAMETERS: dict[str, dict[str, Any]] = {
    "wait": _query(
        "wait", {"type": "number", "minimum": 0}, "Long poll: seconds to hold (more than 120 is clamped); needs If-None-Match"
    ),
    "limit": _query("limit", {"type": "integer", "minimum": 1}, "Page size (larger values are clamped)"),
    "before": _query("before", _NUMBER, "Only entries older than this one (the previous page's next_before)"),
    "from_version": _query("from", _NUMBER, "The version to diff from", required=True),
    "to_version": _query("to", _NUMBER, "The version to diff to", required=True),
    "from_environment": _query("from", _NAME, "The environment to diff from", required=True),
    "to_environment": _query("to", _NAME, "The environment to diff to", required=True),
    "force": _query("force", {"type": "boolean"}, "Store the schema even if current documents break it (admin)"),
    "service": _query("service", {"type": "string"}, "Only this service (exact name)"),
    "environment": _query("environment", {"type": "string"}, "Only this environment (exact name)"),
    "action": _query("action", {"type": "string"}, "Only this action"),
    "actor": _query("actor", {"type": "string"}, "Only this actor (token name)"),
    "last_event_id": _query("last_event_id", {"type": "integer", "minimum": 0}, "Resume after this event id"),
    "path": _query("path", {"type": "string", "maxLength": 1024}, "One key: a JSON pointer like /database/pool_size; answers {path, value, version}"),
    "If-Match": _header("If-Match", 'Compare-and-set: a quoted version ("3"), "0" (must not exist) or *'),
    "If-None-Match": _header("If-None-Match", 'A quoted version: 304 while it is current (with wait, a long poll)'),
    "X-Config-Message": _header("X-Config-Message", "The version's message, percent-encoded UTF-8"),
    "Last-Event-ID": _header("Last-Event-ID", "Resume after this event id"),
}


def _parameters(path: str, names: Sequence[str] = ()) -> list[dict[str, Any]]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PATH_SCHEMAS.get(name, {"type": "string"}),
        }
        for name in re.findall(r"{(\w+)(?::\w+)?}", path)
    ]
    return parameters + [PARAMETERS[name] for name in names]


def build_openapi(endpoints: Sequence[Endpoint]) -> bytes:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = re.sub(r"{(\w+):\w+}", r"{\1}", endpoint.path)
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
            "parameters": _parameters(endpoint.path, endpoint.parameters),
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
