"""The console's handlers (docs/console.md). Like the API's, each reads the request, makes one
call into the core, and renders; the actions call the very methods the API's handlers call
(`Documents.push_async`, `promote`, `preview_promotion`, `rollback`, `Tokens.create`,
`revoke`), after the same access checks, so the console can do nothing a script could not."""

from __future__ import annotations

import mimetypes
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from config_service.core.access import ROLES, require_admin
from config_service.core.refusals import Refused, bad_request, not_found, unauthorized
from config_service.core.sessions import Session
from config_service.http import events
from config_service.http.console.render import HERE, html
from config_service.http.console.web import (
    LOGIN_COOKIE,
    MAX_MESSAGE_FIELD,
    SESSION_COOKIE,
    action,
    check_login_token,
    doc_url,
    document_of,
    end_cookie,
    field,
    new_login_token,
    page,
    read_form,
    same_origin,
    session_of,
    set_cookie,
    version_field,
)
from config_service.http.errors import status_of
from config_service.http.requests import core_of, int_query, parse_number, request_id

# Static files, read once: the console's CSS and script ship inside the package.
STATIC = {
    path.name: (path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")
    for path in (HERE / "static").iterdir()
    if path.is_file()
}


# -- signing in and out ---------------------------------------------------------------------


def _login_page(request: Request, message: str | None, status: int) -> Response:
    token = new_login_token()
    response = html(request, "login.html", {"session": None, "login": token, "message": message}, status)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login_form(request: Request) -> Response:
    if await session_of(request) is not None:
        return RedirectResponse("/ui/", status_code=303)
    return _login_page(request, None, 200)


async def login(request: Request) -> Response:
    """Sign in: the token travels in the form's body only (never a URL), and becomes a session."""
    core = core_of(request)
    try:
        same_origin(request)
        form = await read_form(request)
        check_login_token(request, form.get("login"))
        secret, _ = await run_in_threadpool(core.sessions.sign_in, form.get("token", ""))
        # A session this browser held before ends: one browser, one session.
        await run_in_threadpool(core.sessions.sign_out, request.cookies.get(SESSION_COOKIE))
    except Refused as refused:
        return _login_page(request, refused.message, status_of(refused))
    response = RedirectResponse("/ui/", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, secret, max_age=None)
    end_cookie(request, response, LOGIN_COOKIE)
    return response


@action
async def logout(request: Request, session: Session, form: dict[str, str]) -> Response:
    await run_in_threadpool(core_of(request).sessions.sign_out, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    end_cookie(request, response, SESSION_COOKIE)
    return response


# -- reading ----------------------------------------------------------------------------------


@page
async def matrix(request: Request, session: Session) -> Response:
    view = await run_in_threadpool(core_of(request).console.matrix, session.principal)
    template = "matrix_table.html" if request.query_params.get("part") == "table" else "matrix.html"
    return html(request, template, {"session": session, "matrix": view})


@page
async def document(request: Request, session: Session) -> Response:
    service, environment = document_of(request)
    before = int_query(request, "before", None, 1)
    view = await run_in_threadpool(
        core_of(request).console.document, session.principal, service, environment, before
    )
    return html(request, "document.html", {"session": session, "doc": view})


@page
async def diff_versions(request: Request, session: Session) -> Response:
    """Two versions of one document side by side (`GET .../diff?from=N&to=M` of the API)."""
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "reader", service, environment)
    first = int_query(request, "from", None, 1)
    second = int_query(request, "to", None, 1)
    if first is None or second is None:
        raise bad_request("pick two versions to compare")
    diff = await run_in_threadpool(core.documents.diff_versions, service, environment, first, second)
    context = {"session": session, "service": service, "environment": environment, "diff": diff}
    return html(request, "diff.html", context)


@page
async def diff_environments(request: Request, session: Session) -> Response:
    """The current versions of two environments side by side (`GET /v1/diff/{service}`)."""
    core = core_of(request)
    service = request.path_params["service"]
    first = request.query_params.get("from") or ""
    second = request.query_params.get("to") or ""
    if not first or not second:
        raise bad_request("pick two environments to compare")
    for environment in (first, second):
        core.access.check_document(session.principal, "reader", service, environment)
    diff = await run_in_threadpool(core.documents.diff_environments, service, first, second)
    context = {"session": session, "service": service, "environment": None, "diff": diff}
    return html(request, "diff.html", context)


@page
async def audit(request: Request, session: Session) -> Response:
    require_admin(session.principal)
    query = request.query_params
    filters = {name: (query.get(name) or "").strip()[:200] for name in ("service", "environment", "action", "actor")}
    before = int_query(request, "before", None, 1)
    listing = await run_in_threadpool(
        lambda: core_of(request).audit.listing(
            50, before, **{name: value or None for name, value in filters.items()}
        )
    )
    return html(request, "audit.html", {"session": session, "audit": listing, "filters": filters})


@page
async def tokens(request: Request, session: Session) -> Response:
    require_admin(session.principal)
    listing = await run_in_threadpool(core_of(request).tokens.listing)
    return html(request, "tokens.html", _tokens_context(session, listing, None, None))


def _tokens_context(
    session: Session, listing: dict[str, Any], created: dict[str, Any] | None, error: Refused | None
) -> dict[str, Any]:
    return {"session": session, "tokens": listing["tokens"], "created": created, "error": error, "roles": ROLES}


async def static(request: Request) -> Response:
    found = STATIC.get(request.path_params["name"])
    if found is None:
        raise not_found("there is no such file")
    body, kind = found
    return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})


