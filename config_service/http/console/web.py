"""The console's plumbing: its session cookie, its forms (bounded, CSRF-checked), HTTPS as the
browser sees it, and the headers every console answer carries (docs/console.md)."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config_service.core.refusals import Refused, bad_request, forbidden, unsupported_media_type
from config_service.core.sessions import Session
from config_service.http.console.render import SECURITY_HEADERS, html
from config_service.http.errors import status_of
from config_service.http.requests import core_of, media_type, parse_number, read_body

SESSION_COOKIE = "tskcfg_session"
# Before sign-in there is no session: the login form's CSRF token is a double-submit cookie.
LOGIN_COOKIE = "tskcfg_login"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 32
MAX_MESSAGE_FIELD = 4096

Page = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


class SecurityHeaders:
    """Adds the console's security headers to every answer under /ui/ (pages, static files,
    errors, the event stream)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in SECURITY_HEADERS.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS: the connection's scheme, or the
    `X-Forwarded-Proto` of a proxy named by `--trusted-proxy` (nobody else's counts)."""
    client = request.scope.get("client")
    trusted = core_of(request).settings.trusted_proxies
    if client and client[0] in trusted:
        forwarded = request.headers.get("x-forwarded-proto")
        if forwarded:
            return forwarded.split(",")[0].strip().lower() == "https"
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def end_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/ui", httponly=True, samesite="strict", secure=is_https(request))


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def check_login_token(request: Request, presented: str | None) -> None:
    """The login form's double-submit check: its hidden field equals its cookie."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not presented or not cookie or not hmac.compare_digest(presented.encode(), cookie.encode()):
        raise forbidden("the sign-in form is out of date: reload the page and try again")


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form body within the body limit: each field once, as UTF-8 text."""
    if media_type(request) != FORM_TYPE:
        raise unsupported_media_type(FORM_TYPE)
    body = await read_body(request)
    try:
        text = body.decode("utf-8")
        fields = parse_qs(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except UnicodeDecodeError:
        raise bad_request("the form is not UTF-8") from None
    except ValueError:
        raise bad_request(f"the form has more than {MAX_FIELDS} fields") from None
    form: dict[str, str] = {}
    for name, values in fields.items():
        if len(values) != 1:
            raise bad_request(f"the form field {name!r} was sent {len(values)} times")
        form[name] = values[0]
    return form


def same_origin(request: Request) -> None:
    """`forbidden` for a form posted from another site (a browser names the page's origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin.split("://", 1)[-1] != host:
        raise forbidden("the form was posted from another site")


async def session_of(request: Request) -> Session | None:
    core = core_of(request)
    return await run_in_threadpool(core.sessions.resolve, request.cookies.get(SESSION_COOKIE))


def to_login() -> Response:
    return RedirectResponse("/ui/login", status_code=303)


def error_page(request: Request, session: Session | None, refused: Refused) -> Response:
    return html(
        request,
        "error.html",
        {"session": session, "refused": refused, "status": status_of(refused)},
        status_of(refused),
    )


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page: needs a live session (else to the sign-in page); a refusal is an error page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        try:
            return await handler(request, session)
        except Refused as refused:
            return error_page(request, session, refused)

    return endpoint


def action(handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """A form post: needs a live session and the session's CSRF token, checked before
    anything else is read or done; a refusal is an error page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return to_login()
        try:
            same_origin(request)
            form = await read_form(request)
            core_of(request).sessions.check_csrf(session, form.get("csrf"))
            return await handler(request, session, form)
        except Refused as refused:
            return error_page(request, session, refused)

    return endpoint


def field(form: dict[str, Any], name: str, limit: int = 200, required: bool = True) -> str:
    """A text field of a form, at most `limit` characters."""
    value = form.get(name, "")
    if required and not value.strip():
        raise bad_request(f"the field {name!r} is required")
    if len(value) > limit:
        raise bad_request(f"the field {name!r} may be at most {limit} characters")
    return str(value)


def version_field(form: dict[str, str], name: str = "version") -> int:
    """A version number field of a form (ASCII digits, at least 1)."""
    number = parse_number(form.get(name, "").strip())
    if number is None or number < 1:
        raise bad_request(f"the field {name!r} must be a version number")
    return number


def document_of(request: Request) -> tuple[str, str]:
    """(service, environment) of a document page's path."""
    return request.path_params["service"], request.path_params["environment"]


def doc_url(service: str, environment: str, suffix: str = "") -> str:
    return f"/ui/doc/{service}/{environment}{suffix}"
