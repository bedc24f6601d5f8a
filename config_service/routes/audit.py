"""Handler of `GET /v1/audit` (admin only): who did what, newest first, with filters."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ._http import authenticate, int_query, json_response, require_admin, server_of


async def list_audit(request: Request) -> Response:
    server = server_of(request)
    require_admin(authenticate(request))
    limit = int_query(request, "limit", 100, 1, 1000) or 100
    before = int_query(request, "before", None, 1)
    query = request.query_params
    records = await run_in_threadpool(
        server.store.list_audit,
        limit + 1,
        before,
        service=query.get("service") or None,
        environment=query.get("environment") or None,
        action=query.get("action") or None,
        actor=query.get("actor") or None,
    )
    page = records[:limit]
    next_before = page[-1].id if len(records) > limit and page else None
    return json_response({"entries": [record.public() for record in page], "next_before": next_before})
