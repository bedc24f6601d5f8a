"""What a client can do to the protocol's hot path that a plain request does not: pipelining deep,
repeating headers, HEAD on an event stream, racing a write, stopping the server mid-replay.

Uses the in-process harness of `test_protocol.py` (the real app and store, raw bytes fed
to the protocol `tskcfg serve` runs, a recording transport).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_protocol import (
    ENVIRONMENT,
    PATH,
    SERVICE,
    Harness,
    open_stream,
    run,
    stream_events,
    until,
)

from config_service.http1 import bounded as bounded_http
from config_service.hub import ChangeHub


def raw_request(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- pipelining ---------------------------------------------------------------------------------


def test_thousands_of_requests_pipelined_behind_a_long_poll_are_all_answered_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each answer written by the hot path starts the next pipelined request; done by
    # recursion, a deep pipeline ran out of stack and the connection was closed unanswered.
    count = 1500
    monkeypatch.setattr(bounded_http, "MAX_PIPELINE", count)

    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        requests = b"".join(
            harness.request(headers={"X-Request-ID": f"r{index}"}) for index in range(count)
        )
        connection.send(harness.long_poll(1) + requests)
        await harness.push(2)
        answers = await connection.wait_for(count + 1)
        assert len(answers) == count + 1
        assert answers[0].status == 200 and answers[0].json()["version"] == 2
        assert [answer.headers["x-request-id"] for answer in answers[1:]] == [
            f"r{index}" for index in range(count)
        ]
        assert all(answer.status == 200 for answer in answers)
        assert not connection.transport.closed

    run(tmp_path, scenario)


def test_a_long_poll_pipelined_after_an_answered_read_is_not_cut_by_the_keep_alive_timer(
    tmp_path: Path,
) -> None:
    # The first answer arms uvicorn's keep-alive timer (the connection looks idle); the long
    # poll right behind it in the same read must disarm it, as any new request does.
    async def scenario(harness: Harness) -> None:
        harness.config.timeout_keep_alive = 0.1
        connection = harness.connect()
        connection.send(harness.request() + harness.long_poll(1, wait=5))
        await asyncio.sleep(0.4)
        assert not connection.transport.closed
        assert harness.hub.waiter_count == 1
        await harness.push(2)
        first, second = await connection.wait_for(2)
        assert first.status == 200 and second.status == 200 and second.json()["version"] == 2

    run(tmp_path, scenario)


def test_an_idle_connection_closes_a_whole_keep_alive_timeout_after_its_last_answer(tmp_path: Path) -> None:
    # One keep-alive timer serves many requests: a connection kept busy is not cut when the
    # timer armed after its first answer fires, and one left idle is closed in time.
    async def scenario(harness: Harness) -> None:
        harness.config.timeout_keep_alive = 0.2
        connection = harness.connect()
        for _ in range(6):
            connection.send(harness.request())
            await asyncio.sleep(0.05)
        assert len(connection.responses()) == 6 and not connection.transport.closed
        await asyncio.sleep(0.1)
        assert not connection.transport.closed  # idle for half the timeout only
        await until(lambda: connection.transport.closed, timeout=1)
        assert connection.protocol.timeout_keep_alive_task is None  # no timer left behind

    run(tmp_path, scenario)


# -- repeated headers: the first one counts, as in the regular handler ---------------------------


def test_a_repeated_authorization_header_is_read_as_the_regular_handler_reads_it(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        _, other = harness.server.tokens.create(harness.admin, "other", "reader", ["other-service"], ["*"])
        for first, status in (("Bearer wrong", 401), (f"Bearer {other}", 403)):
            connection = harness.connect()
            connection.send(raw_request([
                f"GET {PATH} HTTP/1.1", "Host: test",
                f"Authorization: {first}", f"Authorization: Bearer {harness.token}",
            ]))
            (answer,) = await connection.wait_for(1)
            assert answer.status == status, first
            assert b'"config"' not in connection.transport.data

    run(tmp_path, scenario)


def test_repeated_if_none_match_and_accept_headers_are_read_as_the_regular_handler_reads_them(
    tmp_path: Path,
) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        base = [f"GET {PATH} HTTP/1.1", "Host: test", f"Authorization: Bearer {harness.token}"]
        connection.send(raw_request([*base, 'If-None-Match: "7"', 'If-None-Match: "1"']))
        connection.send(raw_request([*base, "Accept: application/json", "Accept: text/x-tsk"]))
        changed, json_answer = await connection.wait_for(2)
        assert changed.status == 200 and changed.json()["version"] == 1
        assert json_answer.headers["content-type"] == "application/json"

    run(tmp_path, scenario)


# -- event streams ------------------------------------------------------------------------------


def test_head_of_the_event_stream_gets_headers_only_and_ends(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.request("/v1/events").replace(b"GET ", b"HEAD ", 1))
        await until(lambda: b"\r\n\r\n" in connection.transport.data)
        await until(lambda: not harness.state.tasks)
        await harness.push(2)
        await asyncio.sleep(0.05)
        head, _, rest = bytes(connection.transport.data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in head
        assert rest == b""  # nothing may follow the head of a HEAD answer
        assert harness.hub.subscriber_count == 0 and connection.protocol._stream is None
        connection.send(harness.request())  # the connection serves the next request
        _, answer = await connection.wait_for(2)
        assert answer.status == 200 and answer.json()["version"] == 2

    run(tmp_path, scenario)


def test_a_version_first_seen_by_a_long_poll_still_reaches_event_streams(tmp_path: Path) -> None:
    # A push renders the new version into the server's cache on the writer thread and hands
    # the publish to the event loop. A long poll that names the new version in between teaches
    # the hub that version first; the publish that follows must still announce it.
    async def scenario(harness: Harness) -> None:
        stream = await open_stream(harness)
        # Blocks the loop while it commits: the hub's publish waits behind this call.
        harness.server.documents.push(harness.admin, SERVICE, ENVIRONMENT, "n: 2\n")
        assert harness.server.versions.cached(SERVICE, ENVIRONMENT).version == 2  # type: ignore[union-attr]
        poller = harness.connect()
        poller.send(harness.long_poll(2, wait=5))
        await until(lambda: len(stream_events(stream.transport.data)) == 1, timeout=2)
        assert stream_events(stream.transport.data)[0]["version"] == 2

    run(tmp_path, scenario)


def test_the_hub_announces_a_version_it_was_taught_before_its_publish() -> None:
    hub: ChangeHub[str] = ChangeHub()
    subscription = hub.subscribe()
    hub.publish("svc", "env", 3, "three")  # taught by a reader: no sequence, nothing to announce
    assert subscription.pending == 0
    hub.publish("svc", "env", 3, "three", sequence=9, hash="h3")  # the write's own publish
    assert subscription.pending == 1
    hub.publish("svc", "env", 3, "three", sequence=9, hash="h3")  # never twice
    assert subscription.pending == 1


def test_a_stream_that_starts_while_the_server_stops_is_ended_not_kept(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.request("/v1/events"))
        connection.protocol.shutdown()  # before the route ran: it will replay, then find this
        await until(lambda: connection.transport.closed, timeout=2)
        assert connection.transport.data.endswith(b"0\r\n\r\n")
        await until(lambda: harness.hub.subscriber_count == 0)

    run(tmp_path, scenario)


# -- request heads ------------------------------------------------------------------------------


def test_an_oversized_head_pipelined_behind_a_held_long_poll_is_not_answered_in_its_place(
    tmp_path: Path,
) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1))
        connection.send(b"GET / HTTP/1.1\r\nX-Big: ")
        for _ in range(5):
            connection.send(b"a" * 20_000)
        assert connection.transport.closed
        assert b"431" not in connection.transport.data  # that would read as the poll's answer
        connection.protocol.connection_lost(None)  # what the event loop does next
        assert harness.hub.waiter_count == 0 and harness.counted(499) == 1

    run(tmp_path, scenario)


def test_body_bytes_after_an_answer_do_not_hold_an_idle_connection_open(tmp_path: Path) -> None:
    # A GET answered before its declared body arrived: each late body byte used to stop the
    # keep-alive timer for good, so one byte held the connection open forever.
    async def scenario(harness: Harness) -> None:
        harness.config.timeout_keep_alive = 0.1
        connection = harness.connect()
        connection.send(harness.request(headers={"Content-Length": "10"}))
        (answer,) = connection.responses()
        assert answer.status == 200
        connection.send(b"abc")
        await until(lambda: connection.transport.closed, timeout=1)
        # A client that keeps its connection busy with requests is not cut.
        busy = harness.connect()
        for _ in range(4):
            busy.send(harness.request(headers={"Content-Length": "3"}) + b"abc")
            await asyncio.sleep(0.05)
        assert len(busy.responses()) == 4 and not busy.transport.closed

    run(tmp_path, scenario)


def test_nothing_is_answered_after_an_answer_that_closes_the_connection(tmp_path: Path) -> None:
    # Requests pipelined behind one that asked to close (Connection: close, HTTP/1.0) are not
    # processed: the connection ends with that answer, as RFC 9112 section 9.6 asks.
    async def scenario(harness: Harness) -> None:
        for closing in (harness.request(headers={"Connection": "close"}), harness.request(version="1.0")):
            connection = harness.connect()
            connection.send(
                closing
                + harness.request(headers={"X-Request-ID": "after-close"})
                + harness.long_poll(1)
            )
            await asyncio.sleep(0.05)
            (answer,) = connection.responses()
            assert answer.status == 200 and answer.headers["connection"] == "close"
            assert connection.transport.closed and b"after-close" not in connection.transport.data
            assert harness.hub.waiter_count == 0 and not harness.state.tasks

    run(tmp_path, scenario)


def test_garbage_sent_behind_a_held_long_poll_is_not_answered_in_its_place(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1))
        connection.send(b"NOT HTTP AT ALL\x00\r\n\r\n")
        assert connection.transport.closed
        assert b"400" not in connection.transport.data  # that would read as the poll's answer
        connection.protocol.connection_lost(None)
        assert harness.hub.waiter_count == 0
        # With nothing in flight, garbage still gets uvicorn's 400.
        idle = harness.connect()
        idle.send(b"NOT HTTP AT ALL\x00\r\n\r\n")
        assert idle.transport.data.startswith(b"HTTP/1.1 400 ") and idle.transport.closed

    run(tmp_path, scenario)


def test_a_long_poll_that_starts_after_the_server_began_stopping_is_answered_at_once(
    tmp_path: Path,
) -> None:
    # The long poll waits in the pipeline behind a request in the application when the server
    # begins to stop; it must not then be parked for its whole wait.
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.request(f"{PATH}/versions") + harness.long_poll(1, wait=30))
        connection.protocol.shutdown()
        first, second = await connection.wait_for(2, timeout=2)
        assert first.status == 200 and second.status == 304
        assert second.headers["connection"] == "close" and connection.transport.closed
        assert harness.hub.waiter_count == 0

    run(tmp_path, scenario)


def test_stopping_answers_long_polls_the_application_holds_too(tmp_path: Path) -> None:
    # A long poll for a document that does not exist yet (If-None-Match: "0") is held in the
    # application, not the protocol; stopping must not wait out its time (nor the grace period).
    async def scenario(harness: Harness) -> None:
        missing = f"/v1/configs/{SERVICE}/production?wait=30"
        waiting = harness.connect()
        waiting.send(harness.request(missing, {"If-None-Match": '"0"'}))
        held = harness.connect()
        held.send(harness.long_poll(1))
        await until(lambda: harness.hub.waiter_count == 2)
        assert harness.state.tasks  # the first is in the application
        held.protocol.shutdown()  # uvicorn asks every connection, one after the other
        waiting.protocol.shutdown()
        (answer,) = await waiting.wait_for(1, timeout=2)
        assert answer.status == 304 and answer.headers["etag"] == '"0"'
        assert answer.headers["connection"] == "close"
        await until(lambda: waiting.transport.closed, timeout=1)
        (other,) = held.responses()
        assert other.status == 304 and other.headers["connection"] == "close"
        # A poll parked after that (a pipelined one, say) is answered at once as well.
        later = harness.connect()
        later.send(harness.request(missing, {"If-None-Match": '"0"'}))
        (late,) = await later.wait_for(1, timeout=2)
        assert late.status == 304
        assert harness.hub.waiter_count == 0

    run(tmp_path, scenario)


def test_stopping_ends_event_streams_the_application_serves_too(tmp_path: Path) -> None:
    # An HTTP/1.0 stream is not handed to the protocol; it must still end when the server stops.
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.request("/v1/events", version="1.0"))
        await until(lambda: b"retry:" in connection.transport.data)
        assert connection.protocol._stream is None and harness.hub.subscriber_count == 1
        connection.protocol.shutdown()
        await until(lambda: connection.transport.closed, timeout=1)
        assert connection.transport.data.endswith(b"0\r\n\r\n")
        assert harness.hub.subscriber_count == 0
        # One that opens after that ends after its replay.
        late = harness.connect()
        late.send(harness.request("/v1/events", version="1.0"))
        await until(lambda: late.transport.closed, timeout=1)
        assert late.transport.data.startswith(b"HTTP/1.1 200 ") and harness.hub.subscriber_count == 0

    run(tmp_path, scenario)


def test_a_connection_that_pipelines_too_deep_behind_an_unanswered_request_is_closed(
    tmp_path: Path,
) -> None:
    # One read of tiny pipelined requests behind a held long poll queued thousands of them
    # (about 2 KiB each): memory a client could multiply by its connections.
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1))
        connection.send(b"GET / HTTP/1.1\r\n\r\n" * 5000)
        assert connection.transport.closed and connection.transport.data == b""
        assert len(connection.protocol.pipeline) <= bounded_http.MAX_PIPELINE
        connection.protocol.connection_lost(None)
        assert harness.hub.waiter_count == 0
        # Pipelining within the bound is answered in full, in order.
        within = harness.connect()
        count = bounded_http.MAX_PIPELINE
        within.send(harness.long_poll(1) + harness.request() * count)
        await harness.push(2)
        answers = await within.wait_for(count + 1)
        assert [answer.status for answer in answers] == [200] * (count + 1)
        assert not within.transport.closed

    run(tmp_path, scenario)


def test_a_pipelined_head_is_not_timed_while_the_server_is_not_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind a held long poll, uvicorn stops reading once a pipelined request is queued: the
    # rest of a head after it waits unread in the socket, which is no slowness of the client.
    monkeypatch.setattr(bounded_http, "HEAD_SECONDS", 0.1)

    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        connection.send(harness.long_poll(1, wait=5) + harness.request() + b"GET / HTTP/1.1\r\nHo")
        assert connection.protocol.flow.read_paused
        await asyncio.sleep(0.3)
        assert not connection.transport.closed
        await harness.push(2)
        first, second = await connection.wait_for(2)
        assert first.status == 200 and second.status == 200
        # Reading again: now the unfinished head is timed, and cut.
        await until(lambda: connection.transport.closed, timeout=1)

    run(tmp_path, scenario)


def test_the_uvicorn_internals_the_bounds_rely_on_are_there() -> None:
    # uvicorn's protocol is not a public interface: fail here, not in production, if an
    # upgrade renames what the fixes above lean on.
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from config_service.http1 import internals

    assert internals.missing_uvicorn_internals() == []
    # ... and the check sees a rename.
    original = HttpToolsProtocol.send_400_response
    try:
        del HttpToolsProtocol.send_400_response
        assert internals.missing_uvicorn_internals() == ["HttpToolsProtocol.send_400_response"]
    finally:
        HttpToolsProtocol.send_400_response = original  # type: ignore[method-assign]
