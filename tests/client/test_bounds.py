"""Answers that are too large, too slow or malformed are failed answers: the client falls back.

Each case is a real HTTP server on 127.0.0.1 that misbehaves in one way, bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clienttest import SERVICE

from tskcfg import AsyncConfigClient, Config, ConfigClient, ServerUnavailable, load_config

# How long any misbehaving answer may go on before the server gives up by itself.
SERVER_LIMIT = 20.0


class MisbehavingServer:
    """Reads each request's head, then lets `answer(connection, head)` write whatever it likes."""

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
        self.answer = answer
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.sent = 0  # body bytes the server managed to write before the client hung up
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(SERVER_LIMIT)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    chunk = connection.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                self.answer(connection, head)
            except OSError:
                pass  # the client hung up: that is what most of these tests want

    def write(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


def head(length: int | None = None) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


Answer = Callable[["MisbehavingServer", socket.socket, bytes], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], MisbehavingServer]]:
    servers: list[MisbehavingServer] = []

    def start(answer: Answer) -> MisbehavingServer:
        server = MisbehavingServer(lambda connection, request: answer(server, connection, request))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def start_sync(url: str, environments: Path, tmp_path: Path, **kwargs: object) -> Config:
    client = ConfigClient(
        SERVICE,
        "development",
        server=url,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
        **kwargs,  # type: ignore[arg-type]
    )
    try:
        return client.start()
    finally:
        client.stop()


def start_async(url: str, environments: Path, tmp_path: Path, **kwargs: object) -> Config:
    async def scenario() -> Config:
        client = AsyncConfigClient(
            SERVICE,
            "development",
            server=url,
            cache_dir=tmp_path / "cache",
            environments_dir=environments,
            **kwargs,  # type: ignore[arg-type]
        )
        try:
            return await client.start()
        finally:
            await client.stop()

    return asyncio.run(scenario())


STARTS = {"sync": start_sync, "async": start_async}


def endless_body(server: MisbehavingServer, connection: socket.socket, request: bytes) -> None:
    """A body without Content-Length that never ends (600 MB in the report that found it)."""
    server.write(connection, head())
    server.write(connection, b'{"version": 1, "hash": "x", "config": {"padding": "')
    block = b"x" * 65536
    deadline = time.monotonic() + SERVER_LIMIT
    while server.sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
        server.write(connection, block)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_answer_over_the_size_limit_is_a_failed_answer_read_no_further(
    serve: Callable[[Answer], MisbehavingServer], environments: Path, tmp_path: Path, kind: str
) -> None:
    server = serve(endless_body)
    started = time.monotonic()
    config = STARTS[kind](server.url, environments, tmp_path, max_response_bytes=1024 * 1024)
    assert config.source == "file"
    assert time.monotonic() - started < 10
    # The client stopped reading at its limit; socket buffers let the server write a little more.
    assert server.sent < 24 * 1024 * 1024, server.sent


def test_the_default_size_limit_is_8_mib(
    serve: Callable[[Answer], MisbehavingServer], environments: Path, tmp_path: Path
) -> None:
    server = serve(endless_body)
    assert start_sync(server.url, environments, tmp_path).source == "file"
    assert 8 * 1024 * 1024 <= server.sent < 40 * 1024 * 1024, server.sent


def test_an_announced_length_over_the_limit_is_refused_before_reading(
    serve: Callable[[Answer], MisbehavingServer], environments: Path, tmp_path: Path
) -> None:
    def announced(server: MisbehavingServer, connection: socket.socket, request: bytes) -> None:
        server.write(connection, head(600 * 1024 * 1024))
        time.sleep(SERVER_LIMIT)  # the body never comes

    server = serve(announced)
    started = time.monotonic()
    assert start_sync(server.url, environments, tmp_path).source == "file"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_answer_sent_a_byte_a_second_ends_at_the_overall_deadline(
    serve: Callable[[Answer], MisbehavingServer], environments: Path, tmp_path: Path, kind: str
) -> None:
    def trickle(server: MisbehavingServer, connection: socket.socket, request: bytes) -> None:
        server.write(connection, head(10_000))
        deadline = time.monotonic() + SERVER_LIMIT
        while time.monotonic() < deadline:
            server.write(connection, b" ")
            time.sleep(0.25)  # each read gets a byte well within any per-read timeout

    server = serve(trickle)
    started = time.monotonic()
    config = STARTS[kind](server.url, environments, tmp_path, timeout=2.0)
    elapsed = time.monotonic() - started
    assert config.source == "file"
    assert elapsed < 5, elapsed


