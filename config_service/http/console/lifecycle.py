"""The console's actions on a document's life (docs/console.md, "Actions"): retire it, start a
rollout and pause, resume, abort or complete it, take the file in a sync conflict. Like every
console handler, each reads the form, makes one call into the core (`Documents.retire`,
`Rollouts.start`, `Rollouts.pause`, ..., `FileSyncRules.take_file`) after the same access
checks as the API's handlers, and renders or redirects."""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from config_service.core.refusals import Refused, bad_request, not_found
from config_service.core.rollouts import DEFAULT_BAKE_SECONDS, DEFAULT_STEPS, RolloutPlan
from config_service.core.sessions import Session
from config_service.http.console.render import html
from config_service.http.console.web import (
    MAX_MESSAGE_FIELD,
    action,
    doc_url,
    document_of,
    field,
    page,
    version_field,
)
from config_service.http.errors import status_of
from config_service.http.requests import core_of, int_query, parse_number, request_id

CANDIDATES = ("source", "version", "from")
PLAN_FIELDS = ("steps", "bake_seconds", "max_failed")
# What a rollout's buttons do, by the word in the path (`POST .../rollout/pause`, as the API).
ROLLOUT_CHANGES = {"pause": "paused", "resume": "resumed", "abort": "aborted", "complete": "completed"}
_SECONDS = re.compile(r"[0-9]{1,7}(?:\.[0-9]{1,3})?")


# -- retire -------------------------------------------------------------------------------------


@page
async def retire_preview(request: Request, session: Session) -> Response:
    """The confirm step: what retiring means for this document and the instances running it."""
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    view = await run_in_threadpool(
        core.console.document, session.principal, service, environment, None
    )
    return html(request, "retire.html", {"session": session, "doc": view})


@action
async def retire(request: Request, session: Session, form: dict[str, str]) -> Response:
    """`DELETE /v1/configs/{s}/{e}` with `If-Match` on the version the confirm page showed."""
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    shown = version_field(form)
    message = field(form, "message", MAX_MESSAGE_FIELD, required=False)
    record, created = await run_in_threadpool(
        core.documents.retire, session.principal, service, environment, shown, message,
        request_id(request),
    )
    outcome = "retired" if created else "unchanged"
    return RedirectResponse(doc_url(service, environment, f"?{outcome}={record.version}"), 303)


# -- rollouts -----------------------------------------------------------------------------------


def _steps(text: str) -> tuple[int, ...]:
    parts = [part for part in re.split(r"[\s,/%]+", text.strip()) if part]
    if not parts or any(not part.isascii() or not part.isdigit() or len(part) > 3 for part in parts):
        raise bad_request("the field 'steps' takes percents separated by commas, like 10, 50, 100")
    return tuple(int(part) for part in parts)


def _seconds(text: str) -> float:
    if not _SECONDS.fullmatch(text.strip()):
        raise bad_request("the field 'bake_seconds' takes seconds, like 300 or 0.5")
    return float(text)


def _plan(form: dict[str, str]) -> RolloutPlan:
    """The form as the API's rollout body: exactly one candidate, the steps and their limits."""
    candidate = form.get("candidate", "")
    if candidate not in CANDIDATES:
        raise bad_request("choose what to roll out: the edited source, a version, or a promotion")
    max_failed = parse_number(form.get("max_failed", "").strip())
    if max_failed is None:
        raise bad_request("the field 'max_failed' takes a whole number of instances, like 0")
    return RolloutPlan(
        source=form.get("source", "").replace("\r\n", "\n") if candidate == "source" else None,
        version=version_field(form) if candidate == "version" else None,
        from_environment=field(form, "from", 64) if candidate == "from" else None,
        steps=_steps(field(form, "steps", 200)),
        bake_seconds=_seconds(field(form, "bake_seconds", 20)),
        max_failed=max_failed,
        message=field(form, "message", MAX_MESSAGE_FIELD, required=False),
    )


