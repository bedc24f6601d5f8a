"""`tskcfg serve --workers 2` on SQLite: two processes share the port and follow the store.

Connections are tied to the worker process that accepted them (found through /proc), so a
test can push through one worker and watch on the other.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import TSKCFG, ServerProcess, make_root

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="finds each connection's worker through Linux /proc"
)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(part) for part in path.read_text().split()] if path.exists() else []


def wait_for(check, within: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.05)


class Workers:
    """A `tskcfg serve --workers 2` and plain HTTP connections pinned to its workers."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        assert server.process is not None
        self.pids = wait_for(
            lambda: (lambda found: found if len(found) == 2 else None)(children_of(server.process.pid)),  # type: ignore[union-attr]
            what="two workers",
        )
        self.token = wait_for(
            lambda: (server.data_dir / "admin.token").exists() and server.admin_token,
            what="the admin token",
        )

    def _socket_inodes(self, pid: int) -> set[str]:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        return inodes

    def worker_of(self, connection: http.client.HTTPConnection) -> int:
        """The pid of the worker that accepted `connection`."""
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]

        def find() -> int | None:
            inode = None
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].split(":")[1], 16)
                remote_port = int(fields[2].split(":")[1], 16)
                if local_port == self.server.port and remote_port == client_port:
                    inode = fields[9]
            if inode is None:
                return None
            for pid in self.pids:
                if inode in self._socket_inodes(pid):
                    return pid
            return None

        return int(wait_for(find, within=5, what="the worker of a connection"))

    def connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        connection.connect()
        return connection

    def pinned(self) -> dict[int, http.client.HTTPConnection]:
        """One open connection to each worker."""
        found: dict[int, http.client.HTTPConnection] = {}
        spare = []
        for _ in range(200):
            connection = self.connect()
            # A request first, so the worker has accepted the connection.
            self.request(connection, "GET", "/health")
            pid = self.worker_of(connection)
            if pid in found:
                spare.append(connection)
            else:
                found[pid] = connection
            if len(found) == 2:
                break
        for connection in spare:
            connection.close()
        assert len(found) == 2, "the kernel gave every connection to one worker"
        return found

    def request(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "text/x-tsk"
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, data


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    server = ServerProcess(make_root(tmp_path), "--workers", "2", "--no-sync", "--open-services").start()
    try:
        yield Workers(server)
    finally:
        server.stop()


DOCUMENT = "/v1/configs/orders/development"


def test_a_push_through_one_worker_wakes_long_polls_and_streams_on_the_other(workers: Workers) -> None:
    (first, one), (second, other) = workers.pinned().items()
    assert first != second
    status, _, _ = workers.request(one, "PUT", DOCUMENT, "value: 1\n")
    assert status == 201
    answers: dict[str, object] = {}

    def long_poll() -> None:
        answers["poll"] = workers.request(
            other, "GET", DOCUMENT + "?wait=20", headers={"If-None-Match": '"1"'}
        )

    stream = workers.connect()
    assert workers.worker_of(stream) in workers.pids
    stream.request("GET", "/v1/events", headers={"Authorization": f"Bearer {workers.token}"})
    events = stream.getresponse()
    assert events.status == 200
    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    assert poller.is_alive()  # held: nothing new yet
    pushed_at = time.monotonic()
    status, _, body = workers.request(one, "PUT", DOCUMENT, "value: 2\n")
    assert status == 201
    sequence = json.loads(body)["version"]
    poller.join(timeout=10)
    assert not poller.is_alive()
    assert time.monotonic() - pushed_at < 2.0
    status, headers, data = answers["poll"]  # type: ignore[misc]
    assert status == 200 and headers["etag"] == '"2"'
    assert json.loads(data)["config"] == {"value": 2}
    # (A stream opened just after version 1 was pushed through another worker may begin with
    # version 1's event: that worker learns of it after the stream started.)
    seen: list[tuple[int, int]] = []
    event_id = 0
    while not seen or seen[-1][1] != sequence:
        line = events.fp.readline()
        if line.startswith(b"id:"):
            event_id = int(line[3:])
        elif line.startswith(b"data:"):
            seen.append((event_id, json.loads(line[5:])["version"]))
    assert seen in ([(2, 2)], [(1, 1), (2, 2)])
    stream.close()


def test_a_client_naming_a_version_pushed_through_the_other_worker_never_gets_an_older_one(
    workers: Workers,
) -> None:
    (_, one), (_, other) = workers.pinned().items()
    for number in range(1, 21):
        status, _, _ = workers.request(one, "PUT", DOCUMENT, f"value: {number}\n")
        assert status == 201
        # At once, before the other worker's follower has looked at the store.
        status, headers, _ = workers.request(
            other, "GET", DOCUMENT, headers={"If-None-Match": f'"{number}"'}
        )
        assert (status, headers["etag"]) == (304, f'"{number}"')
    status, _, _ = workers.request(one, "PUT", DOCUMENT, "value: 21\n")
    status, headers, body = workers.request(
        other, "GET", DOCUMENT + "?wait=5", headers={"If-None-Match": '"21"'}
    )
    # Held until its time ran out, since 21 is current: never answered with 20.
    assert (status, headers["etag"]) == (304, '"21"')


def test_concurrent_pushes_through_both_workers_give_one_gapless_sequence(workers: Workers) -> None:
    connections = workers.pinned()
    failures: list[str] = []

    def pushes(connection: http.client.HTTPConnection, service: str) -> None:
        for number in range(30):
            status, _, body = workers.request(
                connection, "PUT", f"/v1/configs/{service}/development", f"value: {number}\n"
            )
            if status != 201:
                failures.append(body.decode())

    threads = [
        threading.Thread(target=pushes, args=(connection, f"svc-{index}"))
        for index, connection in enumerate(connections.values())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    # Replayed from the start on each worker: every event once, in order.
    for connection in workers.pinned().values():
        connection.request(
            "GET",
            "/v1/events",
            headers={"Authorization": f"Bearer {workers.token}", "Last-Event-ID": "0"},
        )
        response = connection.getresponse()
        ids: list[int] = []
        while len(ids) < 60:
            line = response.fp.readline()
            if line.startswith(b"id:"):
                ids.append(int(line[3:]))
        assert ids == list(range(1, 61))
        connection.close()


def test_a_token_revoked_through_one_worker_ends_a_long_poll_on_the_other(workers: Workers) -> None:
    (_, one), (_, other) = workers.pinned().items()
    assert workers.request(one, "PUT", DOCUMENT, "value: 1\n")[0] == 201
    one.request(
        "POST",
        "/v1/tokens",
        body=json.dumps(
            {"name": "watcher", "role": "reader", "services": ["*"], "environments": ["*"]}
        ),
        headers={"Authorization": f"Bearer {workers.token}", "Content-Type": "application/json"},
    )
    created = json.loads(one.getresponse().read())
    reader = created["token"]

    def as_reader(connection: http.client.HTTPConnection, path: str, **headers: str) -> int:
        connection.request("GET", path, headers={"Authorization": f"Bearer {reader}", **headers})
        response = connection.getresponse()
        response.read()
        return response.status

    # Known on the other worker within a second.
    wait_for(lambda: as_reader(other, DOCUMENT) == 200, within=1.5, what="the new token")
    answers: list[int] = []
    poller = threading.Thread(
        target=lambda: answers.append(as_reader(other, DOCUMENT + "?wait=30", **{"If-None-Match": '"1"'}))
    )
    poller.start()
    time.sleep(0.3)
    revoked_at = time.monotonic()
    one.request("DELETE", f"/v1/tokens/{created['id']}", headers={"Authorization": f"Bearer {workers.token}"})
    assert one.getresponse().status == 204
    poller.join(timeout=10)
    assert answers == [401]
    assert time.monotonic() - revoked_at < 2.0


def test_a_killed_worker_is_started_again_and_serves(workers: Workers) -> None:
    victim = workers.pids[0]
    os.kill(victim, signal.SIGKILL)
    assert workers.server.process is not None
    supervisor = workers.server.process.pid
    replaced = wait_for(
        lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(children_of(supervisor)),
        what="a new worker",
    )
    workers.pids = replaced
    for connection in workers.pinned().values():
        status, _, _ = workers.request(connection, "PUT", DOCUMENT, "value: 3\n")
        assert status in (200, 201)


def test_a_second_server_on_the_same_folder_still_refuses_to_start(workers: Workers) -> None:
    result = subprocess.run(
        [str(TSKCFG), "serve", "--no-sync", "--port", "0", "--data-dir", str(workers.server.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "is in use by process" in result.stderr


def test_the_supervisor_stops_its_workers(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--workers", "2", "--no-sync", "--open-services").start()
    assert server.process is not None
    pids = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(children_of(server.process.pid)))  # type: ignore[union-attr]
    server.stop()
    for pid in pids:
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _zombie(pid), what="a worker ended")


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def test_file_sync_runs_in_one_worker_and_moves_when_it_ends(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    server = ServerProcess(root, "--workers", "2", "--open-services").start()
    try:
        workers = Workers(server)
        document = root / "environments" / "development" / "synced.tsk"
        document.write_text("value: 1\n")
        connection = workers.connect()

        def history() -> list[int]:
            status, _, body = workers.request(connection, "GET", "/v1/configs/synced/development/versions")
            return [item["version"] for item in json.loads(body)["versions"]] if status == 200 else []

        wait_for(lambda: history() == [1], what="the file imported")
        time.sleep(1.0)
        assert history() == [1]  # once, not once per worker
        leader = int((server.data_dir / "leader.lock").read_text())
        assert leader in workers.pids
        os.kill(leader, signal.SIGKILL)
        # The other worker takes the lease over and imports the next change.
        wait_for(
            lambda: int((server.data_dir / "leader.lock").read_text() or 0) not in (0, leader),
            what="another worker leading",
        )
        document.write_text("value: 2\n")
        connection.close()
        connection = workers.connect()
        wait_for(lambda: history() == [2, 1], what="the change imported by the new leader")
        connection.close()
    finally:
        server.stop()
