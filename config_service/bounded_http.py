"""The HTTP/1.1 protocol `tskcfg serve` runs: uvicorn's httptools protocol with a bound on the request head.

uvicorn's httptools protocol keeps reading a request line and headers for as long as the
client sends them (one header of 50 MiB, or 100,000 small ones, is all held in memory), and
its size option only applies to the h11 protocol. This one counts the bytes of each request
head and answers 431 once they pass `MAX_HEAD`, then closes the connection.
"""

from __future__ import annotations

import secrets
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from config_service.errors import error_body

# Request line plus headers. Far above what any client of the service sends (a bearer token,
# a short X-Config-Message), far below what would hurt a server holding thousands of connections.
MAX_HEAD = 64 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses a request head larger than `MAX_HEAD` bytes with 431."""

    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self._in_head = True  # the next bytes read belong to a request head
        self._head_bytes = 0
        self._head_completed = False

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        self._head_completed = False
        super().data_received(data)
        if not counting or not self._in_head or self.transport.is_closing():
            return
        if self._head_completed:
            # A head ended in this chunk and the next one began in it: we cannot tell how much of
            # the chunk the new head holds, so start counting it with the next chunk (bounded by
            # one read, which the event loop caps).
            self._head_bytes = 0
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_completed = True
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def _refuse_head(self) -> None:
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
        self.transport.close()