def _rollout_page(
    request: Request,
    session: Session,
    view: dict[str, Any],
    form: dict[str, str],
    refused: Refused | None,
) -> Response:
    marks = {int(detail["line"]) for detail in (refused.details if refused else []) if "line" in detail}
    # A refused plan names its field ('steps', 'bake_seconds', 'max_failed'): mark that input.
    bad_field = next(
        (name for name in PLAN_FIELDS if refused is not None and f"'{name}'" in refused.message), None
    )
    context = {
        "session": session, "view": view, "form": form, "refused": refused, "marks": marks,
        "bad_field": bad_field,
    }
    return html(request, "rollout.html", context, status_of(refused) if refused else 200)


@page
async def rollout_form(request: Request, session: Session) -> Response:
    """The form that starts a rollout: the current source to edit, or a version, or a
    promotion from the previous environment; steps, bake time, failures allowed, message."""
    core = core_of(request)
    service, environment = document_of(request)
    chosen = int_query(request, "version", None, 1)
    view = await run_in_threadpool(core.console.rollout_form, session.principal, service, environment)
    form = {
        "candidate": "version" if chosen is not None else "source",
        "source": view["source"],
        "version": str(chosen) if chosen is not None else "",
        "steps": ", ".join(map(str, DEFAULT_STEPS)),
        "bake_seconds": f"{DEFAULT_BAKE_SECONDS:g}",
        "max_failed": "0",
        "message": "",
    }
    return _rollout_page(request, session, view, form, None)


@action
async def start_rollout(request: Request, session: Session, form: dict[str, str]) -> Response:
    """`POST .../rollouts`: a refused plan or candidate comes back on the form, beside it."""
    core = core_of(request)
    principal = session.principal
    service, environment = document_of(request)
    core.access.check_document(principal, "writer", service, environment)
    try:
        plan = _plan(form)
        if plan.from_environment is not None:
            core.access.check_document(principal, "reader", service, plan.from_environment)
        rollout = await run_in_threadpool(
            core.rollouts.start, principal, service, environment, plan, request_id(request)
        )
    except Refused as refused:
        if refused.code == "forbidden":
            raise
        view = await run_in_threadpool(core.console.rollout_form, principal, service, environment)
        shown = {name: form.get(name, "") for name in (
            "candidate", "source", "version", "steps", "bake_seconds", "max_failed", "message"
        )}
        return _rollout_page(request, session, view, shown, refused)
    suffix = f"?rollout=started&candidate={rollout['candidate']['version']}"
    return RedirectResponse(doc_url(service, environment, suffix), 303)


@action
async def change_rollout(request: Request, session: Session, form: dict[str, str]) -> Response:
    """`POST .../rollout/pause|resume|abort|complete`."""
    core = core_of(request)
    service, environment = document_of(request)
    change = request.path_params["change"]
    if change not in ROLLOUT_CHANGES:
        raise not_found(f"a rollout can be {', '.join(ROLLOUT_CHANGES)}, not {change!r}")
    core.access.check_document(session.principal, "writer", service, environment)
    act = getattr(core.rollouts, change)
    await run_in_threadpool(act, session.principal, service, environment, request_id(request))
    return RedirectResponse(doc_url(service, environment, f"?rollout={ROLLOUT_CHANGES[change]}"), 303)


# -- file sync ----------------------------------------------------------------------------------


@page
async def take_file_preview(request: Request, session: Session) -> Response:
    """A sync conflict: the current version beside the file under environments/."""
    core = core_of(request)
    service, environment = document_of(request)
    view = await run_in_threadpool(core.console.take_file_view, session.principal, service, environment)
    return html(request, "take_file.html", {"session": session, "view": view})


@action
async def take_file(request: Request, session: Session, form: dict[str, str]) -> Response:
    """`POST /v1/configs/{s}/{e}/sync {"take": "file"}`: the file becomes the next version."""
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    rendered, created = await run_in_threadpool(
        core.file_sync.take_file, session.principal, service, environment, request_id(request)
    )
    outcome = "took_file" if created else "unchanged"
    return RedirectResponse(doc_url(service, environment, f"?{outcome}={rendered.record.version}"), 303)