async def console_events(scope: Scope, receive: Receive, send: Send) -> None:
    """`/ui/events`: the API's event stream, for the session's token (its scopes; it ends when
    the token is revoked)."""
    session = await session_of(Request(scope, receive))
    if session is None:
        raise unauthorized("sign in to the console first")
    await events.stream(scope, receive, send, session.principal)


class ConsoleEvents:
    __name__ = "console_events"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await console_events(scope, receive, send)


# -- acting -----------------------------------------------------------------------------------


def _edit_page(
    request: Request,
    session: Session,
    service: str,
    environment: str,
    source: str,
    base: int,
    message: str,
    refused: Refused | None,
) -> Response:
    marks = {int(detail["line"]) for detail in (refused.details if refused else []) if "line" in detail}
    context = {
        "session": session,
        "service": service,
        "environment": environment,
        "source": source,
        "base": base,
        "message": message,
        "refused": refused,
        "marks": marks,
    }
    return html(request, "edit.html", context, status_of(refused) if refused else 200)


@page
async def edit_form(request: Request, session: Session) -> Response:
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    current = await run_in_threadpool(core.versions.current, service, environment)
    source = current.record.source if current is not None else ""
    base = current.record.version if current is not None else 0
    return _edit_page(request, session, service, environment, source, base, "", None)


