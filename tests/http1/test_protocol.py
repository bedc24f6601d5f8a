"""The HTTP protocol `tskcfg serve` runs (`config_service/http1/protocol.py`), driven byte by byte.

Each test runs the real app (real SQLite store in a temporary folder, its lifespan started)
on a real event loop, and feeds raw HTTP/1.1 to the protocol `tskcfg serve` uses, over a
recording transport instead of a socket. That makes the paths a socket cannot show on
demand (a client that stops reading, a shutdown with requests held, pipelined requests,
a ping after 15 s) exact and fast. `tests/http/test_document_lifecycle.py` covers the same behaviour against a
real `tskcfg serve` process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httptools
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from config_service.core.access import Principal
from config_service.core.wiring import Core
from config_service.http import events
from config_service.http.app import create_app
from config_service.http.events import frame
from config_service.http1 import bounded as bounded_http
from config_service.http1 import internals
from config_service.http1 import protocol as hot_protocol
from config_service.http1.protocol import HotPathProtocol, protocol_for
from config_service.hub import ChangeEvent
from config_service.settings import Settings

SERVICE, ENVIRONMENT = "user-service", "staging"
PATH = f"/v1/configs/{SERVICE}/{ENVIRONMENT}"


class RecordingTransport:
    """What the protocol needs of a transport, keeping every byte written."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.writes = 0

    def write(self, data: bytes) -> None:
        assert not self.closed, "wrote to a closed transport"
        self.data += data
        self.writes += 1

    def writelines(self, parts: Any) -> None:
        assert not self.closed, "wrote to a closed transport"
        for part in parts:
            self.data += part
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8005), "peername": ("127.0.0.1", 40000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def parse_responses(data: bytes) -> list[Response]:
    """Every complete response in `data` (content-length bodies, as the hot path writes)."""
    responses = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        responses.append(Response(status, headers, rest[:length]))
        data = rest[length:]
    return responses


class Connection:
    """One client connection to the protocol."""

    def __init__(self, protocol: HotPathProtocol, transport: RecordingTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def responses(self) -> list[Response]:
        return parse_responses(bytes(self.transport.data))

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Response]:
        await until(lambda: len(self.responses()) >= count, timeout)
        return self.responses()

    def leave(self) -> None:
        self.transport.closed = True
        self.protocol.connection_lost(None)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.005)


