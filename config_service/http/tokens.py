"""Handlers of `/v1/tokens` (admin only): create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.core.access import ROLES, require_admin
from config_service.core.refusals import bad_request
from config_service.http.requests import (
    authenticate,
    core_of,
    json_response,
    read_json_object,
    request_id,
)

MAX_PATTERNS = 64
MAX_TEXT = 200


def _patterns(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not value:
        raise bad_request(f"{key!r} is required: a non-empty list of patterns (['*'] for all)")
    if len(value) > MAX_PATTERNS:
        raise bad_request(f"{key!r} may hold at most {MAX_PATTERNS} patterns")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_TEXT:
            raise bad_request(f"every item of {key!r} must be a non-empty string")
    return list(value)


async def create_token(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    require_admin(principal)
    body = await read_json_object(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TEXT:
        raise bad_request("'name' is required: a short string that says who uses the token")
    role = body.get("role")
    if role not in ROLES:
        raise bad_request(f"'role' must be one of {', '.join(ROLES)}")
    services = _patterns(body, "services")
    environments = _patterns(body, "environments")
    record, secret = await run_in_threadpool(
        core.tokens.create, principal, name, role, services, environments, request_id(request)
    )
    public = record.public()
    del public["revoked_at"]
    return json_response({**public, "token": secret}, 201)


async def list_tokens(request: Request) -> Response:
    require_admin(authenticate(request))
    return json_response(await run_in_threadpool(core_of(request).tokens.listing))


async def revoke_token(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    require_admin(principal)
    token_id = request.path_params["token_id"]
    await run_in_threadpool(core.tokens.revoke, principal, token_id, request_id(request))
    return Response(status_code=204)
