"""End-to-end: `tskcfg serve` bounds what one connection may hold: a slow body, too many connections,
a client that leaves mid-body."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import ServerProcess, make_root

HEALTH = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _read_until_closed(connection: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (or `deadline` passes)."""
    received = b""
    while time.monotonic() < deadline:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection is still open; received {received!r}")


def _answer(connection: socket.socket) -> bytes:
    """One answer to a request without a body, read up to the end of its JSON body."""
    received = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed; received {received!r}"
        received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
            None,
        )
        if length is not None and len(body) >= length:
            return received
    raise AssertionError(f"no whole answer within 5 s: {received!r}")


def _access_lines(server: ServerProcess) -> list[dict[str, object]]:
    time.sleep(0.3)  # access lines are written in batches every 100 ms
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.fixture()
def quick(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that gives a request body 1 s and takes 4 connections at most."""
    server = ServerProcess(
        make_root(tmp_path), "--no-sync", "--max-connections", "4", environ={"TSKCFG_BODY_TIMEOUT": "1"},
        open_services=True,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _put_head(length: int, token: str) -> bytes:
    return (
        b"PUT /v1/configs/user-service/staging HTTP/1.1\r\nHost: test\r\n"
        b"Authorization: Bearer " + token.encode("ascii") + b"\r\n"
        b"Content-Type: text/x-tsk\r\nContent-Length: " + str(length).encode("ascii") + b"\r\n\r\n"
    )


def test_a_body_that_arrives_too_slowly_is_answered_408_and_its_connection_closed(
    quick: ServerProcess,
) -> None:
    token = quick.admin_token
    for trickle in (False, True):
        with _connect(quick) as connection:
            connection.sendall(_put_head(1000, token) + b'name: "x"\n')
            started = time.monotonic()
            if trickle:
                # A byte now and then does not reset the time a body may take.
                for _ in range(4):
                    time.sleep(0.3)
                    try:
                        connection.sendall(b" ")
                    except OSError:
                        break
            answer = _read_until_closed(connection, started + 3)
            assert time.monotonic() - started < 2.5
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer
        assert b"connection: close" in head.lower()
        error = json.loads(body)
        assert error["error"] == "request_timeout" and "1 s" in error["message"], error
    # Nothing was stored, nothing failed, and the server still serves.
    with quick.client(token) as admin:
        assert admin.get("/v1/configs/user-service/staging").status_code == 404
        assert admin.get("/health").status_code == 200
    log = quick.log()
    assert "Traceback" not in log and "answered 408" in log
    statuses = [line["status"] for line in _access_lines(quick) if line["method"] == "PUT"]
    assert statuses == [408, 408]


def test_a_body_that_arrives_in_time_is_not_cut(quick: ServerProcess) -> None:
    source = b'name: "user-service"\nversion: "1.0.0"\n'
    with _connect(quick) as connection:
        connection.sendall(_put_head(len(source), quick.admin_token) + source[:10])
        time.sleep(0.6)
        connection.sendall(source[10:])
        answer = _answer(connection)
    # Refused by the schema or stored: either way answered, not timed out.
    assert not answer.startswith(b"HTTP/1.1 408"), answer


def test_connections_over_the_maximum_are_closed_while_the_first_are_still_answered(
    quick: ServerProcess,
) -> None:
    time.sleep(0.3)  # the start-up health checks' connections are gone
    first = [_connect(quick) for _ in range(4)]
    extra: list[socket.socket] = []
    try:
        for connection in first:
            connection.sendall(HEALTH)
            assert _answer(connection).startswith(b"HTTP/1.1 200 ")
        extra = [_connect(quick) for _ in range(3)]
        started = time.monotonic()
        for connection in extra:
            try:
                connection.sendall(HEALTH)
            except OSError:
                pass  # closed already
            assert _read_until_closed(connection, started + 2) == b""
        assert time.monotonic() - started < 2
        for connection in first:  # kept alive, and answered again
            connection.sendall(HEALTH)
            assert _answer(connection).startswith(b"HTTP/1.1 200 ")
    finally:
        for connection in first + extra:
            connection.close()
    assert "refused 1 connection(s): 4 are open" in quick.log()
    # Once those are gone, new connections are taken again.
    time.sleep(0.3)
    with quick.client() as anyone:
        assert anyone.get("/health").status_code == 200


def test_connections_that_send_no_request_give_way_to_new_ones(quick: ServerProcess) -> None:
    """Sockets that never send a byte, or a head a line at a time, cannot fill the maximum:
    at the limit the one that has waited longest for a head is closed to make room."""
    time.sleep(0.3)  # the start-up health checks' connections are gone
    idle = [_connect(quick) for _ in range(3)]
    slow = _connect(quick)
    slow.sendall(b"GET /health HTTP/1.1\r\nX-Slow: 1\r\n")  # and never the rest
    newcomers: list[socket.socket] = []
    try:
        time.sleep(0.2)
        for attempt, waiting in enumerate([*idle, slow]):
            # Each takes the place of the connection that has waited longest for a head.
            newcomers.append(_connect(quick))
            newcomers[-1].sendall(HEALTH)
            assert _answer(newcomers[-1]).startswith(b"HTTP/1.1 200 "), attempt
            assert _read_until_closed(waiting, time.monotonic() + 2) == b""
        # Connections that sent a whole request keep their place: now a newcomer is refused.
        with _connect(quick) as refused:
            try:
                refused.sendall(HEALTH)
            except OSError:
                pass
            assert _read_until_closed(refused, time.monotonic() + 2) == b""
        for connection in newcomers:
            connection.sendall(HEALTH)
            assert _answer(connection).startswith(b"HTTP/1.1 200 ")
    finally:
        for connection in [*idle, slow, *newcomers]:
            connection.close()
    deadline = time.monotonic() + 5
    while "to make room for new ones" not in quick.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "closed 1 connection(s) that had sent no complete request" in quick.log()


def test_a_client_that_leaves_mid_body_is_logged_as_such_not_as_a_failure(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync", open_services=True).start()
    try:
        with _connect(server) as connection:
            connection.sendall(_put_head(1000, server.admin_token) + b"0123456789")
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while "disconnected" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.log()
        assert "client disconnected before its request body arrived" in log, log
        assert "Traceback" not in log and " ERROR " not in log, log
        statuses = [line["status"] for line in _access_lines(server) if line["method"] == "PUT"]
        assert statuses == [499], statuses
        with server.client(server.admin_token) as admin:
            assert admin.get("/health").status_code == 200
            assert admin.get("/v1/configs/user-service/staging").status_code == 404
    finally:
        server.stop()


def test_after_a_431_the_connection_lingers_a_bounded_time_and_its_place_is_free(quick: ServerProcess) -> None:
    """The rest of a refused head is read and thrown away so the client can read the 431,
    but a client that never stops sending is closed after `LINGER_SECONDS`."""
    from config_service.http1.bounded import LINGER_SECONDS, MAX_HEAD

    with _connect(quick) as endless:
        endless.sendall(b"GET /health HTTP/1.1\r\nX-Big: " + b"b" * (MAX_HEAD + 1))
        answer = b""
        while b'"too_large"' not in answer:
            chunk = endless.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        began = time.monotonic()
        # The server has ended its side: nothing more comes, though the client goes on.
        assert endless.recv(65536) == b""
        closed = False
        while time.monotonic() - began < LINGER_SECONDS + 3:
            try:
                endless.sendall(b"b" * 1024)
            except OSError:
                closed = True
                break
            time.sleep(0.05)
        assert closed, "the server still reads a refused connection"
        assert time.monotonic() - began >= LINGER_SECONDS - 0.5
    # The connection no longer counts: four new ones are served.
    connections = [_connect(quick) for _ in range(4)]
    try:
        for connection in connections:
            connection.sendall(HEALTH)
            assert _answer(connection).startswith(b"HTTP/1.1 200 ")
    finally:
        for connection in connections:
            connection.close()
