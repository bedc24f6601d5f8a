"""`tskcfg serve`'s HTTP protocol: answers hot config reads itself and parks long polls without a task.

Services read their config far more than anything else, and a long poll mostly waits. Run
through ASGI, every such request costs a task, a stack of coroutines (server, middleware,
handler, hub) and two `send` calls; waking 10,000 parked long polls at once meant 10,000
task steps before the last answer left. Here the protocol runs the one read path
(config_service/http/read.py: `parse`, `decide`, `after_hold`) on each read of a current
config before starting an ASGI task: an answer (or a refusal) is written out at once, and
a long poll is parked in the change hub as a callback on its connection. A read on a
connection with nothing else under way is answered as soon as its head is parsed, before
uvicorn makes a request cycle for it (`_answer_at_once`); the head of each answer up to its
request id is made once per rendered version and shared. A poller sends the same bytes on its
connection again and again: such a repeat is answered from what was decided for it last time,
without parsing it, as long as its token and the version it was answered from are unchanged
(`_Repeat`, `_answer_repeat`). When the
document changes, the hub's publish calls every parked connection, which writes the
shared, already rendered answer; counting and logging them waits for the next turn of the
event loop, after the answers are on their way. A read whose document is not in memory
yet goes to the ASGI app with the request already parsed; everything else (writes, other
routes) goes to the ASGI app as before, with the same metrics and access log.

Event streams (`GET /v1/events`) start in ASGI, which checks the request and replays what
the client missed; then the route hands the live stream to the protocol (`detach`), and
the hub's publish writes each event to the connection directly. One timer pings every
stream every 15 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from config_service.core.refusals import Refused
from config_service.core.rendered import Rendered
from config_service.core.wiring import Core
from config_service.http import events, read
from config_service.http.telemetry import Telemetry
from config_service.http1.bounded import BoundedHttpToolsProtocol, ConnectionBounds
from config_service.hub import ChangeEvent, ChangeHub, Waiter

logger = logging.getLogger("config_service")

ROUTE = "/v1/configs/{service}/{environment}"
EVENTS = "/v1/events"
END_OF_STREAM = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


PING = chunk(events.PING)  # an SSE comment
# The scope extension that carries what `_answer_at_once` parsed to `_take`.
_PARSED = "tskcfg.hot_path"


@lru_cache(maxsize=256)
def event_chunk(event: ChangeEvent, moved: bool = False) -> bytes:
    """The event's frame as one chunk, built once and shared by every stream."""
    return chunk(events.frame(event, moved))


# A stream this protocol took over is written as HTTP/1.1 chunks, each made once for all.
CHUNKED = events.Framing(event=event_chunk, ping=PING)


class _Streams:
    """Every live stream of one server, and the one timer that pings them all."""

    def __init__(self) -> None:
        self.connections: set[HotPathProtocol] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, connection: HotPathProtocol) -> None:
        self.connections.add(connection)
        if self.timer is None:
            self.timer = connection.loop.call_later(events.HEARTBEAT_SECONDS, self.ping)

    def discard(self, connection: HotPathProtocol) -> None:
        self.connections.discard(connection)

    def ping(self) -> None:
        self.timer = None
        for connection in list(self.connections):
            connection._ping()
        if self.connections:
            loop = next(iter(self.connections)).loop
            self.timer = loop.call_later(events.HEARTBEAT_SECONDS, self.ping)


class _Held:
    """A long poll parked on its connection: what it waits for, and what to log when it ends."""

    __slots__ = ("cycle", "hold", "lag_checks", "request_id", "started_at", "waiter")

    def __init__(
        self, cycle: RequestResponseCycle, hold: read.Hold, request_id: bytes, started_at: float
    ) -> None:
        self.cycle = cycle
        self.hold = hold
        self.request_id = request_id
        self.started_at = started_at
        self.waiter: Waiter | None = None
        self.lag_checks = 0  # extra waits while the process caught up with the store


