"""`GET /v1/events`: Server-Sent Events, one per new version or rollout change, resumable with
Last-Event-ID (the replay: config_service/core/replay.py).

Written as a plain ASGI app rather than a Starlette streaming response: an idle stream is
then one coroutine waiting on its subscription plus one small task that notices the client
leaving. Under `tskcfg serve` it is lighter still: once the refusals are checked and the
missed events replayed, the stream is handed to the HTTP protocol (`DETACH`, offered in
the scope's extensions by config_service/http1/protocol.py), which writes each event
straight from the change hub's publish, with no task at all. Either way one `LiveStream`
decides what the stream writes (each event once and in order, a ping when quiet, the end
once the token is revoked), and an event's bytes are made once per event for every stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from config_service.core.access import Principal
from config_service.core.refusals import bad_request
from config_service.core.rendered import Rendered
from config_service.core.replay import Replay, Replayed, ReplayedRollout
from config_service.http.requests import authenticate, core_of, parse_number
from config_service.hub import ChangeEvent, ChangeHub, Subscription, SubscriptionClosed

HEARTBEAT_SECONDS = 15.0
REPLAY_PAGE = 500
# The scope extension a server offers to take over a stream once it is live:
# `detach(stream: LiveStream) -> bool` (see config_service/http1/protocol.py).
DETACH = "tskcfg.detach_stream"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


PING = b": ping\n\n"


@lru_cache(maxsize=256)
def frame(event: ChangeEvent, moved: bool = False) -> bytes:
    """The event framed for Server-Sent Events, built once and shared by every stream.

    A rollout's change is `event: rollout` with the rollout object; for a stream it moves
    (`moved`, see `ChangeEvent.moves`) the version it now reads comes first, as an
    `event: version` with the same id.
    """
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    kind = "retired" if event.retired else "version"
    version = f"id: {event.sequence}\nevent: {kind}\ndata: {data}\n\n"
    if event.rollout is None:
        return version.encode()
    rollout = f"id: {event.sequence}\nevent: rollout\ndata: {event.rollout}\n\n"
    return ((version if moved else "") + rollout).encode()


def cohort(request: Request) -> bytes | None:
    """What rollouts bucket the stream's instance by: `X-Config-Cohort`, else `X-Instance-ID`."""
    headers = request.headers
    value = headers.get("x-config-cohort") or headers.get("x-instance-id")
    return value.encode("latin-1") if value else None


@dataclass(frozen=True)
class Framing:
    """The bytes of a stream's events and pings as its writer puts them on the connection."""

    # (event, moved): see `frame`.
    event: Callable[[ChangeEvent, bool], bytes]
    ping: bytes


# What an ASGI server frames further (HTTP/1.1 chunks) itself.
SSE = Framing(event=frame, ping=PING)


class LiveStream:
    """One live event stream's writer, whoever moves its bytes: the ASGI loop below, awaiting
    its subscription, or the HTTP protocol after it took the stream over, called from the
    hub's publish. Each event is written once, in order (what the replay sent is skipped); a
    quiet stream gets a ping, and the stream ends at the first ping after its token is revoked.
    """

    __slots__ = ("subscription", "still_allowed", "framing", "sent")

    def __init__(
        self,
        subscription: Subscription,
        still_allowed: Callable[[], bool],
        framing: Framing = SSE,
        sent: int = 0,
    ) -> None:
        self.subscription = subscription
        self.still_allowed = still_allowed
        self.framing = framing
        self.sent = sent  # the sequence of the last event written (or passed over)

    def event(self, event: ChangeEvent) -> bytes | None:
        """The bytes of `event`, or None when it was written already."""
        if event.sequence <= self.sent:
            return None
        self.sent = event.sequence
        moved = event.rollout is not None and event.moves(self.subscription.cohort)
        return self.framing.event(event, moved)

    def passed(self, sequence: int) -> None:
        """An event this stream does not accept was read: resume after it."""
        if sequence > self.sent:
            self.sent = sequence

    def ping(self) -> bytes | None:
        """The bytes of a ping, or None when the token was revoked: the stream ends."""
        return self.framing.ping if self.still_allowed() else None


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


async def stream(
    scope: Scope, receive: Receive, send: Send, principal: Principal | None = None
) -> None:
    """The event stream; refusals (401, 403, 400, 404, 422) are raised before it starts.

    The caller is the bearer token of the request, or `principal` when the caller is known
    another way (the console's session, config_service/http/console).
    """
    request = Request(scope, receive)
    core = core_of(request)
    principal = principal if principal is not None else authenticate(request)
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
    stream_cohort = cohort(request)
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
    stream = LiveStream(hub.subscribe(accepts, principal.token_id, stream_cohort), lambda: tokens.is_live(principal))
    subscription = stream.subscription
    listener = asyncio.ensure_future(_disconnected(receive))
    detached = False

    def client_gone(_: asyncio.Future[None]) -> None:
        if not detached:  # once detached, the protocol sees the client leave
            subscription.close()

    listener.add_done_callback(client_gone)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        if last_id is not None:
            await _replay(send, core.replay, stream, accepts, last_id)
        detach = scope.get("extensions", {}).get(DETACH)
        if detach is not None and not subscription.closed:
            detached = detach(stream)
            if detached:
                return  # the protocol streams from here on; this task ends
        while True:
            try:
                event = await subscription.next(timeout=HEARTBEAT_SECONDS)
            except SubscriptionClosed:
                # Closed: the client left, the token was revoked, or the client fell too far
                # behind and should resume with Last-Event-ID. Either way the stream ends here.
                break
            chunk = stream.ping() if event is None else stream.event(event)
            if chunk is None:
                if event is None:
                    break  # revoked
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
    replay: Replay,
    stream: LiveStream,
    accepts: Callable[[ChangeEvent], bool],
    last_id: int,
) -> None:
    """Send what was stored after `last_id` that the stream accepts: versions and rollout
    changes in sequence order (config_service/core/replay.py). What is stored after the
    store's last sequence read here reaches the stream live (it subscribed before)."""
    bound = await run_in_threadpool(replay.last_sequence)
    # An id past the store's last event (one from a restored or fresh store) means the client
    # has seen everything there is; without this, live events would be skipped until the
    # sequence caught up with it.
    stream.passed(min(last_id, bound))
    while not stream.subscription.closed and stream.sent < bound:
        page = await run_in_threadpool(replay.page, stream.sent, bound, REPLAY_PAGE)
        for item in page.events:
            replayed = _event(item)
            if not accepts(replayed):
                stream.passed(replayed.sequence)
                continue
            chunk = stream.event(replayed)
            if chunk is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        stream.passed(page.end)


def _event(item: Replayed) -> ChangeEvent:
    """A replayed version or rollout as the live stream would have announced it."""
    if isinstance(item, ReplayedRollout):
        rollout = item.rollout
        return ChangeEvent(
            rollout.sequence, rollout.service, rollout.environment, item.version, item.hash,
            rollout=json.dumps(item.public, ensure_ascii=False, separators=(",", ":")),
            moved=item.moved,
        )
    return ChangeEvent(
        item.sequence, item.service, item.environment, item.version, item.hash, item.retired
    )


class EventStream:
    """The ASGI app of `GET /v1/events` (a class, so the router passes it scope, receive, send)."""

    __name__ = "events"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await stream(scope, receive, send)


events = EventStream()
