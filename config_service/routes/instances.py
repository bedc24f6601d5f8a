"""Handlers of instance reports: a client says which version it runs; operators list them with drift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.errors import bad_request

from ._http import authenticate, json_response, optional_int, read_json_object, server_of

STATUSES = ("applied", "failed", "fallback")
MAX_ID = 200
MAX_ERROR = 4000


def _text(body: dict[str, Any], key: str, limit: int, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise bad_request(f"{key!r} is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise bad_request(f"{key!r} must be a string")
    if len(value) > limit:
        if key == "error":
            return value[:limit]
        raise bad_request(f"{key!r} may be at most {limit} characters")
    return value


async def report_instance(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    body = await read_json_object(request)
    service = _text(body, "service", 64, True) or ""
    environment = _text(body, "environment", 64, True) or ""
    server.check_document_access(principal, "reader", service, environment)
    instance_id = _text(body, "instance_id", MAX_ID, True) or ""
    status = body.get("status")
    if status not in STATUSES:
        raise bad_request(f"'status' must be one of {', '.join(STATUSES)}")
    version = optional_int(body, "version")
    if version is not None and version < 0:
        raise bad_request("'version' must be a version number or null")
    digest = _text(body, "hash", 128, False)
    error = _text(body, "error", MAX_ERROR, False)
    await run_in_threadpool(
        server.store.record_instance, service, environment, instance_id, version, digest, status, error
    )
    return Response(status_code=204)


def _age_seconds(timestamp: str, now: datetime) -> float:
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (now - moment).total_seconds()


async def list_instances(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service = request.path_params["service"]
    environment = request.path_params["environment"]
    server.check_document_access(principal, "reader", service, environment)
    current = server.current(service, environment)
    now = datetime.now(UTC)
    stale_after = 3 * server.settings.instance_report_interval
    instances = []
    for record in server.store.list_instances(service, environment):
        instances.append(
            {
                "instance_id": record.instance_id,
                "version": record.version,
                "hash": record.hash,
                "status": record.status,
                "error": record.error,
                "last_seen": record.last_seen,
                "stale": _age_seconds(record.last_seen, now) > stale_after,
                "behind": current is not None
                and (record.version is None or record.version < current.version),
            }
        )
    return json_response({"instances": instances})
