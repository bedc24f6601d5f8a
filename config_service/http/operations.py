"""Handlers that need no document: health, metrics, the OpenAPI description, the services."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service import __version__
from config_service.core.access import require_admin
from config_service.core.refusals import bad_request
from config_service.http.metrics import CONTENT_TYPE_LATEST
from config_service.http.requests import (
    authenticate,
    core_of,
    json_response,
    read_json_object,
    request_id,
)

logger = logging.getLogger("config_service")


async def health(request: Request) -> Response:
    try:
        store = await run_in_threadpool(core_of(request).check_store)
    except Exception as error:  # any store failure is "unhealthy", never a crash
        logger.error("health check: the store failed: %s", error)
        return json_response(
            {"status": "error", "store": "failed", "version": __version__}, status=503
        )
    if store != "ok":
        # PostgreSQL away: configs and watches are still served from memory, so a load
        # balancer should keep this server (docs/replicas.md).
        return json_response({"status": "degraded", "store": store, "version": __version__})
    return json_response({"status": "ok", "store": "ok", "version": __version__})


async def metrics(request: Request) -> Response:
    body = request.app.state.metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")


async def list_services(request: Request) -> Response:
    principal = authenticate(request)
    return json_response(await run_in_threadpool(core_of(request).documents.services, principal))


async def create_service(request: Request) -> Response:
    """`POST /v1/services {"service": name}` (admin): 201 with the service, 200 when it exists."""
    core = core_of(request)
    principal = authenticate(request)
    require_admin(principal)
    body = await read_json_object(request)
    name = body.get("service")
    if not isinstance(name, str):
        raise bad_request("'service' is required: the name of the service to create")
    record, created = await run_in_threadpool(core.services.create, principal, name, request_id(request))
    return json_response(record.public(), 201 if created else 200)


async def retire_service(request: Request) -> Response:
    """`DELETE /v1/services/{service}` (admin): retire every document of the service."""
    core = core_of(request)
    principal = authenticate(request)
    require_admin(principal)
    service = request.path_params["service"]
    core.access.check_names(service)
    result = await run_in_threadpool(
        core.documents.retire_service, principal, service, "", request_id(request)
    )
    return json_response(result)
