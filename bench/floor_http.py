"""The bare protocol floor for `bench/serve.py`: uvloop + httptools answering one GET.

It answers every request with the exact bytes `tskcfg serve` answers a hot GET with (the same
head fields and body, read from a file), or with its 304 when `If-None-Match` names the ETag,
after the one check a config read cannot skip: that an `Authorization` header is there. It has
no routing, no token table, no access log and no metrics, so the CPU it spends per request is
the least any Python server on this event loop and parser can spend: the floor that
`tskcfg serve`'s cost per hot GET is measured against, side by side in one run.

Run: python bench/floor_http.py PORT ANSWER_200 ANSWER_304 ETAG   (listens on 127.0.0.1)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httptools
import uvloop


class FloorProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer from prebuilt bytes, keep the connection."""

    def __init__(self, ok: bytes, not_modified: bytes, etag: bytes) -> None:
        self.ok = ok
        self.not_modified = not_modified
        self.etag = etag
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.authorized = False
        self.matches = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.authorized = False
        self.matches = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"authorization":
            self.authorized = value.startswith(b"Bearer ")
        elif lowered == b"if-none-match":
            self.matches = value == self.etag

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if not self.authorized:
            self.transport.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
        else:
            self.transport.write(self.not_modified if self.matches else self.ok)


def main() -> None:
    port = int(sys.argv[1])
    ok, not_modified = Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
    etag = sys.argv[4].encode()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: FloorProtocol(ok, not_modified, etag), "127.0.0.1", port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
