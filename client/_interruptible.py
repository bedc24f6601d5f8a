"""The sync client's sockets: each request held to its overall deadline, and every open
connection shut down by `stop()`, so a long poll the server holds ends at once."""

from __future__ import annotations

import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes end at the deadline of the request using it.

    httpx times each read on its own, so an answer sent a byte a second never times out;
    here every read waits at most until the deadline that `InterruptibleBackend.deadline`
    set for the thread sending the request.
    """

    def __init__(self, stream: httpcore.NetworkStream, deadlines: threading.local) -> None:
        self._stream = stream
        self._deadlines = deadlines

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float | None:
        deadline: float | None = getattr(self._deadlines, "at", None)
        if deadline is None:
            return timeout
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error("the answer did not arrive in full within the client's timeout")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname, timeout)
        return DeadlineStream(stream, self._deadlines)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class InterruptibleBackend(httpcore.SyncBackend):
    """Remembers the sockets it opens, so `stop()` can end a long poll the server is holding,
    and holds each request to its overall deadline (`DeadlineStream`).

    Closing a socket does not wake a thread blocked reading it; shutting it down does. Once
    interrupted it opens no more connections: a long poll sent just after `stop()` looked
    would otherwise be held by the server for a minute.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._interrupted = False
        self._streams: weakref.WeakSet[httpcore.NetworkStream] = weakref.WeakSet()
        self._deadlines = threading.local()

    @contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        """Requests this thread sends meanwhile end at `at` (time.monotonic())."""
        self._deadlines.at = at
        try:
            yield
        finally:
            self._deadlines.at = None

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        if self._interrupted:
            raise httpcore.ConnectError("the client is stopping")
        stream: httpcore.NetworkStream = DeadlineStream(
            super().connect_tcp(*args, **kwargs), self._deadlines
        )
        with self._lock:
            self._streams.add(stream)
            interrupted = self._interrupted
        if interrupted:  # stop() came while this one was connecting
            self._shut(stream)
        return stream

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            streams = list(self._streams)
        for stream in streams:
            self._shut(stream)

    @staticmethod
    def _shut(stream: httpcore.NetworkStream) -> None:
        raw = stream.get_extra_info("socket")
        if isinstance(raw, socket.socket):
            try:
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def interruptible(transport: httpx.BaseTransport) -> InterruptibleBackend | None:
    """Fit an httpx.HTTPTransport (or subclass) with sockets `stop()` can shut down."""
    pool = getattr(transport, "_pool", None) if isinstance(transport, httpx.HTTPTransport) else None
    if pool is None or not hasattr(pool, "_network_backend"):
        return None  # another transport: stop() then waits for a long poll to end (at most 5 s)
    backend = InterruptibleBackend()
    pool._network_backend = backend
    return backend
