"""The HTTP/1.1 protocol `tskcfg serve` runs: uvicorn's httptools protocol with bounds on connections.

uvicorn's httptools protocol keeps reading a request line and headers for as long as the
client sends them (one header of 50 MiB, or 100,000 small ones, is all held in memory), and
its size option only applies to the h11 protocol; nor does it limit how long a head or a
body may take, so a client that sends a byte now and then holds its connection (and the
part of the body it sent) forever, nor how many connections are open. This one counts the
bytes of each request head and answers 431 once they pass `MAX_HEAD` (then drops what the
client still sends for a bounded time, so that it reads the answer), closes a connection
whose head is not complete `HEAD_SECONDS` after it began, answers 408 and closes one whose
body is not complete `body_seconds` after its head, closes one that queues more than
`MAX_PIPELINE` requests behind an unfinished answer, and, while `max_connections` are open,
makes room for a new connection by closing the one that has waited longest for a request head
(a connection that never sends one only holds its place until somebody needs it), or closes
the new one when every open connection is busy with a request. It also keeps one
keep-alive timer per idle connection rather than one per request, and lets a subclass answer
a request as soon as its head is parsed (`_answer_at_once`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config_service.http.app import BODY_TIMED_OUT
from config_service.http.errors import error_body

# Request line plus headers. Far above what any client of the service sends (a bearer token,
# a short X-Config-Message), far below what would hurt a server holding thousands of connections.
MAX_HEAD = 64 * 1024
# After a 431 the connection is kept reading (and throwing away) what the client still sends,
# for at most this long and this many bytes, so that a client busy sending the rest of its
# head reads the answer instead of having its connection reset under it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024
# From a new connection, or from the first byte of a later request, to the end of its head.
HEAD_SECONDS = 30.0
# Requests queued behind one still being answered (a held long poll, say). Each queued request
# costs about 2 KiB, and one read of tiny pipelined heads would otherwise queue ~14,000 of them.
MAX_PIPELINE = 128
# At most one log line per this many seconds about refused connections, with their count:
# a flood of them must not become a flood of log lines.
REFUSED_LOG_SECONDS = 10.0


class PipelineTooDeep(Exception):
    """More than `MAX_PIPELINE` requests were queued on one connection."""


class Refusals:
    """One server's connections that are awaiting a request head, oldest first, and the
    connections it closed for being over its maximum (refused, or made room for), logged at
    most every `REFUSED_LOG_SECONDS`."""

    def __init__(self) -> None:
        self.awaiting_head: dict[Any, None] = {}  # insertion-ordered: the oldest first
        self.count = 0
        self.evicted = 0
        self.logged_at = float("-inf")

    def log(self, logger: Any, max_connections: int) -> None:
        now = time.monotonic()
        if now - self.logged_at < REFUSED_LOG_SECONDS:
            return
        if self.count:
            logger.warning(
                "refused %d connection(s): %d are open, the most this server takes (--max-connections)",
                self.count,
                max_connections,
            )
        if self.evicted:
            logger.warning(
                "closed %d connection(s) that had sent no complete request, to make room for new "
                "ones: %d are open, the most this server takes (--max-connections)",
                self.evicted,
                max_connections,
            )
        self.count = self.evicted = 0
        self.logged_at = now


@dataclass
class ConnectionBounds:
    """The bounds of one server, shared by all its connections: how long a body may take after
    its head, how many connections may be open, and the connections awaiting a head."""

    body_seconds: float = 30.0
    max_connections: int = 16_384
    refusals: Refusals = field(default_factory=Refusals)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses a request head larger than `MAX_HEAD` bytes with 431,
    closes the connection when a head takes longer than `HEAD_SECONDS`, answers 408 when a
    body takes longer than `bounds.body_seconds` after its head, and closes connections past
    `bounds.max_connections` as soon as they are accepted.

    uvicorn makes each connection's protocol with its own arguments; `bounded_protocol`
    makes the factory that adds one server's `bounds` to them.
    """

    def __init__(self, *arguments: Any, bounds: ConnectionBounds, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.bounds = bounds
        # True from the end of a request's head to the end of its body (or the connection's).
        self._in_body = False
        self._body_timer: asyncio.TimerHandle | None = None
        # True while a request head is awaited or arriving: from the connection's start, and
        # from the first byte of each later request, to the end of its head. Not while a
        # request is being answered (a long poll may be held for minutes), nor between
        # requests (uvicorn's keep-alive timeout covers an idle connection).
        self._in_head = True
        self._head_bytes = 0
        self._head_began = False  # a later request's head began in the chunk being read
        self._heads_begun = 0  # requests begun in the chunk being read
        self._head_timer: asyncio.TimerHandle | None = None
        self._answered_at_once = False  # the current request (`_answer_at_once`)
        self._idle_since: float | None = None  # when the connection last became idle (keep-alive)
        self._linger_left = 0  # bytes still to throw away after a 431 (`_linger`); 0: not lingering

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # `connections` holds this one too: more than the maximum means one too many. Room is
        # made by closing the connection that has waited longest for a request head; with none
        # waiting, this one is closed before a byte is read or a timer set, so a flood of
        # connections costs little either way.
        if len(self.connections) > self.bounds.max_connections and not self._make_room():
            self._in_head = False
            self._refuse_connection()
            return
        self.bounds.refusals.awaiting_head[self] = None
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.bounds.refusals.awaiting_head.pop(self, None)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self._stop_head_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_left:
            self._throw_away(data)
            return
        between = not self._in_head and not self._in_body  # these bytes begin the next request
        if (
            (self._in_head or between)
            and self._head_bytes + len(data) > MAX_HEAD
            and not self._head_ends_in(data)
        ):
            # These bytes (inside a head, or between requests: the start of the next one) would
            # take the head past its limit before it ends: refused before they are parsed, a
            # head that arrives whole in one large read included.
            self._refuse_head()
            return
        self._head_began = False
        self._heads_begun = 0
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_body:
            # The body's rest is still to come: time it. (A body that arrives with its head,
            # as nearly all do, never starts a timer.)
            self._start_body_timer()
        if not self._in_head:
            cycle = self.cycle
            if (cycle is None or cycle.response_complete) and self._idle_since is None and not self.pipeline:
                # Everything asked is answered, yet these bytes began no request (the rest of
                # the body of a request answered without it): their arrival made the connection
                # busy, and no answer will make it idle again, so one byte would hold the
                # connection open forever. The idle time counts from here.
                self._idle_from_now()
            return
        # Part of a head is here and the rest is not: time it. (A head that arrives whole in
        # one read, as nearly all do, never starts a timer.)
        self._start_head_timer()
        if self._head_began:
            if between and self._heads_begun == 1:
                # The chunk began with this head and holds nothing else: all of it counts.
                self._head_bytes = len(data)
                return
            # The head began inside this chunk, after other bytes: we cannot tell how much of
            # the chunk it holds, so start counting it with the next chunk (bounded by one
            # read, which the event loop caps).
            self._head_bytes = 0
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD:
            self._refuse_head()

    # uvicorn arms a keep-alive timer after each answer and cancels it when the next request's
    # bytes arrive: a timer made and dropped per request. Here one timer is armed for an idle
    # connection and, when it fires, either closes the connection (idle for the whole
    # timeout), sets itself for the rest of the timeout (busy meanwhile, idle again since), or
    # lapses (busy now; the next answer arms it again).

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def _idle_from_now(self) -> None:
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_expired
            )

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return
        remaining = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.timeout_keep_alive_task = self.loop.call_later(remaining, self._keep_alive_expired)
            return
        self.timeout_keep_alive_handler()

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timer above.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_from_now()

    def on_message_begin(self) -> None:
        # uvicorn's, but the ASGI scope is made at the end of the head (`_make_scope`), and
        # only for a request that goes to uvicorn: one answered at once needs none.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]
        self._heads_begun += 1
        if not self._in_head:
            self._in_head = True
            self._head_began = True
            self._head_bytes = 0
            self.bounds.refusals.awaiting_head[self] = None

    def on_headers_complete(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINE:
            # Stops the parser; uvicorn then ends the connection (`send_400_response`, which
            # only closes it while an earlier answer is outstanding).
            self.logger.warning("closed a connection that pipelined over %d requests", MAX_PIPELINE)
            raise PipelineTooDeep(MAX_PIPELINE)
        self._in_head = False
        self._head_began = False
        self._head_bytes = 0
        self.bounds.refusals.awaiting_head.pop(self, None)
        self._stop_head_timer()
        self._in_body = True
        self._answered_at_once = self._answer_at_once()
        if not self._answered_at_once:
            if self.scope is None:
                self._make_scope()
            super().on_headers_complete()

    def _make_scope(self) -> None:
        """The ASGI scope of the current request, as uvicorn's `on_message_begin` makes it."""
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def _answer_at_once(self) -> bool:
        """Answer the request whose head was just parsed, before uvicorn makes a request cycle
        for it: True when it is answered (its body, if any, is then ignored). Subclasses do
        (`protocol.py`); here nothing is."""
        return False

    def on_body(self, body: bytes) -> None:
        if not self._answered_at_once:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._stop_body_timer()
        if not self._answered_at_once:
            super().on_message_complete()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.flow.read_paused and self._in_head and not self.transport.is_closing():
            # The head is pipelined behind an unfinished answer, and its rest lies unread in
            # the socket because uvicorn stopped reading: the client is not the slow one.
            # Timed afresh (the answer it waits behind is bounded: a long poll's wait).
            self._start_head_timer()
            return
        if self._in_head and not self.transport.is_closing():
            self.logger.warning("closed a connection whose request head took over %.0f s", HEAD_SECONDS)
            self.transport.close()

    def _start_body_timer(self) -> None:
        if self._body_timer is None:
            self._body_timer = self.loop.call_later(self.bounds.body_seconds, self._body_too_slow)

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        if self.flow.read_paused:
            # uvicorn stopped reading (the application has not taken the body read so far, or
            # the request waits behind an unfinished answer): the client is not the slow one.
            self._start_body_timer()
            return
        self._in_body = False
        cycle = self.cycle
        if cycle is None or cycle.response_started or self._answering_another(cycle):
            # An answer is under way (one that did not wait for the body, or an earlier
            # request's): a 408 now would be read as part of it, so the connection only closes.
            self.logger.warning(
                "closed a connection whose request body took over %.0f s", self.bounds.body_seconds
            )
            self.transport.close()
            return
        body = error_body(
            "request_timeout",
            f"the request body did not arrive within {self.bounds.body_seconds:g} s of its head",
        )
        self.logger.warning(
            "answered 408 to a request whose body took over %.0f s: %s %r",
            self.bounds.body_seconds,
            cycle.scope["method"],
            cycle.scope["path"],
        )
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        # The application, waiting for the rest of the body, is told the client left (and its
        # own answer, if it tries one, goes nowhere); the scope says why.
        scope: Any = cycle.scope
        scope.setdefault("extensions", {})[BODY_TIMED_OUT] = self.bounds.body_seconds
        cycle.response_started = True
        cycle.disconnected = True
        cycle.message_event.set()
        self.transport.close()

    def _answering_another(self, cycle: Any) -> bool:
        """True when the request with the slow body is queued behind one still being answered."""
        return any(queued is cycle for queued, _ in self.pipeline)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request head, if one has and is
        not answering an earlier request: True when room was made."""
        waiting = self.bounds.refusals.awaiting_head
        for oldest in list(waiting):
            del waiting[oldest]
            if oldest.transport.is_closing() or oldest._answering() or oldest.pipeline:
                continue
            oldest._stop_head_timer()
            oldest.transport.close()
            self.bounds.refusals.evicted += 1
            self.bounds.refusals.log(self.logger, self.bounds.max_connections)
            return True
        return False

    def _refuse_connection(self) -> None:
        self.transport.close()
        self.bounds.refusals.count += 1
        self.bounds.refusals.log(self.logger, self.bounds.max_connections)

    def _answering(self) -> bool:
        """True while an earlier request on this connection is still being answered."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def send_400_response(self, msg: str) -> None:
        if self._answering():
            # Bytes that are not HTTP, behind a request still being answered: a 400 now would
            # be read as (or inside) that earlier answer, so the connection is only closed.
            self.transport.close()
            return
        super().send_400_response(msg)

    def _head_ends_in(self, data: bytes) -> bool:
        """Whether the head being read ends within its limit in `data` (which begins inside it,
        or at its start).

        A head ends at its first empty line; one whose end straddles two reads is let through
        to the parser, which then counts it as before."""
        room = MAX_HEAD - self._head_bytes
        if room <= 0:
            return False
        window = data[: room + 4]
        return b"\r\n\r\n" in window or b"\n\n" in window or data[:1] in (b"\r", b"\n")

    def _refuse_head(self) -> None:
        if self._answering():
            # The head is pipelined behind a request still being answered: a 431 now would be
            # read as (or inside) that earlier answer, so the connection is only closed.
            self.logger.warning("closed a connection whose pipelined request head passed %d bytes", MAX_HEAD)
            self.transport.close()
            return
        body = error_body(
            "too_large",
            f"the request line and headers are larger than this server's limit of {MAX_HEAD} bytes",
        )
        self.logger.warning("refused a request head larger than %d bytes", MAX_HEAD)
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"x-request-id: " + secrets.token_hex(8).encode("ascii") + b"\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self._linger()

    def _linger(self) -> None:
        """End the connection once the client has read the answer just written: the answer is
        followed by the end of our side, and what the client still sends is thrown away until
        it closes its side, or `LINGER_SECONDS` or `LINGER_BYTES` pass. Closing at once would
        make the kernel reset a connection with unread bytes, and a client still sending
        would then lose the answer."""
        self._in_head = False
        self.bounds.refusals.awaiting_head.pop(self, None)
        self._stop_head_timer()
        self._stop_body_timer()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._linger_left = LINGER_BYTES
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _throw_away(self, data: bytes) -> None:
        self._linger_left = max(0, self._linger_left - len(data))
        if not self._linger_left:
            self.transport.close()


def bounded_protocol(bounds: ConnectionBounds | None = None) -> Callable[..., BoundedHttpToolsProtocol]:
    """What uvicorn's `http=` takes: makes each connection's protocol with one server's bounds."""
    return partial(BoundedHttpToolsProtocol, bounds=bounds or ConnectionBounds())