# The longest request kept to be recognised again (a poller's head is a few hundred bytes; a
# longer read, a GET with a body say, is parsed every time rather than held per connection).
MAX_REPEAT_BYTES = 4096


class _Repeat:
    """A read this connection had answered at once, kept to answer its byte-for-byte repeats.

    A service polling its config sends the same bytes on its connection again and again (same
    path, token, `If-None-Match`, instance headers). What was decided for those bytes holds as
    long as the two things it rests on are unchanged: the token's record (`Tokens.recall` gives
    the same principal; a revoked or replaced token gives another, or none) and the version the
    read was answered from (`Versions.cached_for` gives the same object; a push, a rollout step
    or a retire gives another). Then the repeat is answered without being parsed, checked or
    decided again; otherwise it takes the whole path, which keeps the new answer instead.
    """

    __slots__ = ("authorization", "current", "path", "raw", "reply", "request", "request_id")

    def __init__(
        self,
        request: read.ReadRequest,
        authorization: bytes,
        request_id: bytes | None,
        path: str,
        current: Rendered,
        reply: read.Reply,
    ) -> None:
        self.request = request
        self.authorization = authorization  # as sent: what the token book knows it by
        self.request_id = request_id  # the client's own X-Request-ID, kept; None: a new one each time
        self.path = path
        self.current = current
        self.reply = reply
        self.raw: bytes | None = None  # the request's bytes, once one read held it alone


