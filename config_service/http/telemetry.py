"""What the server records of every request it answers: its id, the request metrics and the access log.

Both paths that answer requests share one `Telemetry`: the ASGI middleware in `http/app.py`
and the HTTP protocol in `http1/protocol.py`, so a request is counted and logged
the same way whichever of them answered it.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections.abc import Iterable

from config_service.http.access_log import AccessLog
from config_service.http.metrics import Metrics

# A client's own X-Request-ID is kept when it is this simple; anything else gets a new one.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class Telemetry:
    """Request ids, request counters and latency histograms, and the access log of one server."""

    def __init__(self, metrics: Metrics, access_log: AccessLog | None) -> None:
        self.metrics = metrics
        self.access_log = access_log
        # Request ids must be unique, not secret: a random prefix per process and a counter
        # (reading the system's random source per request was measurable on the hot path).
        self._id_prefix = secrets.token_hex(4).encode("ascii")
        self._id_counter = itertools.count(1)
        self._later: list[tuple[bytes, str, str, str, int, float]] = []

    def request_id(self, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The client's `X-Request-ID` when it is a plain token, else a new id."""
        return self.client_request_id(headers) or self.new_request_id()

    @staticmethod
    def client_request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
        """The client's `X-Request-ID` when it sent one that is a plain token, else None."""
        for name, value in headers:
            if name == b"x-request-id":
                return value if _REQUEST_ID.fullmatch(value) else None
        return None

    def new_request_id(self) -> bytes:
        """A new request id: this process's prefix and a counter."""
        return b"%s%08x" % (self._id_prefix, next(self._id_counter))

    def finish(
        self, request_id: bytes, method: str, path: str, route: str, status: int, seconds: float
    ) -> None:
        """Count and log one answered request (`seconds`: from its head to its answer)."""
        self.metrics.requests.count(route, method, status, seconds)
        if self.access_log is not None:
            self.access_log.add(request_id, method, path, route, status, seconds)

    def finish_soon(
        self, request_id: bytes, method: str, path: str, route: str, status: int, seconds: float
    ) -> None:
        """`finish`, on the event loop's next turn.

        A publish answers thousands of parked long polls in one callback; their answers reach
        the sockets only when that callback returns, so counting and logging them waits until
        then rather than delaying every answer.
        """
        if not self._later:
            asyncio.get_running_loop().call_soon(self._finish_later)
        self._later.append((request_id, method, path, route, status, seconds))

    def _finish_later(self) -> None:
        later, self._later = self._later, []
        for entry in later:
            self.finish(*entry)
