"""The hot read: a `GET` of a current config, plain, conditional or long-polled, answered in ASGI.

Most requests a config server sees are services asking for their document, asking whether
it changed (`If-None-Match`), or waiting for it to change (`?wait=N`). This path answers
exactly those, when the document is already rendered in memory and the token may read it,
without building Starlette request and response objects (which also keeps an idle long
poll small). Anything else (no or bad token, out of scope, a document not yet in memory,
an If-None-Match that is not the current ETag, other parameters) returns 0, and the
regular handler in `configs.py` answers with the same rules and errors.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send

from config_service.hub import ChangeHub
from config_service.server import ConfigServer, Rendered

PREFIX = "/v1/configs/"
# Logged and counted when a long-polling client leaves before its answer; nothing is sent.
CLIENT_GONE = 499


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
) -> Rendered | None:
    """Wait until the document's version differs from `known`, for at most `wait` seconds.

    Returns the new version, or None when the time is up; raises ClientGone when the client
    leaves first (the wait is dropped at once, not kept until it times out).
    """
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
    gauge = server.metrics.waiters.labels(kind="long_poll")
    gauge.inc()
    try:
        result = await hub.wait_for_change(service, environment, known, wait)
    except asyncio.CancelledError:
        if not gone or handler is None:
            raise
        handler.uncancel()
        raise ClientGone from None
    finally:
        gauge.dec()
        listener.remove_done_callback(client_gone)
        listener.cancel()
    if result is None:
        return None
    _, payload = result
    if isinstance(payload, Rendered):
        return payload
    return server.current(service, environment)


def _wait_parameter(query: bytes, maximum: float) -> float | None:
    """Seconds from a query string that is exactly `wait=N`; None for anything else."""
    if not query.startswith(b"wait=") or b"&" in query:
        return None
    try:
        value = float(query[5:])
    except ValueError:
        return None
    if not value >= 0:  # negative or NaN: the regular handler says why it is wrong
        return None
    return min(value, maximum)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer_current_config(
    server: ConfigServer,
    hub: ChangeHub[Rendered],
    scope: Scope,
    receive: Receive,
    send: Send,
    request_id: bytes,
) -> int:
    """Answer the request if this path can; returns the status sent, or 0 when it did not."""
    if scope["method"] != "GET":
        return 0
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return 0
    wait = 0.0
    query: bytes = scope["query_string"]
    if query:
        parsed = _wait_parameter(query, server.settings.max_wait)
        if parsed is None:
            return 0
        wait = parsed
    service, separator, environment = path[len(PREFIX) :].partition("/")
    if not separator or "/" in environment:
        return 0
    authorization = if_none_match = accept = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"if-none-match":
            if_none_match = value
        elif name == b"accept":
            accept = value
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return 0
    principal = server.tokens.authenticate(authorization[7:].strip().decode("latin-1"))
    if principal is None or not principal.may("reader", service, environment):
        return 0
    # Only now look at the document: out of scope, an existing document and a missing one take
    # the same steps to their 403, so the time taken says nothing about which it is.
    rendered = server.cached(service, environment)
    if rendered is None:
        return 0
    request_header = (b"x-request-id", request_id)
    if if_none_match is not None:
        if if_none_match.strip() != rendered.etag_bytes:
            return 0
        if wait > 0:
            try:
                newer = await hold(
                    server, hub, service, environment, rendered.version, rendered, wait, receive
                )
            except ClientGone:
                return CLIENT_GONE
            if not server.tokens.is_live(principal):
                # Revoked while held: the regular handler answers 401.
                return 0
            if newer is not None:
                rendered = newer
            else:
                latest = server.cached(service, environment) or rendered
                await _send(send, 304, [(b"etag", latest.etag_bytes), request_header], b"")
                return 304
        else:
            await _send(send, 304, [(b"etag", rendered.etag_bytes), request_header], b"")
            return 304
    headers: Any
    if accept is not None and b"text/x-tsk" in accept:
        headers, body = rendered.source_headers, rendered.source_body
    else:
        headers, body = rendered.json_headers, rendered.json_body
    await _send(send, 200, [*headers, request_header], body)
    return 200