class _Heads:
    """The first bytes of each answer's head, up to its request id, for one server."""

    __slots__ = ("default_headers", "made")

    def __init__(self) -> None:
        self.default_headers: object = None
        # id(reply) -> (reply, head): the reply is held, so its id is not reused meanwhile.
        self.made: dict[int, tuple[read.Reply, bytes]] = {}

    def of(self, reply: read.Reply, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        if default_headers is not self.default_headers or len(self.made) >= MAX_HEADS:
            self.default_headers = default_headers
            self.made = {}
        made = self.made.get(id(reply))
        if made is not None and made[0] is reply:
            return made[1]
        head = b"".join(
            (
                STATUS_LINE[reply.status],
                *(name + b": " + value + b"\r\n" for name, value in default_headers),
                reply.head,
                b"x-request-id: ",
            )
        )
        self.made[id(reply)] = (reply, head)
        return head


# Heads kept at most (a refusal is a new reply each time; renders of the versions read are few).
MAX_HEADS = 1024


@dataclass(eq=False)
class ServerShared:
    """What every connection of one server shares: the app's core, hub and telemetry, the live
    event streams, the answer heads, and the connection bounds."""

    core: Core
    hub: ChangeHub[Rendered]
    telemetry: Telemetry
    bounds: ConnectionBounds
    streams: _Streams = field(default_factory=_Streams)
    # The head of each answer up to its request id (status line, uvicorn's default headers,
    # the reply's own), made once per reply and shared by every connection of this server.
    # uvicorn renews its default headers (date, server) once a second; the heads are then
    # made anew.
    heads: _Heads = field(default_factory=_Heads)


class HotPathProtocol(BoundedHttpToolsProtocol):
    """The bounded httptools protocol, answering hot config reads before they reach ASGI.

    uvicorn makes one per connection; `protocol_for(app)` makes the factory that gives each
    the `ServerShared` of one app.
    """

    def __init__(self, *arguments: Any, shared: ServerShared, **options: Any) -> None:
        super().__init__(*arguments, bounds=shared.bounds, **options)
        self.shared = shared
        self._held: _Held | None = None
        self._stream: events.LiveStream | None = None
        # A hot answer starts the next pipelined request from inside `_start_asgi_task`
        # (its `on_response`); that request waits here for the loop there, rather than
        # recursing once per pipelined request until the stack runs out.
        self._starting = False
        self._next: tuple[RequestResponseCycle, Any] | None = None
        self._stopping = False  # the server asked this connection to finish (`shutdown`)
        # The last read answered at once, for its repeats (`_answer_repeat`); what one read of
        # the socket answered at once, and how many requests began in it.
        self._repeat: _Repeat | None = None
        self._answered: _Repeat | None = None
        self._begun = 0
        self._between = True  # the parser is between requests: none has begun since the last ended

    # -- uvicorn's hooks ---------------------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self._starting:
            self._next = (cycle, app)
            return
        self._starting = True
        try:
            while True:
                self._start(cycle, app)
                following, self._next = self._next, None
                if following is None:
                    return
                cycle, app = following
        finally:
            self._starting = False
            self._next = None

    def _start(self, cycle: RequestResponseCycle, app: Any) -> None:
        # An answer written earlier in this same read armed uvicorn's keep-alive timer (the
        # connection looked idle): this request is not idle time, whatever answers it.
        self._unset_keepalive_if_required()
        # A request is about to be handed to ASGI: now (its head is complete, and any answer
        # before it on this connection is finished) the hot path may take it instead. Not
        # while the client is slow to read, so that pipelined requests wait for it as in ASGI.
        if app is self.app and not self.flow.write_paused:
            try:
                if self._take(cycle):
                    return
            except Exception:
                logger.exception("the hot path failed; the request goes to the application")
                if cycle.response_started:
                    self.transport.close()
                    return
            if cycle.scope["path"] == EVENTS and cycle.scope["method"] == "GET":
                # Only a GET's answer is the chunked stream the protocol writes events into.
                scope: Any = cycle.scope
                scope.setdefault("extensions", {})[events.DETACH] = self._detach_stream
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        if self._stream is not None:
            return  # an event stream's client has nothing more to say; ignore it
        repeat = self._repeat
        if repeat is not None and data == repeat.raw and self._between and self._answer_repeat(repeat):
            return
        self._begun = 0
        self._answered = None
        between = self._between
        super().data_received(data)
        answered = self._answered
        if (
            answered is not None
            and between
            and self._begun == 1
            and self._between
            and len(data) <= MAX_REPEAT_BYTES
        ):
            # These bytes held one whole request from its first byte to its last, answered at
            # once: the same bytes again, read between requests, are the same request.
            answered.raw = data

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun += 1
        self._between = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._between = True

    def connection_lost(self, exc: Exception | None) -> None:
        held, self._held = self._held, None
        if held is not None and held.waiter is not None:
            held.waiter.cancel()
            self._record(
                held.cycle.scope["path"], held.request_id, read.CLIENT_GONE, held.started_at, soon=False
            )
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.subscription.close()
            self.shared.streams.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # The server is stopping: a parked long poll is answered now (304, or the newer
        # version) and an event stream ended, each closing its connection, instead of
        # holding the shutdown until they end.
        self._stopping = True
        held = self._held
        if held is not None:
            held.cycle.keep_alive = False
            self._wake(None)
        streaming = self._stream is not None
        # Then every other parked long poll, those the application holds too (a document not
        # yet in memory, one that does not exist yet): their time is up now. (Closing the
        # subscriptions ends the event streams too.)
        self.shared.hub.stop()
        if held is not None:
            return
        if streaming:
            self._end_stream()
            return
        super().shutdown()

    # -- the hot path ------------------------------------------------------------

    def _answer_at_once(self) -> bool:
        """Answer a read of a current config from memory as soon as its head is parsed, before
        uvicorn makes a request cycle (and its timers and events) for it.

        Only a plain GET of a config path on a connection with nothing else under way is
        taken here; a read that must wait (a long poll) or go to the store is left to uvicorn
        with what was parsed kept in its scope, and `_take` goes on from there.
        """
        cycle = self.cycle
        url = self.url
        if (
            not url.startswith(read.PREFIX_BYTES)
            or (cycle is not None and not cycle.response_complete)
            or self.pipeline
            or self.flow.write_paused
            or self._stopping
            or self.limit_concurrency is not None
            or self.root_path
            or b"%" in url
            or b"#" in url
            or not url.isascii()
        ):
            return False
        parser = self.parser
        if parser.get_method() != b"GET" or parser.should_upgrade():
            return False
        raw_path, _, query = url.partition(b"?")
        path = raw_path.decode("ascii")
        document = read.document_of(path)
        if document is None:
            return False
        self._unset_keepalive_if_required()
        started_at = time.perf_counter()
        headers = self.headers
        telemetry = self.shared.telemetry
        own_id = telemetry.client_request_id(headers)
        request_id = own_id or telemetry.new_request_id()
        core = self.shared.core
        current = None
        try:
            request = read.parse_head(core, headers, query, *document)
            current = core.versions.cached_for(*document, request.cohort)
            decision = None if current is None else read.decide(request, current)
        except Refused as refused:
            decision = read.refusal_reply(refused)
            current = None
        except Exception:
            logger.exception("the hot path failed; the request goes to the application")
            return False
        if not isinstance(decision, read.Reply):
            # Held, or not in memory yet: uvicorn makes the cycle, and `_take` goes on.
            self._make_scope()
            scope: Any = self.scope
            scope.setdefault("extensions", {})[_PARSED] = (request, request_id, started_at)
            return False
        try:
            keep_alive = parser.should_keep_alive() and parser.get_http_version() != "1.0"
            if keep_alive and current is not None:  # (None for a refusal)
                authorization = request.authorization
                if authorization is not None:
                    # Answered from `current` for this token: its repeats may be answered alike.
                    self._answered = self._repeat = _Repeat(
                        request, authorization, own_id, path, current, decision
                    )
            self._write(decision, request_id, keep_alive)
            self._record(path, request_id, decision.status, started_at, soon=False)
            # As uvicorn does once an answer is complete: count it, arm the keep-alive timer.
            self.on_response_complete()
        except Exception:
            logger.exception("the hot path failed to answer; its connection is closed")
            self.transport.close()
        return True

    def _answer_repeat(self, repeat: _Repeat) -> bool:
        """Answer `repeat` again, without parsing its bytes, when what it was decided on holds:
        True when answered; False to read the bytes the whole way (`_Repeat`)."""
        started_at = time.perf_counter()
        cycle = self.cycle
        if (
            (cycle is not None and not cycle.response_complete)
            or self.pipeline
            or self.flow.write_paused
            or self._stopping
            or self.transport.is_closing()
        ):
            return False
        core = self.shared.core
        request = repeat.request
        if (
            core.tokens.recall(repeat.authorization) is not request.principal
            or core.versions.cached_for(request.service, request.environment, request.cohort)
            is not repeat.current
        ):
            return False
        # As uvicorn's `data_received` and the parser's callbacks would leave the connection:
        # busy (no keep-alive timeout) until the answer is written.
        self._unset_keepalive_if_required()
        request_id = repeat.request_id or self.shared.telemetry.new_request_id()
        try:
            self._write(repeat.reply, request_id, True)
            self._record(repeat.path, request_id, repeat.reply.status, started_at, soon=False)
            self.on_response_complete()
        except Exception:
            logger.exception("the hot path failed to answer; its connection is closed")
            self.transport.close()
        return True

    def _take(self, cycle: RequestResponseCycle) -> bool:
        """Answer or park a read of a current config if it can be done from memory; False to
        leave the request to ASGI (with the read already parsed, when it is one)."""
        scope: Any = cycle.scope
        if scope["method"] != "GET":
            return False
        document = read.document_of(scope["path"])
        if document is None:
            return False
        core = self.shared.core
        parsed = scope.get("extensions", {}).pop(_PARSED, None)
        try:
            if parsed is not None:
                request, request_id, started_at = parsed
            else:
                started_at = time.perf_counter()
                request_id = self.shared.telemetry.request_id(scope["headers"])
                request = read.parse(core, scope, *document)
            # Only now look at the document: out of scope, an existing document and a missing
            # one take the same steps to their 403, so the time taken says nothing of which.
            current = core.versions.cached_for(*document, request.cohort)
            if current is None:
                # It must be read from the store first, in a worker thread: ASGI does that.
                scope.setdefault("extensions", {})[read.PARSED] = request
                return False
            decision = read.decide(request, current)
            if isinstance(decision, read.Behind):
                # It names a version this process has not seen: ASGI reads the store first.
                scope.setdefault("extensions", {})[read.PARSED] = request
                return False
        except Refused as refused:
            decision = read.refusal_reply(refused)
        if isinstance(decision, read.Reply):
            self._reply(cycle, decision, request_id, started_at, soon=False)
            return True
        hub = self.shared.hub
        service, environment = document
        rendered = decision.rendered
        assert rendered is not None  # held from memory only when the document is there
        stable = core.versions.cached(service, environment)
        if stable is not None:
            # Teach the hub the version we know of (after a restart it knows none): the
            # stable one, which a rollout's candidate is not.
            hub.publish(service, environment, stable.version, stable)
        held = _Held(cycle, decision, request_id, started_at)
        self._held = held
        bucket = request.bucket
        changed = hub.changed(service, environment, rendered.version, bucket)
        if changed is not None:
            self._wake(changed)
        elif self._stopping:
            # It waited in the pipeline while the server began to stop: answered at once, as
            # `shutdown` answers the polls it finds parked.
            cycle.keep_alive = False
            self._wake(None)
        else:
            # Owned by the token: revoking it ends the wait at once, answered 401 (`_wake`).
            held.waiter = hub.park(
                service,
                environment,
                request.wait,
                self._wake,
                request.principal.token_id,
                known=rendered.version,
                bucket=bucket,
            )
        return True

    def _wake(self, result: tuple[int, Any] | None) -> None:
        """The hub's call: a newer version (`(version, payload)`), or None when the time is up."""
        held, self._held = self._held, None
        if held is None:
            return
        if held.waiter is not None:
            held.waiter.cancel()  # nothing if the hub already ended it
        if (
            result is None
            and held.lag_checks < read.LAG_CHECKS
            and self.shared.core.lagging
            and not self.shared.hub.stopping
            and not self.transport.is_closing()
            and self.shared.core.tokens.is_live(held.hold.request.principal)
        ):
            # Not "no change" before this process has caught up with the store.
            held.lag_checks += 1
            self._held = held
            request = held.hold.request
            held.waiter = self.shared.hub.park(
                request.service, request.environment, read.LAG_CHECK_SECONDS, self._wake,
                request.principal.token_id, known=held.hold.known, bucket=request.bucket,
            )
            return
        if self.transport.is_closing():
            self._record(
                held.cycle.scope["path"], held.request_id, read.CLIENT_GONE, held.started_at, soon=True
            )
            return
        try:
            newer = None
            if result is not None:
                newer = read.newer_version(self.shared.core, held.hold, result[1])
            elif self.shared.hub.stopping:
                held.cycle.keep_alive = False  # answered because the server is stopping
            try:
                reply = read.after_hold(self.shared.core, held.hold, newer)
            except Refused as refused:  # the token was revoked while the request waited
                reply = read.refusal_reply(refused)
            self._reply(held.cycle, reply, held.request_id, held.started_at, soon=True)
        except Exception:
            logger.exception("a held long poll failed to take its answer; its connection is closed")
            self.transport.close()

    def _reply(
        self,
        cycle: RequestResponseCycle,
        reply: read.Reply,
        request_id: bytes,
        started_at: float,
        *,
        soon: bool,
    ) -> None:
        """Write the whole answer and finish the request, as uvicorn's own `send` would."""
        self._write(reply, request_id, cycle.keep_alive)
        cycle.response_started = True
        cycle.response_complete = True
        self._record(cycle.scope["path"], request_id, reply.status, started_at, soon=soon)
        # uvicorn's own bookkeeping: the keep-alive timer, or the next pipelined request.
        cycle.on_response()

    def _write(self, reply: read.Reply, request_id: bytes, keep_alive: bool) -> None:
        """Write the whole answer in one system call (closing the connection after it unless
        `keep_alive`)."""
        head = self.shared.heads.of(reply, self.server_state.default_headers)
        transport = self.transport
        if keep_alive:
            transport.write(b"".join((head, request_id, b"\r\n\r\n", reply.body)))
        else:
            transport.write(b"".join((head, request_id, b"\r\nconnection: close\r\n\r\n", reply.body)))
            transport.close()

    def _record(self, path: str, request_id: bytes, status: int, started_at: float, *, soon: bool) -> None:
        seconds = time.perf_counter() - started_at
        record = self.shared.telemetry.finish_soon if soon else self.shared.telemetry.finish
        record(request_id, "GET", path, ROUTE, status, seconds)

    # -- event streams -----------------------------------------------------------

    def _detach_stream(self, stream: events.LiveStream) -> bool:
        """Take over the live event stream of the current request; False if it cannot.

        Called by the `/v1/events` route once its head and replay are sent. From here the hub
        hands each event to `_stream_event`, and uvicorn's task for the request ends.
        """
        cycle = self.cycle
        if self._stopping:
            # The server is stopping: the route ends the stream (a closed subscription ends
            # its loop) rather than streaming until the graceful shutdown gives up on it.
            stream.subscription.close()
            return False
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or cycle.disconnected
            or not cycle.keep_alive  # HTTP/1.0, or Connection: close
            or self.pipeline
            or self.transport.is_closing()
        ):
            return False
        # uvicorn takes the response as finished (its task may end without a final chunk),
        # and it neither arms a keep-alive timer nor starts a pipelined request: the stream
        # owns the connection until it closes.
        cycle.response_complete = True
        stream.framing = CHUNKED  # from here on the chunks are written here, not by uvicorn
        self._stream = stream
        self.shared.streams.add(self)
        # However the subscription ends (the token revoked, the client too slow), so does the stream.
        stream.subscription.redirect(self._stream_event, self._end_stream)
        return True

    def _stream_event(self, event: ChangeEvent) -> bool:
        """The hub's call with an event this stream accepts; False drops the subscription."""
        stream = self._stream
        if stream is None or self.transport.is_closing():
            return False
        data = stream.event(event)
        if data is None:
            return True  # already sent during the replay
        if self.flow.write_paused:
            # The client reads too slowly: end the stream; it resumes with Last-Event-ID.
            self._end_stream()
            return False
        self.transport.write(data)
        return True

    def _ping(self) -> None:
        stream = self._stream
        if stream is None:
            return
        data = stream.ping()
        if data is None:
            self._end_stream()  # the token was revoked
        elif not self.flow.write_paused:
            self.transport.write(data)

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        stream.subscription.close()
        self.shared.streams.discard(self)
        if not self.transport.is_closing():
            self.transport.write(END_OF_STREAM)
            self.transport.close()


def protocol_for(app: Any) -> Callable[..., HotPathProtocol]:
    """What uvicorn's `http=` takes for `app` (an app made by `create_app`): makes each
    connection's protocol with the app's core, hub and telemetry and the server's bounds."""
    state = app.state
    settings = state.settings
    bounds = ConnectionBounds(
        body_seconds=settings.body_timeout, max_connections=settings.max_connections
    )
    shared = ServerShared(core=state.core, hub=state.hub, telemetry=state.telemetry, bounds=bounds)
    return partial(HotPathProtocol, shared=shared)