class Harness:
    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.server: Core = app.state.core
        self.hub = app.state.hub
        self.token = token
        self.config = Config(app, http=protocol_for(app), lifespan="off", log_level="warning")
        self.config.load()
        self.state = ServerState()
        # What uvicorn's server sets, and renews once a second.
        self.state.default_headers = [(b"date", b"Thu, 26 Nov 2026 09:00:00 GMT"), (b"server", b"uvicorn")]
        self.protocol_class = self.config.http_protocol_class

    @property
    def admin(self) -> Principal:
        principal = self.server.tokens.authenticate(self.token)
        assert principal is not None
        return principal

    def connect(self) -> Connection:
        transport = RecordingTransport()
        protocol = self.protocol_class(
            config=self.config, server_state=self.state, app_state={}, _loop=asyncio.get_running_loop()
        )
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return Connection(protocol, transport)

    async def push(self, n: int) -> int:
        rendered, _ = await self.server.documents.push_async(self.admin, SERVICE, ENVIRONMENT, f"n: {n}\n")
        return rendered.version

    def request(
        self, path: str = PATH, headers: dict[str, str] | None = None, *, token: str | None = None,
        version: str = "1.1",
    ) -> bytes:
        lines = [f"GET {path} HTTP/{version}", "Host: test", f"Authorization: Bearer {token or self.token}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def long_poll(self, known: int, wait: float = 30, **options: Any) -> bytes:
        return self.request(f"{PATH}?wait={wait}", {"If-None-Match": f'"{known}"'}, **options)

    def counted(self, status: int) -> float:
        text = self.app.state.metrics.exposition().decode()
        wanted = f'method="GET",route="/v1/configs/{{service}}/{{environment}}",status="{status}"'
        for line in text.splitlines():
            if line.startswith("tskcfg_http_requests_total{") and wanted in line:
                return float(line.split()[-1])
        return 0.0


@asynccontextmanager
async def running(root: Path) -> AsyncIterator[Harness]:
    settings = Settings(
        data_dir=root / "data", environments_dir=root / "none", schemas_dir=root / "none",
        sync=False, access_log=False, open_services=True,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = settings.admin_token_path.read_text().strip()
        harness = Harness(app, token)
        await harness.push(1)
        yield harness


def run(tmp_path: Path, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running(tmp_path) as harness:
            await asyncio.wait_for(scenario(harness), 20)

    asyncio.run(main())


def test_plain_and_conditional_reads_are_answered_without_an_asgi_task(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.request(headers={"X-Request-ID": "mine-1"}))
        connection.send(harness.request(headers={"If-None-Match": '"1"', "X-Request-ID": "bad id!"}))
        connection.send(harness.request(headers={"Accept": "text/x-tsk"}))
        plain, unchanged, source = connection.responses()
        assert not harness.state.tasks  # all three answered in the protocol
        assert plain.status == 200 and plain.json()["config"] == {"n": 1}
        assert plain.headers["etag"] == '"1"' and plain.headers["x-request-id"] == "mine-1"
        assert plain.headers["content-type"] == "application/json"
        assert "date" in plain.headers and "server" in plain.headers  # uvicorn's own headers
        assert unchanged.status == 304 and unchanged.body == b"" and unchanged.headers["etag"] == '"1"'
        assert unchanged.headers["x-request-id"] not in ("", "bad id!")
        assert source.status == 200 and source.body == b"n: 1\n"
        assert source.headers["content-type"] == "text/x-tsk; charset=utf-8"
        assert not connection.transport.closed
        assert harness.counted(200) == 2 and harness.counted(304) == 1

    run(tmp_path, scenario)


def test_requests_the_hot_path_does_not_take_go_to_asgi_with_the_same_rules(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.request(token="wrong"))
        (refused,) = await connection.wait_for(1)
        assert refused.status == 401 and refused.json()["error"] == "unauthorized"
        connection.send(harness.request(f"{PATH}?wait=soon", {"If-None-Match": '"1"'}))
        _, bad = await connection.wait_for(2)
        assert bad.status == 400 and "wait" in bad.json()["message"]

    run(tmp_path, scenario)


def test_a_long_poll_is_parked_without_a_task_and_answered_from_the_publish(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connections = [harness.connect() for _ in range(20)]
        for connection in connections:
            connection.send(harness.long_poll(1))
        assert harness.hub.waiter_count == 20
        assert not harness.state.tasks
        assert all(connection.transport.data == b"" for connection in connections)
        await harness.push(2)
        for connection in connections:
            (answer,) = await connection.wait_for(1)
            assert answer.status == 200 and answer.json()["version"] == 2
            assert answer.headers["etag"] == '"2"'
            assert connection.transport.writes == 1  # head and shared body in one write
        assert harness.hub.waiter_count == 0
        await until(lambda: harness.counted(200) == 20)
        # The connection is kept alive for the next poll.
        connections[0].send(harness.long_poll(2, wait=0.2))
        _, timed_out = await connections[0].wait_for(2)
        assert timed_out.status == 304 and timed_out.headers["etag"] == '"2"'

    run(tmp_path, scenario)


def test_a_long_poll_outlives_the_request_head_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The head timeout (30 s in service) bounds a request head, not the answer: clients hold
    # long polls for 60 s, and event streams for hours. A slow head after an answer is still cut.
    monkeypatch.setattr(bounded_http, "HEAD_SECONDS", 0.1)

    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1, wait=0.5))
        stream = await open_stream(harness)
        await asyncio.sleep(0.3)
        assert not connection.transport.closed and not stream.transport.closed
        (answer,) = await connection.wait_for(1)
        assert answer.status == 304
        connection.send(b"GET / HTTP/1.1\r\nHost: te")  # and then nothing
        await until(lambda: connection.transport.closed, timeout=2)

    run(tmp_path, scenario)


def test_a_poll_whose_time_runs_out_after_a_commit_gets_the_new_version_not_a_304(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(harness: Harness) -> None:
        # The commit's wake-up has not reached the hub when the wait ends (it is dropped here):
        # a 304 would name version 2, which the client does not have.
        publish = harness.hub.publish

        def late_publish(service: str, environment: str, version: int, *more: Any, **options: Any) -> bool:
            if version >= 2 or environment == "production":
                return False
            return publish(service, environment, version, *more, **options)

        monkeypatch.setattr(harness.hub, "publish", late_publish)
        connection = harness.connect()
        connection.send(harness.long_poll(1, wait=0.3))
        # The same through the regular handler: a document that does not exist yet.
        unborn = harness.connect()
        unborn_path = f"/v1/configs/{SERVICE}/production"
        unborn.send(harness.request(f"{unborn_path}?wait=0.3", {"If-None-Match": '"0"'}))
        await harness.push(2)
        await harness.server.documents.push_async(harness.admin, SERVICE, "production", "n: 1\n")
        (answer,) = await connection.wait_for(1)
        assert answer.status == 200 and answer.json()["version"] == 2
        assert answer.headers["etag"] == '"2"'
        (first,) = await unborn.wait_for(1)
        assert first.status == 200 and first.json()["version"] == 1

    run(tmp_path, scenario)


def test_a_stale_etag_is_answered_at_once(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        await harness.push(2)
        connection = harness.connect()
        connection.send(harness.long_poll(1))
        (answer,) = await connection.wait_for(1)
        assert answer.status == 200 and answer.json()["version"] == 2
        assert harness.hub.waiter_count == 0

    run(tmp_path, scenario)


def test_a_pipelined_request_waits_for_the_held_long_poll_before_it(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1) + harness.request(headers={"X-Request-ID": "second"}))
        await asyncio.sleep(0.1)
        assert connection.transport.data == b""  # the plain GET is not answered out of order
        await harness.push(2)
        first, second = await connection.wait_for(2)
        assert first.status == 200 and first.json()["version"] == 2
        assert second.status == 200 and second.headers["x-request-id"] == "second"

    run(tmp_path, scenario)


def test_http_1_0_answers_close_the_connection(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        plain = harness.connect()
        plain.send(harness.request(version="1.0"))
        (answer,) = plain.responses()
        assert answer.status == 200 and answer.headers["connection"] == "close"
        assert plain.transport.closed
        held = harness.connect()
        held.send(harness.long_poll(1, version="1.0"))
        await harness.push(2)
        (woken,) = await held.wait_for(1)
        assert woken.status == 200 and woken.headers["connection"] == "close"
        assert held.transport.closed

    run(tmp_path, scenario)


def test_a_client_that_leaves_is_forgotten_and_counted_as_499(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1))
        assert harness.hub.waiter_count == 1
        connection.leave()
        assert harness.hub.waiter_count == 0
        assert harness.counted(499) == 1
        await harness.push(2)  # nothing is written to the gone connection
        await asyncio.sleep(0.05)
        assert connection.transport.data == b""

    run(tmp_path, scenario)


def test_a_token_revoked_while_held_gets_401_at_once(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        record, secret = harness.server.tokens.create(harness.admin, "ci", "reader", ["*"], ["*"])
        kept = harness.connect()
        kept.send(harness.long_poll(1))
        connection = harness.connect()
        connection.send(harness.long_poll(1, token=secret))
        assert harness.hub.waiter_count == 2
        # No push: the revocation itself ends the wait, long before its 30 s.
        harness.server.tokens.revoke(harness.admin, record.id)
        (answer,) = await connection.wait_for(1, timeout=1)
        assert answer.status == 401 and answer.json()["error"] == "unauthorized"
        assert harness.hub.waiter_count == 1 and kept.responses() == []

    run(tmp_path, scenario)


def test_a_token_revoked_while_held_gets_401_from_the_regular_handler(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        record, secret = harness.server.tokens.create(harness.admin, "ci", "reader", ["*"], ["*"])
        connection = harness.connect()
        connection.send(harness.long_poll(1, token=secret))
        assert harness.hub.waiter_count == 1
        harness.server.tokens.revoke(harness.admin, record.id)
        await harness.push(2)
        (answer,) = await connection.wait_for(1)
        assert answer.status == 401 and answer.json()["error"] == "unauthorized"
        assert b'"version"' not in connection.transport.data

    run(tmp_path, scenario)


def test_shutdown_answers_held_long_polls_at_once_and_closes_them(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1))
        idle = harness.connect()
        connection.protocol.shutdown()
        idle.protocol.shutdown()
        (answer,) = connection.responses()
        assert answer.status == 304 and answer.headers["etag"] == '"1"'
        assert answer.headers["connection"] == "close" and connection.transport.closed
        assert idle.transport.closed and idle.transport.data == b""
        assert harness.hub.waiter_count == 0

    run(tmp_path, scenario)


def test_a_failing_answer_closes_only_its_own_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(harness: Harness) -> None:
        broken, healthy = harness.connect(), harness.connect()
        broken.send(harness.long_poll(1))
        healthy.send(harness.long_poll(1))
        original = HotPathProtocol._reply

        def reply(self: HotPathProtocol, *arguments: Any, **options: Any) -> None:
            if self is broken.protocol:
                raise RuntimeError("simulated failure")
            original(self, *arguments, **options)

        monkeypatch.setattr(HotPathProtocol, "_reply", reply)
        await harness.push(2)
        (answer,) = await healthy.wait_for(1)
        assert answer.status == 200
        assert broken.transport.closed and broken.transport.data == b""

    run(tmp_path, scenario)


# -- event streams ------------------------------------------------------------------------------


def stream_events(data: bytes) -> list[dict[str, Any]]:
    """The `data:` objects of the version events in a chunked event-stream body."""
    found = []
    for line in data.decode().splitlines():
        if line.startswith("data: "):
            found.append(json.loads(line[6:]))
    return found


async def open_stream(harness: Harness, query: str = "", **headers: str) -> Connection:
    connection = harness.connect()
    connection.send(harness.request(f"/v1/events{query}", headers))
    await until(lambda: connection.protocol._stream is not None)
    return connection


def test_an_event_stream_is_handed_to_the_protocol_after_its_replay(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        await harness.push(2)
        connection = await open_stream(harness, f"?service={SERVICE}", **{"Last-Event-ID": "1"})
        await until(lambda: not harness.state.tasks)  # the route's task ended
        assert connection.transport.data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding: chunked" in connection.transport.data
        assert [event["version"] for event in stream_events(connection.transport.data)] == [2]
        await harness.push(3)
        await until(lambda: len(stream_events(connection.transport.data)) == 2)
        assert stream_events(connection.transport.data)[1] == {
            "service": SERVICE, "environment": ENVIRONMENT, "version": 3,
            "hash": harness.server.versions.cached(SERVICE, ENVIRONMENT).record.hash,  # type: ignore[union-attr]
        }
        assert harness.hub.subscriber_count == 1
        connection.send(b"GET / HTTP/1.1\r\n\r\n")  # a stream's client has nothing to ask
        assert not harness.state.tasks
        connection.leave()
        assert harness.hub.subscriber_count == 0

    run(tmp_path, scenario)


def test_a_stream_the_protocol_cannot_take_is_written_by_the_asgi_loop_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Connection: close` keeps the stream in ASGI; its events, pings and end follow the same rules."""
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)

    async def scenario(harness: Harness) -> None:
        record, secret = harness.server.tokens.create(harness.admin, "watcher", "reader", ["*"], ["*"])
        connection = harness.connect()
        connection.send(harness.request("/v1/events", {"Connection": "close", "Last-Event-ID": "0"}, token=secret))
        await until(lambda: len(stream_events(connection.transport.data)) == 1)  # the replay
        assert connection.protocol._stream is None and harness.state.tasks  # not taken over
        await harness.push(2)
        await until(lambda: len(stream_events(connection.transport.data)) == 2)
        assert [event["version"] for event in stream_events(connection.transport.data)] == [1, 2]
        await until(lambda: connection.transport.data.count(events.PING) >= 1)
        harness.server.tokens.revoke(harness.admin, record.id)
        await until(lambda: connection.transport.closed, timeout=2)
        assert connection.transport.data.endswith(hot_protocol.END_OF_STREAM)
        await harness.push(3)
        assert len(stream_events(connection.transport.data)) == 2

    run(tmp_path, scenario)


def test_streams_are_pinged_and_a_revoked_token_is_ended_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.05)

    async def scenario(harness: Harness) -> None:
        record, secret = harness.server.tokens.create(harness.admin, "watcher", "reader", ["*"], ["*"])
        kept = await open_stream(harness)
        revoked = harness.connect()
        revoked.send(harness.request("/v1/events", token=secret))
        await until(lambda: revoked.protocol._stream is not None)
        await until(lambda: hot_protocol.PING in kept.transport.data)
        # Without pings for a minute, the revocation alone ends the stream.
        monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 60.0)
        await asyncio.sleep(0.1)  # the pending ping has fired, the next is a minute away
        harness.server.tokens.revoke(harness.admin, record.id)
        await until(lambda: revoked.transport.closed, timeout=1)
        assert revoked.transport.data.endswith(hot_protocol.END_OF_STREAM)
        assert not kept.transport.closed
        await harness.push(2)
        await until(lambda: len(stream_events(kept.transport.data)) == 1)
        assert stream_events(revoked.transport.data) == []
        assert harness.hub.subscriber_count == 1

    run(tmp_path, scenario)


def test_a_stream_whose_client_stops_reading_is_ended(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        slow, fast = await open_stream(harness), await open_stream(harness)
        slow.protocol.pause_writing()  # what the transport says when its buffer is full
        await harness.push(2)
        await until(lambda: slow.transport.closed)
        assert slow.transport.data.endswith(hot_protocol.END_OF_STREAM)
        assert stream_events(slow.transport.data) == []
        await until(lambda: len(stream_events(fast.transport.data)) == 1)
        assert harness.hub.dropped_subscribers == 1 and harness.hub.subscriber_count == 1

    run(tmp_path, scenario)


def test_shutdown_ends_event_streams(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = await open_stream(harness)
        connection.protocol.shutdown()
        assert connection.transport.closed
        assert connection.transport.data.endswith(hot_protocol.END_OF_STREAM)
        assert harness.hub.subscriber_count == 0

    run(tmp_path, scenario)


def test_the_protocol_needs_the_uvicorn_hooks_it_overrides() -> None:
    # uvicorn's protocol is not a public interface: if an upgrade renames these, fail here
    # (`tskcfg serve` would fall back to uvicorn's plain protocol, with a warning).
    assert internals.missing_uvicorn_internals() == []
    assert httptools.HttpRequestParser is not None


def test_an_event_is_written_as_one_chunk_built_once() -> None:
    event = ChangeEvent(7, "api", "staging", 1, "a")
    assert hot_protocol.event_chunk(event) == b"%x\r\n" % len(frame(event)) + frame(event) + b"\r\n"
    assert hot_protocol.event_chunk(event) is hot_protocol.event_chunk(ChangeEvent(7, "api", "staging", 1, "a"))


def test_two_apps_in_one_process_keep_their_own_protocol_state(tmp_path: Path) -> None:
    """One protocol class; each app's core, hub, streams and bounds live on its connections."""

    async def main() -> None:
        async with running(tmp_path / "one") as one, running(tmp_path / "two") as two:
            first, second = one.connect(), two.connect()
            assert type(first.protocol) is type(second.protocol) is HotPathProtocol
            assert first.protocol.shared.core is one.server and second.protocol.shared.core is two.server
            assert first.protocol.shared.streams is not second.protocol.shared.streams
            assert first.protocol.bounds.refusals is not second.protocol.bounds.refusals
            assert not hasattr(HotPathProtocol, "core") and not hasattr(HotPathProtocol, "refusals")
            await two.push(2)
            first.send(one.request())
            second.send(two.request())
            assert first.responses()[0].json()["config"] == {"n": 1}
            assert second.responses()[0].json()["config"] == {"n": 2}

    asyncio.run(main())
