"""Handlers that need no document: health, metrics, the OpenAPI description, the service list."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service import __version__
from config_service.metrics import CONTENT_TYPE_LATEST

from ._http import authenticate, json_response, server_of

logger = logging.getLogger("config_service")


async def health(request: Request) -> Response:
    server = server_of(request)
    try:
        await run_in_threadpool(server.store.check)
    except Exception as error:  # any store failure is "unhealthy", never a crash
        logger.error("health check: the store failed: %s", error)
        return json_response(
            {"status": "error", "store": "failed", "version": __version__}, status=503
        )
    return json_response({"status": "ok", "store": "ok", "version": __version__})


async def metrics(request: Request) -> Response:
    body = server_of(request).metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return Response(request.app.state.openapi, media_type="application/json")


async def list_services(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    return json_response(await run_in_threadpool(server.services, principal))
