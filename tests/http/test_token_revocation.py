"""End-to-end: revoking a token ends what it holds open at once, on every path `tskcfg serve` has."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.serving import USER_SERVICE, ServerProcess, make_root, push

DOCUMENT = "/v1/configs/user-service/staging"


def _request(server: ServerProcess, path: str, token: str, *headers: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    lines = [f"GET {path} HTTP/1.1", "Host: test", f"Authorization: Bearer {token}", *headers]
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return connection


def _read_until(connection: socket.socket, done: bytes, deadline: float) -> tuple[bytes, bool]:
    """What arrives until `done` is in it (True), the connection closes (False), or the deadline."""
    received = b""
    while time.monotonic() < deadline:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return received, False
        received += chunk
        if done in received:
            return received, True
    raise AssertionError(f"nothing ended within the time; received {received!r}")


def test_revoking_a_token_ends_its_long_polls_with_401_and_its_streams_within_a_second(
    tmp_path: Path,
) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync", open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201
            created = admin.post(
                "/v1/tokens",
                json={"name": "watcher", "role": "reader", "services": ["*"], "environments": ["*"]},
            ).json()
            token = created["token"]
            waits = {
                # Parked by the HTTP protocol itself.
                "hot long poll": _request(server, f"{DOCUMENT}?wait=60", token, 'If-None-Match: "1"'),
                # Another parameter: the application's handler holds it.
                "asgi long poll": _request(
                    server, f"{DOCUMENT}?wait=60&wait=60", token, 'If-None-Match: "1"'
                ),
                # Handed over to the HTTP protocol once live.
                "stream": _request(server, "/v1/events", token),
                # Connection: close keeps the stream in the application.
                "asgi stream": _request(server, "/v1/events", token, "Connection: close"),
            }
            try:
                deadline = time.monotonic() + 5
                for name in ("stream", "asgi stream"):
                    _, live = _read_until(waits[name], b"retry: 2000", deadline)
                    assert live, name
                time.sleep(0.5)  # the long polls are parked by now
                assert admin.delete(f"/v1/tokens/{created['id']}").status_code == 204
                revoked_at = time.monotonic()
                ended = {}
                for name, connection in waits.items():
                    if "long poll" in name:
                        answer, _ = _read_until(connection, b'"unauthorized"', revoked_at + 1.5)
                        assert answer.startswith(b"HTTP/1.1 401 "), (name, answer)
                    else:
                        rest, still_open = _read_until(connection, b"\x00never", revoked_at + 1.5)
                        assert not still_open and rest.endswith(b"0\r\n\r\n"), (name, rest)
                    ended[name] = time.monotonic() - revoked_at
                assert max(ended.values()) < 1.5, ended
            finally:
                for connection in waits.values():
                    connection.close()
            # The admin's own reads are untouched.
            assert admin.get(DOCUMENT).status_code == 200
        assert "Traceback" not in server.log()
    finally:
        server.stop()
