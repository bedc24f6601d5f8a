"""`GET /v1/events`: Server-Sent Events, one per new version, resumable with Last-Event-ID.

Written as a plain ASGI app rather than a Starlette streaming response: an idle stream is
then one coroutine waiting on its subscription plus one small task that notices the client
leaving. Under `tskcfg serve` it is lighter still: once the refusals are checked and the
missed events replayed, the stream is handed to the HTTP protocol (`DETACH`, offered in
the scope's extensions by config_service/http1/protocol.py), which writes each event
straight from the change hub's publish, with no task at all. Either way an event's bytes
are made here, once per event (`frame`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import lru_cache

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from config_service.core.documents import Documents
from config_service.core.refusals import bad_request
from config_service.core.rendered import Rendered
from config_service.http.requests import authenticate, core_of, parse_number
from config_service.hub import ChangeEvent, ChangeHub, Subscription, SubscriptionClosed

HEARTBEAT_SECONDS = 15.0
REPLAY_PAGE = 500
# The scope extension a server offers to take over a stream once it is live:
# `detach(subscription, sent, still_allowed) -> bool` (see config_service/http1/protocol.py).
DETACH = "tskcfg.detach_stream"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


PING = b": ping\n\n"


@lru_cache(maxsize=256)
def frame(event: ChangeEvent) -> bytes:
    """The event framed for Server-Sent Events, built once and shared by every stream."""
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    kind = "retired" if event.retired else "version"
    return f"id: {event.sequence}\nevent: {kind}\ndata: {data}\n\n".encode()


def _last_event_id(request: Request) -> int | None:
    text = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if text is None or text == "":
        return None
    number = parse_number(text.strip())
    if number is None:
        raise bad_request(f"Last-Event-ID must be an event id (a number), not {text!r}")
    return number


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _stream(scope: Scope, receive: Receive, send: Send) -> None:
    """The event stream; refusals (401, 403, 400, 404, 422) are raised before it starts."""
    request = Request(scope, receive)
    core = core_of(request)
    principal = authenticate(request)
    service = request.query_params.get("service") or None
    environment = request.query_params.get("environment") or None
    core.access.check_event_filter(principal, service, environment)
    last_id = _last_event_id(request)
    if scope["method"] == "HEAD":
        # The stream's head and nothing else: a HEAD answer carries no body, so there is no
        # stream to hold open.
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b""})
        return
    pipeline = core.settings.pipeline
    tokens = core.tokens
    hub: ChangeHub[Rendered] = request.app.state.hub
    del request

    def accepts(event: ChangeEvent) -> bool:
        return (
            (service is None or event.service == service)
            and (environment is None or event.environment == environment)
            and event.environment in pipeline
            and principal.covers(event.service, event.environment)
            and tokens.is_live(principal)
        )

    # Subscribe before replaying, so nothing published during the replay is lost.
    # Owned by the token: revoking it closes the subscription, which ends the stream.
    subscription = hub.subscribe(accepts, principal.token_id)
    listener = asyncio.ensure_future(_disconnected(receive))
    detached = False

    def client_gone(_: asyncio.Future[None]) -> None:
        if not detached:  # once detached, the protocol sees the client leave
            subscription.close()

    listener.add_done_callback(client_gone)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        sent = 0
        if last_id is not None:
            sent = await _replay(send, core.documents, subscription, accepts, last_id)
        detach = scope.get("extensions", {}).get(DETACH)
        if detach is not None and not subscription.closed:
            detached = detach(subscription, sent, lambda: tokens.is_live(principal))
            if detached:
                return  # the protocol streams from here on; this task ends
        while True:
            try:
                event = await subscription.next(timeout=HEARTBEAT_SECONDS)
            except SubscriptionClosed:
                # Closed: the client left, or it fell too far behind and should resume
                # with Last-Event-ID. Either way the stream ends here.
                break
            if not tokens.is_live(principal):
                break  # revoked (the revocation closes the subscription too)
            if event is None:
                chunk = PING
            elif event.sequence > sent:
                sent = event.sequence
                chunk = frame(event)
            else:
                continue
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not listener.done():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if not detached:
            subscription.close()
        listener.cancel()


async def _replay(
    send: Send,
    documents: Documents,
    subscription: Subscription,
    accepts: Callable[[ChangeEvent], bool],
    last_id: int,
) -> int:
    """Send what was stored after `last_id` that the stream accepts; the last sequence read."""
    # An id past the store's last event (one from a restored or fresh store) means the client
    # has seen everything there is; without this, live events would be skipped until the
    # sequence caught up with it.
    sent = min(last_id, await run_in_threadpool(documents.last_sequence))
    while not subscription.closed:
        records = await run_in_threadpool(documents.versions_after, sent, REPLAY_PAGE)
        for record in records:
            replayed = ChangeEvent(
                record.sequence, record.service, record.environment, record.version, record.hash,
                record.retired,
            )
            sent = record.sequence
            if accepts(replayed):
                await send({"type": "http.response.body", "body": frame(replayed), "more_body": True})
        if len(records) < REPLAY_PAGE:
            break
    return sent


class EventStream:
    """The ASGI app of `GET /v1/events` (a class, so the router passes it scope, receive, send)."""

    __name__ = "events"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _stream(scope, receive, send)


events = EventStream()
