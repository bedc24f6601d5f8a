"""Handlers that need no document: health, metrics, the OpenAPI description, the service list."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service import __version__
from config_service.http.metrics import CONTENT_TYPE_LATEST
from config_service.http.requests import authenticate, core_of, json_response

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