@action
async def push(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Push with compare-and-set on the version the editor showed (`If-Match` of the API)."""
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    base_text = form.get("base", "").strip()
    base = parse_number(base_text)
    if base is None:
        raise bad_request("the form lost the version it was editing: reload the page")
    source = form.get("source", "").replace("\r\n", "\n")
    message = field(form, "message", MAX_MESSAGE_FIELD, required=False)
    try:
        rendered, created = await core.documents.push_async(
            session.principal, service, environment, source, message, base,
            request_id=request_id(request),
        )
    except Refused as refused:
        if refused.code == "forbidden":
            raise
        return _edit_page(request, session, service, environment, source, base, message, refused)
    outcome = "pushed" if created else "unchanged"
    return RedirectResponse(doc_url(service, environment, f"?{outcome}={rendered.record.version}"), 303)


@page
async def promote_preview(request: Request, session: Session) -> Response:
    """The dry run of a promotion into this environment: the diff it would make, with the
    environment-local values it keeps; the confirm form pins the version previewed."""
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    source_environment = core.settings.previous_environment(environment) if environment in core.settings.pipeline else None
    if source_environment is None:
        raise Refused("conflict", f"{environment!r} is the first environment: nothing promotes into it")
    core.access.check_document(session.principal, "reader", service, source_environment)

    def dry_run() -> tuple[int, dict[str, Any]]:
        # Pin the version previewed, so that the confirmation promotes exactly what was shown.
        version = core.documents.promotion_source(service, environment, source_environment, None).version
        return version, core.documents.preview_promotion(
            service, environment, source_environment, version, ""
        )

    version, preview = await run_in_threadpool(dry_run)
    context = {
        "version": version,
        "session": session,
        "service": service,
        "environment": environment,
        "source_environment": source_environment,
        "preview": preview,
    }
    return html(request, "promote.html", context)


@action
async def promote(request: Request, session: Session, form: dict[str, str]) -> Response:
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    source_environment = field(form, "from", 64)
    core.access.check_document(session.principal, "reader", service, source_environment)
    version = version_field(form)
    message = field(form, "message", MAX_MESSAGE_FIELD, required=False)
    rendered, created = await run_in_threadpool(
        core.documents.promote,
        session.principal,
        service,
        environment,
        source_environment,
        version,
        message,
        request_id(request),
    )
    outcome = "promoted" if created else "unchanged"
    return RedirectResponse(doc_url(service, environment, f"?{outcome}={rendered.record.version}"), 303)


@page
async def rollback_preview(request: Request, session: Session) -> Response:
    """What rolling back to a version changes: the current version beside that one (for a
    retired document, the source that revives it)."""
    core = core_of(request)
    service, environment = document_of(request)
    target = int_query(request, "version", None, 1)
    if target is None:
        raise bad_request("pick the version to roll back to")
    preview = await run_in_threadpool(
        core.console.rollback_preview, session.principal, service, environment, target
    )
    context = {"session": session, "service": service, "environment": environment, **preview}
    return html(request, "rollback.html", context)


@action
async def rollback(request: Request, session: Session, form: dict[str, str]) -> Response:
    core = core_of(request)
    service, environment = document_of(request)
    core.access.check_document(session.principal, "writer", service, environment)
    version = version_field(form)
    message = field(form, "message", MAX_MESSAGE_FIELD, required=False)
    rendered, created = await run_in_threadpool(
        core.documents.rollback, session.principal, service, environment, version, message, request_id(request)
    )
    outcome = "rolled_back" if created else "unchanged"
    return RedirectResponse(doc_url(service, environment, f"?{outcome}={rendered.record.version}"), 303)


def _patterns(text: str, name: str) -> list[str]:
    patterns = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not patterns:
        raise bad_request(f"give at least one {name} pattern ('*' for all)")
    if len(patterns) > 64 or any(len(pattern) > 200 for pattern in patterns):
        raise bad_request(f"at most 64 {name} patterns of at most 200 characters")
    return patterns


@action
async def create_token(request: Request, session: Session, form: dict[str, str]) -> Response:
    """Create a token; its secret is on this answer's page only."""
    core = core_of(request)
    require_admin(session.principal)
    try:
        name = field(form, "name", 200).strip()
        role = form.get("role", "")
        if role not in ROLES:
            raise bad_request(f"the role must be one of {', '.join(ROLES)}")
        services = _patterns(field(form, "services", 4000), "service")
        environments = _patterns(field(form, "environments", 4000), "environment")
        record, secret = await run_in_threadpool(
            core.tokens.create, session.principal, name, role, services, environments, request_id(request)
        )
        created: dict[str, Any] | None = {**record.public(), "token": secret}
        error = None
    except Refused as refused:
        if refused.code == "forbidden":
            raise
        created, error = None, refused
    listing = await run_in_threadpool(core.tokens.listing)
    status = 201 if created else status_of(error) if error else 200
    return html(request, "tokens.html", _tokens_context(session, listing, created, error), status)


@action
async def revoke_token(request: Request, session: Session, form: dict[str, str]) -> Response:
    core = core_of(request)
    require_admin(session.principal)
    token_id = request.path_params["token_id"]
    await run_in_threadpool(core.tokens.revoke, session.principal, token_id, request_id(request))
    return RedirectResponse("/ui/tokens", status_code=303)
