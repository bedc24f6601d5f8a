"""Handlers of instance reports: a client says which version it runs; operators list them with drift."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.core.refusals import bad_request
from config_service.http.requests import (
    authenticate,
    core_of,
    json_response,
    optional_int,
    read_json_object,
)
from config_service.store import InstanceReport

STATUSES = ("applied", "failed", "fallback", "stopped")
MAX_ID = 200
MAX_HASH = 128
# An error longer than this many bytes of UTF-8 is cut: the first lines say what went wrong.
MAX_ERROR_BYTES = 2048


def _text(body: dict[str, Any], key: str, limit: int, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise bad_request(f"{key!r} is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise bad_request(f"{key!r} must be a string")
    if len(value) > limit:
        raise bad_request(f"{key!r} may be at most {limit} characters")
    if not value.isprintable():
        raise bad_request(f"{key!r} may not hold control characters")
    return value


def _error(body: dict[str, Any]) -> str | None:
    value = body.get("error")
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request("'error' must be a string or null")
    if len(value) * 4 > MAX_ERROR_BYTES:
        # Cut on a character boundary (a lone surrogate was refused with the JSON).
        value = value.encode("utf-8")[:MAX_ERROR_BYTES].decode("utf-8", errors="ignore")
    return value


def _version(body: dict[str, Any], key: str) -> int | None:
    value = optional_int(body, key)
    if value is not None and value < 0:
        raise bad_request(f"{key!r} must be a version number or null")
    return value


async def report_instance(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    body = await read_json_object(request)
    service = _text(body, "service", 64, True) or ""
    environment = _text(body, "environment", 64, True) or ""
    core.access.check_document(principal, "reader", service, environment)
    status = body.get("status")
    if status not in STATUSES:
        raise bad_request(f"'status' must be one of {', '.join(STATUSES)}")
    failed_version = _version(body, "failed_version")
    failed_hash = _text(body, "failed_hash", MAX_HASH, False)
    if status != "failed" and (failed_version is not None or failed_hash is not None):
        raise bad_request("'failed_version' and 'failed_hash' are for reports with status 'failed'")
    report = InstanceReport(
        service=service,
        environment=environment,
        instance_id=_text(body, "instance_id", MAX_ID, True) or "",
        status=status,
        version=_version(body, "version"),
        hash=_text(body, "hash", MAX_HASH, False),
        error=_error(body),
        failed_version=failed_version,
        failed_hash=failed_hash,
        cohort=_text(body, "cohort", MAX_ID, False),
    )
    await run_in_threadpool(core.instances.report, principal, report)
    return Response(status_code=204)


async def list_instances(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service = request.path_params["service"]
    environment = request.path_params["environment"]
    core.access.check_document(principal, "reader", service, environment)
    return json_response(await run_in_threadpool(core.instances.listing, service, environment))
