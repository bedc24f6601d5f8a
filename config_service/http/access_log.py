"""The access log: one JSON object per request, written in batches so logging costs little per request.

Going through `logging` for every request (a record, a formatter, a write and a flush each)
halved the server's throughput on the hot `GET`; here a request appends its fields to a
list, and the event loop turns the list into lines and writes them at most every 100 ms (and
at shutdown).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from functools import lru_cache
from typing import TextIO

FLUSH_SECONDS = 0.1
MAX_PENDING = 4096
MAX_FIELDS = 4096


# (when, request id, method, path, route template, status, seconds)
_Entry = tuple[float, bytes, str, str, str, int, float]


class AccessLog:
    """Collects answered requests on the event loop thread and writes their lines to `stream` in batches."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._pending: list[_Entry] = []
        self._scheduled = False
        self._second = -1
        self._prefix = ""
        self._millisecond = -1
        self._at = ""
        # (method, path, route) -> their part of a line: a busy server logs the same few paths.
        self._fields: dict[tuple[str, str, str], str] = {}

    def add(self, request_id: bytes, method: str, path: str, route: str, status: int, seconds: float) -> None:
        """Log one answered request; its line is built with the rest of its batch, at `flush`."""
        self._pending.append((time.time(), request_id, method, path, route, status, seconds))
        if len(self._pending) >= MAX_PENDING:
            self.flush()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._scheduled = True
            loop.call_later(FLUSH_SECONDS, self.flush)

    def _line(self, entry: _Entry) -> str:
        now, request_id, method, path, route, status, seconds = entry
        millisecond = int(now * 1000)
        if millisecond != self._millisecond:
            # Requests answered within the same millisecond share its text.
            self._millisecond = millisecond
            second, thousandths = divmod(millisecond, 1000)
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._at = f"{self._prefix}.{thousandths:03d}Z"
        fields = self._fields.get((method, path, route))
        if fields is None:
            if len(self._fields) >= MAX_FIELDS:
                self._fields.clear()
            # The route template needs no escaping (it is ours); method and path only when
            # they hold something JSON must escape.
            fields = f'"method": {_string(method)}, "path": {_string(path)}, "route": "{route}"'
            self._fields[(method, path, route)] = fields
        # The request id needs no escaping either: it is a checked pattern.
        at, identifier, milliseconds = self._at, request_id.decode("ascii"), _milliseconds(seconds)
        return f'{{"at": "{at}", "request_id": "{identifier}", {fields}, "status": {status}, "ms": {milliseconds}}}\n'

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        entries, self._pending = self._pending, []
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write("".join(map(self._line, entries)))
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must not break serving


def _string(text: str) -> str:
    """`text` as a JSON string literal."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text, ensure_ascii=False)


@lru_cache(maxsize=100_000)
def _hundredths(hundredths: int) -> str:
    whole, fraction = divmod(hundredths, 100)
    return f"{whole}.{fraction:02d}"


def _milliseconds(seconds: float) -> str:
    """`seconds` in milliseconds with two decimals (the texts of the common ones are kept)."""
    return _hundredths(round(seconds * 100_000))
