"""Handlers of rollouts (docs/rollouts.md): start one, read the latest, pause, resume, abort,
complete. Each reads the request, makes one call into the core's rollouts, and renders."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.core.refusals import bad_request
from config_service.core.rollouts import DEFAULT_BAKE_SECONDS, DEFAULT_STEPS, RolloutPlan
from config_service.http.requests import (
    authenticate,
    core_of,
    json_response,
    optional_int,
    optional_string,
    read_json_object,
    request_id,
)

KNOWN_FIELDS = ("source", "version", "from", "steps", "bake_seconds", "max_failed", "message")


def _document(request: Request) -> tuple[str, str]:
    return request.path_params["service"], request.path_params["environment"]


async def start_rollout(request: Request) -> Response:
    """`POST .../rollouts`: 201 with the rollout object."""
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
    body = await read_json_object(request)
    unknown = sorted(set(body) - set(KNOWN_FIELDS))
    if unknown:
        raise bad_request(
            f"unknown field {unknown[0]!r}; a rollout takes {', '.join(KNOWN_FIELDS)}"
        )
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        raise bad_request("'source' must be the TSK document as a string")
    version = optional_int(body, "version")
    if version is not None and version < 1:
        raise bad_request("'version' must be a positive integer")
    from_environment = body.get("from")
    if from_environment is not None:
        if not isinstance(from_environment, str) or not from_environment:
            raise bad_request("'from' must be the environment to promote from")
        # Reading the source environment needs read access there, like any read.
        core.access.check_document(principal, "reader", service, from_environment)
    plan = RolloutPlan(
        source=source,
        version=version,
        from_environment=from_environment,
        steps=body.get("steps", list(DEFAULT_STEPS)),
        bake_seconds=body.get("bake_seconds", DEFAULT_BAKE_SECONDS),
        max_failed=body.get("max_failed", 0),
        message=optional_string(body, "message"),
    )
    rollout = await run_in_threadpool(
        core.rollouts.start, principal, service, environment, plan, request_id(request)
    )
    return json_response(rollout, 201)


async def get_rollout(request: Request) -> Response:
    """`GET .../rollout`: the document's latest rollout."""
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "reader", service, environment)
    rollout = await run_in_threadpool(core.rollouts.get, service, environment)
    return json_response(rollout)


async def _change(request: Request, action: str) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
    change = getattr(core.rollouts, action)
    rollout = await run_in_threadpool(change, principal, service, environment, request_id(request))
    return json_response(rollout)


async def pause_rollout(request: Request) -> Response:
    return await _change(request, "pause")


async def resume_rollout(request: Request) -> Response:
    return await _change(request, "resume")


async def abort_rollout(request: Request) -> Response:
    return await _change(request, "abort")


async def complete_rollout(request: Request) -> Response:
    return await _change(request, "complete")
