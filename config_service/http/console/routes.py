"""The console's routes, mounted at /ui/ in the server's one route table (config_service/http/app.py)."""

from __future__ import annotations

from starlette.routing import Route, Router
from starlette.types import ASGIApp

from config_service.http.console import lifecycle, pages
from config_service.http.console.web import SecurityHeaders

DOC = "/doc/{service}/{environment}"

ROUTES: tuple[tuple[str, str, object], ...] = (
    ("GET", "/", pages.matrix),
    ("GET", "/login", pages.login_form),
    ("POST", "/login", pages.login),
    ("POST", "/logout", pages.logout),
    ("GET", "/events", pages.ConsoleEvents()),
    ("GET", "/static/{name}", pages.static),
    ("GET", DOC, pages.document),
    ("GET", DOC + "/diff", pages.diff_versions),
    ("GET", DOC + "/edit", pages.edit_form),
    ("POST", DOC + "/edit", pages.push),
    ("GET", DOC + "/promote", pages.promote_preview),
    ("POST", DOC + "/promote", pages.promote),
    ("GET", DOC + "/rollback", pages.rollback_preview),
    ("POST", DOC + "/rollback", pages.rollback),
    ("GET", DOC + "/retire", lifecycle.retire_preview),
    ("POST", DOC + "/retire", lifecycle.retire),
    ("GET", DOC + "/rollout", lifecycle.rollout_form),
    ("POST", DOC + "/rollout", lifecycle.start_rollout),
    ("POST", DOC + "/rollout/{change}", lifecycle.change_rollout),
    ("GET", DOC + "/sync", lifecycle.take_file_preview),
    ("POST", DOC + "/sync", lifecycle.take_file),
    ("GET", "/diff/{service}", pages.diff_environments),
    ("GET", "/audit", pages.audit),
    ("GET", "/tokens", pages.tokens),
    ("POST", "/tokens", pages.create_token),
    ("POST", "/tokens/{token_id}/revoke", pages.revoke_token),
)


def console_app() -> ASGIApp:
    """The console's ASGI app (every answer with the console's security headers)."""
    router = Router(
        routes=[Route(path, handler, methods=[method]) for method, path, handler in ROUTES]  # type: ignore[arg-type]
    )
    return SecurityHeaders(router)


def route_names() -> dict[object, str]:
    """Handler -> route template, for the access log and metrics."""
    return {handler: "/ui" + path for _, path, handler in ROUTES}
