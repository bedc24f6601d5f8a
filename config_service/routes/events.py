"""Handler of `GET /v1/events`: Server-Sent Events, one per new version, resumable with Last-Event-ID."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from config_service.errors import bad_request
from config_service.hub import ChangeEvent, EventFilter, Subscription, SubscriptionClosed
from config_service.server import ConfigServer

from ._http import authenticate, server_of

HEARTBEAT_SECONDS = 15.0
REPLAY_PAGE = 500


def _last_event_id(request: Request) -> int | None:
    text = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if text is None or text == "":
        return None
    if not text.strip().isdigit() or len(text.strip()) > 18:
        raise bad_request(f"Last-Event-ID must be an event id (a number), not {text!r}")
    return int(text.strip())


async def events(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service = request.query_params.get("service") or None
    environment = request.query_params.get("environment") or None
    if service is not None:
        server.check_names(service)
    if environment is not None:
        server.check_names("x", environment)
    last_id = _last_event_id(request)
    pipeline = server.settings.pipeline

    def accepts(event: ChangeEvent) -> bool:
        return (
            (service is None or event.service == service)
            and (environment is None or event.environment == environment)
            and event.environment in pipeline
            and principal.covers(event.service, event.environment)
        )

    hub = request.app.state.hub
    # Subscribe before replaying, so nothing published during the replay is lost.
    subscription = hub.subscribe(accepts)
    stream = _stream(server, subscription, accepts, last_id)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    server: ConfigServer,
    subscription: Subscription,
    accepts: EventFilter,
    last_id: int | None,
) -> AsyncIterator[bytes]:
    gauge = server.metrics.waiters.labels(kind="events")
    gauge.inc()
    try:
        yield b"retry: 2000\n\n"
        sent = last_id if last_id is not None else 0
        if last_id is not None:
            while True:
                records = await run_in_threadpool(server.store.versions_after, sent, REPLAY_PAGE)
                for record in records:
                    replayed = ChangeEvent(
                        record.sequence, record.service, record.environment, record.version, record.hash
                    )
                    sent = record.sequence
                    if accepts(replayed):
                        yield replayed.sse_bytes
                if len(records) < REPLAY_PAGE:
                    break
        while True:
            try:
                event = await subscription.next(timeout=HEARTBEAT_SECONDS)
            except SubscriptionClosed:
                return
            if event is None:
                yield b": ping\n\n"
            elif event.sequence > sent:
                sent = event.sequence
                yield event.sse_bytes
    finally:
        gauge.dec()
        subscription.close()
