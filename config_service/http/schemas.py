"""Handlers of `/v1/schemas/{service}`: put (checked against every current document), get, history."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.core.refusals import bad_request, unsupported_media_type
from config_service.http.requests import (
    JSON_TYPE,
    authenticate,
    core_of,
    int_query,
    json_response,
    media_type,
    parse_json,
    path_version,
    read_body,
    request_id,
)
from config_service.store import SchemaRecord


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
    core = core_of(request)
    principal = authenticate(request)
    name = request.path_params["service"]
    force = _force(request)
    core.access.check_schema_write(principal, name, force)
    core.access.check_names(name)
    if media_type(request) != JSON_TYPE:
        raise unsupported_media_type("application/json (a JSON Schema, draft 2020-12)")
    schema = parse_json(await read_body(request))
    record, created = await run_in_threadpool(
        core.schemas.put, principal, name, schema, force, request_id(request)
    )
    return json_response(
        {"service": record.name, "version": record.version, "created_at": record.created_at},
        201 if created else 200,
    )


def _readable(request: Request) -> str:
    principal = authenticate(request)
    name = request.path_params["service"]
    core_of(request).access.check_schema_read(principal, name)
    return name


async def get_schema(request: Request) -> Response:
    name = _readable(request)
    record = await run_in_threadpool(core_of(request).schemas.get, name)
    return json_response(_schema_body(record))


async def schema_versions(request: Request) -> Response:
    name = _readable(request)
    limit = int_query(request, "limit", 50, 1, 500) or 50
    before = int_query(request, "before", None, 1)
    return json_response(await run_in_threadpool(core_of(request).schemas.history, name, limit, before))


async def schema_version(request: Request) -> Response:
    name = _readable(request)
    record = await run_in_threadpool(core_of(request).schemas.get, name, path_version(request))
    return json_response(_schema_body(record))
