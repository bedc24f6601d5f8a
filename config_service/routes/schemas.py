"""Handlers of `/v1/schemas/{service}`: put (checked against every current document), get, history."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.errors import bad_request, forbidden
from config_service.store import SchemaRecord

from ._http import (
    JSON_TYPE,
    authenticate,
    int_query,
    json_response,
    media_type,
    parse_json,
    path_version,
    read_body,
    request_id,
    server_of,
    unsupported,
)


def _schema_body(record: SchemaRecord) -> dict[str, object]:
    return {**record.metadata(), "schema": json.loads(record.schema)}


def _force(request: Request) -> bool:
    text = request.query_params.get("force", "false").lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise bad_request(f"the parameter 'force' must be true or false, not {text!r}")


async def put_schema(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    name = request.path_params["service"]
    server.check_schema_write(principal, name)
    force = _force(request)
    if force and not principal.is_admin:
        raise forbidden("only an admin token may force a schema")
    server.check_names(name)
    if media_type(request) != JSON_TYPE:
        raise unsupported("application/json (a JSON Schema, draft 2020-12)")
    schema = parse_json(await read_body(request))
    record, created = await run_in_threadpool(
        server.put_schema, principal, name, schema, force, request_id(request)
    )
    return json_response(
        {"service": record.name, "version": record.version, "created_at": record.created_at},
        201 if created else 200,
    )


def _readable(request: Request) -> str:
    server = server_of(request)
    principal = authenticate(request)
    name = request.path_params["service"]
    server.check_schema_read(principal, name)
    return name


async def get_schema(request: Request) -> Response:
    name = _readable(request)
    return json_response(_schema_body(server_of(request).get_schema(name)))


async def schema_versions(request: Request) -> Response:
    name = _readable(request)
    limit = int_query(request, "limit", 50, 1, 500) or 50
    before = int_query(request, "before", None, 1)
    records = await run_in_threadpool(server_of(request).store.list_schemas, name, limit + 1, before)
    page = records[:limit]
    next_before = page[-1].version if len(records) > limit and page else None
    return json_response(
        {"versions": [record.metadata() for record in page], "next_before": next_before}
    )


async def schema_version(request: Request) -> Response:
    name = _readable(request)
    record = server_of(request).get_schema(name, path_version(request))
    return json_response(_schema_body(record))