def test_a_head_sent_a_byte_a_second_ends_at_the_overall_deadline(
    serve: Callable[[Answer], MisbehavingServer], environments: Path, tmp_path: Path
) -> None:
    def trickle(server: MisbehavingServer, connection: socket.socket, request: bytes) -> None:
        deadline = time.monotonic() + SERVER_LIMIT
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 10_000:
            if time.monotonic() > deadline:
                break
            server.write(connection, bytes([byte]))
            time.sleep(0.25)

    server = serve(trickle)
    started = time.monotonic()
    assert start_sync(server.url, environments, tmp_path, timeout=2.0).source == "file"
    assert time.monotonic() - started < 5


def answer_with(body: bytes) -> Answer:
    def answer(server: MisbehavingServer, connection: socket.socket, request: bytes) -> None:
        server.write(connection, head(len(body)) + body)

    return answer


MALFORMED = {
    "deeply nested JSON": b'{"version": 1, "hash": "x", "config": {"a": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    "a 5,000-digit integer": b'{"version": 1, "hash": "x", "config": {"a": '
    + b"7" * 5000
    + b"}}",
    "a 5,000-digit version": b'{"version": ' + b"7" * 5000 + b', "hash": "x", "config": {}}',
    "not JSON": b"<html>gateway</html>",
    "not UTF-8": b'{"version": 1, "hash": "\xff", "config": {}}',
    "nesting the JSON parser takes but TSK refuses": b'{"version": 1, "hash": "x", "config": {"a": '
    + b'{"b": ' * 200
    + b"1"
    + b"}" * 200
    + b"}}",
}


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_answer_falls_back_like_any_bad_answer(
    serve: Callable[[Answer], MisbehavingServer],
    environments: Path,
    tmp_path: Path,
    case: str,
    kind: str,
) -> None:
    server = serve(answer_with(MALFORMED[case]))
    config = STARTS[kind](server.url, environments, tmp_path)
    assert config.source == "file" and config.get("database.pool_size") == 2


def test_a_malformed_answer_without_a_fallback_is_server_unavailable(
    serve: Callable[[Answer], MisbehavingServer], tmp_path: Path
) -> None:
    server = serve(answer_with(MALFORMED["deeply nested JSON"]))
    with pytest.raises(ServerUnavailable, match="not a config document"):
        load_config(
            SERVICE, "development", server=server.url, cache_dir=tmp_path, environments_dir=tmp_path
        )


def test_a_malformed_schema_answer_falls_back(
    serve: Callable[[Answer], MisbehavingServer], environments: Path, tmp_path: Path
) -> None:
    from config_service import tsk

    data = tsk.loads((environments / "development" / f"{SERVICE}.tsk").read_text())
    document = json.dumps(
        {"version": 3, "hash": tsk.document_hash(data), "config": tsk.to_wire(data)}
    ).encode()
    schema = b'{"service": "user-service", "version": 1, "schema": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    def answer(server: MisbehavingServer, connection: socket.socket, request: bytes) -> None:
        body = schema if request.startswith(b"GET /v1/schemas/") else document
        server.write(connection, head(len(body)) + body)

    server = serve(answer)
    config = start_sync(server.url, environments, tmp_path)
    assert config.source == "file"


def test_bounds_are_checked_when_the_client_is_made() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="max_response_bytes"):
            ConfigClient(SERVICE, max_response_bytes=bad)  # type: ignore[arg-type]
    for bad_timeout in (0, -2.0, float("nan"), True):
        with pytest.raises(ValueError, match="timeout"):
            ConfigClient(SERVICE, timeout=bad_timeout)
