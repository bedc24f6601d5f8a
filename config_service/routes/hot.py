"""The hot read: a `GET` of a current config, plain, conditional or long-polled.

Most requests a config server sees are services asking for their document, asking whether
it changed (`If-None-Match`), or waiting for it to change (`?wait=N`). `decide` looks at
such a request, synchronously and without building Starlette request or response objects,
and says how to answer it: a `Reply` now, or a `Hold` until the document changes. Two
callers act on it: `answer_current_config` in ASGI (any server), and `tskcfg serve`'s HTTP
protocol (`config_service/hot_protocol.py`), which parks a held connection in the change
hub with no task at all and writes every answer from inside the hub's publish.

Anything else (no or bad token, out of scope, a document not yet in memory, an
If-None-Match that is not the current ETag, other parameters) is None, and the regular
handler in `configs.py` answers with the same rules and errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from config_service.auth import Principal
from config_service.hub import ChangeHub
from config_service.server import ConfigServer, Rendered

from ._http import parse_seconds

PREFIX = "/v1/configs/"
# Logged and counted when a long-polling client leaves before its answer; nothing is sent.
CLIENT_GONE = 499


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer now: 200 with the rendered document (JSON, or the TSK source), or 304 with its ETag."""

    status: int
    rendered: Rendered
    source: bool = False

    def headers(self) -> Any:
        if self.status == 304:
            return [(b"etag", self.rendered.etag_bytes)]
        return self.rendered.source_headers if self.source else self.rendered.json_headers

    def head(self) -> bytes:
        """`headers()` as HTTP/1.1 header lines."""
        if self.status == 304:
            return b"etag: " + self.rendered.etag_bytes + b"\r\n"
        return self.rendered.source_head if self.source else self.rendered.json_head

    def body(self) -> bytes:
        if self.status == 304:
            return b""
        return self.rendered.source_body if self.source else self.rendered.json_body


@dataclass(frozen=True, slots=True)
class Hold:
    """Wait up to `wait` seconds for a version newer than `rendered`, then answer (`after_hold`)."""

    service: str
    environment: str
    rendered: Rendered
    wait: float
    principal: Principal
    source: bool


def _wait_parameter(query: bytes, maximum: float) -> float | None:
    """Seconds from a query string that is exactly `wait=N`; None for anything else (the
    regular handler then reads it, and says what is wrong with it)."""
    if not query.startswith(b"wait=") or b"&" in query:
        return None
    value = parse_seconds(query[5:].decode("latin-1"))
    return None if value is None else min(value, maximum)


def decide(server: ConfigServer, scope: Scope) -> Reply | Hold | None:
    """How to answer this request on the hot path; None when the regular handler must."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    wait = 0.0
    query: bytes = scope["query_string"]
    if query:
        parsed = _wait_parameter(query, server.settings.max_wait)
        if parsed is None:
            return None
        wait = parsed
    service, separator, environment = path[len(PREFIX) :].partition("/")
    if not separator or "/" in environment:
        return None
    # A repeated header counts once, by its first value, as Starlette's `headers.get` reads it
    # in the regular handler (the last one would let a second Authorization decide the scope).
    authorization = if_none_match = accept = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"if-none-match":
            if if_none_match is None:
                if_none_match = value
        elif name == b"accept":
            if accept is None:
                accept = value
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return None
    principal = server.tokens.authenticate(authorization[7:].strip().decode("latin-1"))
    if principal is None or not principal.may("reader", service, environment):
        return None
    # Only now look at the document: out of scope, an existing document and a missing one take
    # the same steps to their 403, so the time taken says nothing about which it is.
    rendered = server.cached(service, environment)
    if rendered is None:
        return None
    source = accept is not None and b"text/x-tsk" in accept
    if if_none_match is None:
        return Reply(200, rendered, source)
    if if_none_match.strip() != rendered.etag_bytes:
        return None
    if wait > 0:
        return Hold(service, environment, rendered, wait, principal, source)
    return Reply(304, rendered)


def after_hold(server: ConfigServer, hold: Hold, newer: Rendered | None) -> Reply | None:
    """The answer once a hold ends: the newer version, or 304 when the time ran out.

    None when the token was revoked while the request waited: the regular handler answers 401.
    """
    if not server.tokens.is_live(hold.principal):
        return None
    if newer is not None:
        return Reply(200, newer, hold.source)
    latest = server.cached(hold.service, hold.environment) or hold.rendered
    if latest.version != hold.rendered.version:
        # Committed just before the time ran out, its wake-up not yet here: the client's
        # version is stale, so it gets the new one (a 304 must not name a version it lacks).
        return Reply(200, latest, hold.source)
    return Reply(304, latest)


def newer_version(server: ConfigServer, service: str, environment: str, payload: Any) -> Rendered | None:
    """The rendered version a hub wake-up carries (or the server's current one if it carries none)."""
    if isinstance(payload, Rendered):
        return payload
    return server.current(service, environment)


# -- ASGI ----------------------------------------------------------------------


class ClientGone(Exception):
    """The client disconnected while its long poll was held."""


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (a GET has no body, so only that can arrive)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def hold(
    server: ConfigServer,
    hub: ChangeHub[Rendered],
    service: str,
    environment: str,
    known: int,
    current: Rendered | None,
    wait: float,
    receive: Receive,
    principal: Principal | None = None,
) -> Rendered | None:
    """Wait until the document's version differs from `known`, for at most `wait` seconds.

    Returns the new version, or None when the time is up or `principal`'s token is revoked;
    raises ClientGone when the client leaves first (the wait is dropped at once, not kept
    until it times out).
    """
    owner = None
    if principal is not None:
        # Revoked before the wait began, or (the hub's `end_for`) while it lasts.
        if not server.tokens.is_live(principal):
            return None
        owner = principal.token_id
    if current is not None:
        # Teach the hub the version we know of (after a restart it knows none).
        hub.publish(service, environment, current.version, current)
    handler = asyncio.current_task()
    listener = asyncio.ensure_future(_disconnected(receive))
    gone = False

    def client_gone(task: asyncio.Future[None]) -> None:
        nonlocal gone
        if not task.cancelled() and handler is not None:
            gone = True
            handler.cancel()

    listener.add_done_callback(client_gone)
    try:
        result = await hub.wait_for_change(service, environment, known, wait, owner)
    except asyncio.CancelledError:
        if not gone or handler is None:
            raise
        handler.uncancel()
        raise ClientGone from None
    finally:
        listener.remove_done_callback(client_gone)
        listener.cancel()
    if result is None:
        return None
    return newer_version(server, service, environment, result[1])


async def _send(send: Send, reply: Reply, request_id: bytes) -> None:
    headers = [*reply.headers(), (b"x-request-id", request_id)]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body()})


async def answer_current_config(
    server: ConfigServer,
    hub: ChangeHub[Rendered],
    scope: Scope,
    receive: Receive,
    send: Send,
    request_id: bytes,
) -> int:
    """Answer the request if this path can; returns the status sent, or 0 when it did not."""
    decision = decide(server, scope)
    if decision is None:
        return 0
    if isinstance(decision, Hold):
        try:
            newer = await hold(
                server,
                hub,
                decision.service,
                decision.environment,
                decision.rendered.version,
                decision.rendered,
                decision.wait,
                receive,
                decision.principal,
            )
        except ClientGone:
            return CLIENT_GONE
        reply = after_hold(server, decision, newer)
        if reply is None:
            return 0
    else:
        reply = decision
    await _send(send, reply, request_id)
    return reply.status
