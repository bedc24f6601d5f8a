"""Handler of `GET /v1/audit` (admin only): who did what, newest first, with filters."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.core.access import require_admin
from config_service.http.requests import authenticate, core_of, int_query, json_response


async def list_audit(request: Request) -> Response:
    require_admin(authenticate(request))
    limit = int_query(request, "limit", 100, 1, 1000) or 100
    before = int_query(request, "before", None, 1)
    query = request.query_params
    listing = await run_in_threadpool(
        lambda: core_of(request).audit.listing(
            limit,
            before,
            service=query.get("service") or None,
            environment=query.get("environment") or None,
            action=query.get("action") or None,
            actor=query.get("actor") or None,
        )
    )
    return json_response(listing)
