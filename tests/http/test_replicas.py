"""Three `tskcfg serve --store postgresql://...` replicas behind a real nginx, end to end.

A real PostgreSQL (tests/postgres.py) and a real nginx (tests/nginx.py) are started by the
tests; each skips when its program is missing and `CI` is unset. The replicas follow each
other through the store's notifications (docs/replicas.md): a push through one wakes long
polls and event streams on the others, pushes through all three take one gapless sequence, a
replica killed with SIGKILL loses no acknowledged version and clients move on, PostgreSQL
stopped and started under load leaves reads and watches served while writes answer 503, and
`--workers 2` on PostgreSQL follows the same store.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nginx import Balancer, nginx_or_skip
from tests.postgres import PostgresServer, start_postgres
from tests.serving import ServerProcess, assert_error, make_root, push
from tskcfg import ConfigClient

ENVIRONMENT = "development"


def wait_for(check: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.05)


class Fleet:
    """One PostgreSQL, three replicas on it, nginx in front of them."""

    def __init__(self, root: Path) -> None:
        nginx_or_skip()  # before starting anything
        self.postgres: PostgresServer = start_postgres()
        self.dsn = self.postgres.create_database()
        self.replicas = [
            ServerProcess(
                make_root(root / name),
                "--store",
                self.dsn,
                "--no-access-log",
                "--no-sync",
                open_services=True,
            )
            for name in ("a", "b", "c")
        ]
        self.balancer: Balancer | None = None

    def start(self) -> Fleet:
        self.replicas[0].start(timeout=60)
        for replica in self.replicas[1:]:
            replica.start(timeout=60)
        # Ports are known only once they started: nginx comes last.
        self.balancer = Balancer([f"127.0.0.1:{replica.port}" for replica in self.replicas]).start()
        return self

    @property
    def token(self) -> str:
        return self.replicas[0].admin_token

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def client(self, url: str | None = None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=url or self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )

    def ensure_running(self) -> None:
        """As every test expects it: PostgreSQL and every replica up (a test stopped one)."""
        self.postgres.ensure_running()
        for replica in self.replicas:
            if replica.process is None or replica.process.poll() is not None:
                # The same port, so nginx's upstream finds it again.
                replica.start(timeout=60, port=replica.port)

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for replica in self.replicas:
            replica.stop()
        self.postgres.remove()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    made = Fleet(tmp_path_factory.mktemp("replicas"))
    try:
        yield made.start()
    finally:
        made.stop()


@pytest.fixture
def replicas(fleet: Fleet) -> Fleet:
    fleet.ensure_running()
    return fleet


def _source(number: int) -> str:
    return f"value: {number}\n"


class Stream:
    """An event stream (`GET /v1/events`) read on its own thread: (id, data) of each event."""

    def __init__(
        self, url: str, token: str, service: str, last_event_id: str | None = None
    ) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", f"/v1/events?service={service}", headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event_id = 0
        try:
            while True:
                line = self.response.readline()  # the body, its chunked framing undone
                if not line:
                    return
                if line.startswith(b"id:"):
                    event_id = int(line[3:])
                elif line.startswith(b"data:"):
                    with self.lock:
                        self.events.append((event_id, json.loads(line[5:])))
        except (OSError, ValueError, AttributeError):  # closed by the test
            return

    def ids(self) -> list[int]:
        with self.lock:
            return [event_id for event_id, _ in self.events]

    def versions(self) -> list[int]:
        with self.lock:
            return [data["version"] for _, data in self.events]

    def close(self) -> None:
        # Shut down first: closing alone waits for the reading thread's next line (a ping).
        if self.connection.sock is not None:
            try:
                self.connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(timeout=5)
        self.connection.close()


def test_a_push_through_one_replica_wakes_long_polls_and_streams_on_the_others(
    replicas: Fleet,
) -> None:
    service = "wake"
    a, b, c = replicas.replicas
    with replicas.client(a.url) as first:
        assert push(first, service, ENVIRONMENT, _source(1)).status_code == 201
    streams = [Stream(replica.url, replicas.token, service) for replica in (b, c)]
    answers: dict[str, httpx.Response] = {}

    def long_poll(name: str, url: str) -> None:
        with replicas.client(url) as client:
            answers[name] = client.get(
                f"/v1/configs/{service}/{ENVIRONMENT}",
                params={"wait": 30},
                headers={"If-None-Match": '"1"'},
            )

    pollers = [
        threading.Thread(target=long_poll, args=(name, url))
        for name, url in (("b", b.url), ("c", c.url), ("nginx", replicas.url))
    ]
    for poller in pollers:
        poller.start()
    time.sleep(0.5)
    assert all(poller.is_alive() for poller in pollers)  # held: nothing new yet
    pushed_at = time.monotonic()
    with replicas.client(a.url) as first:
        assert push(first, service, ENVIRONMENT, _source(2)).status_code == 201
    for poller in pollers:
        poller.join(timeout=10)
    woken_in = time.monotonic() - pushed_at
    assert woken_in < 2.0, woken_in
    for name in ("b", "c", "nginx"):
        answer = answers[name]
        assert (answer.status_code, answer.headers["etag"]) == (200, '"2"'), name
        assert answer.json()["config"] == {"value": 2}
    for stream in streams:
        wait_for(lambda stream=stream: 2 in stream.versions(), within=5, what="the stream's event")  # type: ignore[misc]
        assert stream.versions()[-1] == 2
        stream.close()


def test_concurrent_pushes_through_all_three_give_one_gapless_sequence(replicas: Fleet) -> None:
    per_replica = 15
    with replicas.client(replicas.replicas[0].url) as client:
        assert push(client, "gapless", ENVIRONMENT, _source(0)).status_code == 201
        start = client.get(f"/v1/configs/gapless/{ENVIRONMENT}").json()["version"]
    streams = [Stream(replica.url, replicas.token, "gapless") for replica in replicas.replicas]
    acknowledged: list[tuple[int, int]] = []  # (version, sequence is read back below)
    failures: list[str] = []
    lock = threading.Lock()

    def pushes(index: int, url: str) -> None:
        with replicas.client(url) as client:
            for number in range(per_replica):
                response = push(
                    client, "gapless", ENVIRONMENT, _source(1000 * (index + 1) + number)
                )
                with lock:
                    if response.status_code == 201:
                        acknowledged.append((response.json()["version"], index))
                    else:
                        failures.append(response.text)

    threads = [
        threading.Thread(target=pushes, args=(index, replica.url))
        for index, replica in enumerate(replicas.replicas)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    total = 3 * per_replica
    # One document, three writers: every version number once, none skipped.
    assert sorted(version for version, _ in acknowledged) == list(
        range(start + 1, start + total + 1)
    )
    with replicas.client() as client:
        history = client.get(
            f"/v1/configs/gapless/{ENVIRONMENT}/versions", params={"limit": total + 1}
        ).json()["versions"]
    assert [item["version"] for item in history] == list(range(start + total, start - 1, -1))
    # Every replica's stream: each event once, ids increasing with no gap, the same ids.
    seen = []
    for stream in streams:
        wait_for(lambda stream=stream: len(stream.ids()) >= total, within=15, what="every event")  # type: ignore[misc]
        ids = stream.ids()[-total:]
        assert ids == list(range(ids[0], ids[0] + total)), ids
        assert stream.versions()[-total:] == list(range(start + 1, start + total + 1))
        seen.append(ids)
        stream.close()
    assert seen[0] == seen[1] == seen[2]
    # Replayed from before them on any replica (through nginx): the same events in order.
    replay = Stream(replicas.url, replicas.token, "gapless", last_event_id=str(seen[0][0] - 1))
    wait_for(
        lambda: len(replay.ids()) >= total, within=15, what=f"the replay {replay.ids()} {seen[0]}"
    )
    assert replay.ids()[:total] == seen[0]
    replay.close()


def test_a_replica_killed_during_pushes_loses_no_acknowledged_version_and_clients_move_on(
    replicas: Fleet, tmp_path: Path
) -> None:
    a, b, c = replicas.replicas
    service = "killed"
    with replicas.client(a.url) as client:
        assert push(client, service, ENVIRONMENT, _source(0)).status_code == 201
    reader = replicas.replicas[0].create_token(
        "reader", [service], [ENVIRONMENT], name="killed-reader"
    )
    acknowledged: list[int] = []
    refused: dict[str, list[int]] = {a.url: [], replicas.url: []}
    stop = threading.Event()

    def pushes(url: str, tag: int) -> None:
        with replicas.client(url, timeout=10) as client:
            for number in range(1, 400):  # bounded: at most 400 pushes or until told to stop
                if stop.is_set():
                    return
                try:
                    response = push(
                        client, service, ENVIRONMENT, f"value: {number}\nwriter: {tag}\n"
                    )
                except httpx.HTTPError:
                    refused[url].append(-1)
                    time.sleep(0.05)
                    continue
                # 200: nginx sent a push again after A died having stored it (the same source
                # is no new version): acknowledged with the version it made.
                if response.status_code in (200, 201):
                    acknowledged.append(response.json()["version"])
                else:
                    refused[url].append(response.status_code)

    # A watching client that lists the replicas (as CONFIG_STORE would), asking A first.
    with ConfigClient(
        service,
        ENVIRONMENT,
        server=",".join(replica.url for replica in (a, b, c)),
        token=reader,
        cache_dir=tmp_path / "cache",
    ) as watcher:
        assert watcher.config.version >= 1
        writers = [
            threading.Thread(target=pushes, args=(url, tag))
            for url, tag in ((a.url, 1), (replicas.url, 2))
        ]
        for writer in writers:
            writer.start()
        wait_for(lambda: len(acknowledged) >= 10, within=30, what="pushes before the kill")
        a.kill()  # SIGKILL: no shutdown code runs
        killed_at = len(acknowledged)
        wait_for(
            lambda: len(acknowledged) >= killed_at + 20, within=30, what="pushes after the kill"
        )
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
        last = max(acknowledged)
        # The watcher moved to another replica and follows it to the last version.
        wait_for(
            lambda: watcher.config.version == last,
            within=15,
            what="the watcher at the last version",
        )
    # Every acknowledged version is in the store, seen through the replicas left.
    with replicas.client() as client:
        history = client.get(
            f"/v1/configs/{service}/{ENVIRONMENT}/versions", params={"limit": 500}
        ).json()["versions"]
    stored = {item["version"] for item in history}
    assert set(acknowledged) <= stored
    assert len(acknowledged) == len(set(acknowledged))
    assert max(stored) == last
    # Through nginx no push failed: it moved on to the replicas left; pushes sent to A
    # directly failed (no connection) once it was gone.
    assert refused[replicas.url] == []
    assert refused[a.url] and set(refused[a.url]) == {-1}
    # A is started again and knows everything.
    a.start(timeout=60, port=a.port)
    with replicas.client(a.url) as client:
        assert client.get(f"/v1/configs/{service}/{ENVIRONMENT}").json()["version"] == last


def test_postgresql_stopped_and_started_under_load(replicas: Fleet) -> None:
    service = "away"
    document = f"/v1/configs/{service}/{ENVIRONMENT}"
    with replicas.client() as client:
        assert push(client, service, ENVIRONMENT, _source(1)).status_code == 201
    for replica in replicas.replicas:  # every replica holds it before PostgreSQL goes
        with replicas.client(replica.url) as client:
            wait_for(lambda client=client: client.get(document).status_code == 200, what="a read")  # type: ignore[misc]
    read_failures: list[int] = []
    reads = [0]
    stop = threading.Event()

    def read_load() -> None:
        with replicas.client(timeout=10) as client:
            for _ in range(5000):  # bounded in count and in time (stopped below)
                if stop.is_set():
                    return
                response = client.get(document)
                reads[0] += 1
                if response.status_code != 200:
                    read_failures.append(response.status_code)
                time.sleep(0.01)

    loaders = [threading.Thread(target=read_load) for _ in range(2)]
    for loader in loaders:
        loader.start()
    answers: dict[str, httpx.Response] = {}

    def long_poll(name: str, url: str) -> None:
        with replicas.client(url, timeout=60) as client:
            answers[name] = client.get(
                document, params={"wait": 40}, headers={"If-None-Match": '"1"'}
            )

    try:
        replicas.postgres.stop()
        pollers = [
            threading.Thread(target=long_poll, args=(replica.url[-5:], replica.url))
            for replica in replicas.replicas
        ]
        for poller in pollers:
            poller.start()
        before = reads[0]
        time.sleep(1.0)
        with replicas.client() as client:
            refused = push(client, service, ENVIRONMENT, _source(2))
            body = assert_error(refused, 503, "store_unavailable")
            assert "PostgreSQL" in body["message"]
        for replica in replicas.replicas:
            with replicas.client(replica.url) as client:
                health = client.get("/health")
                assert health.status_code == 200
                assert (health.json()["status"], health.json()["store"]) == (
                    "degraded",
                    "unavailable",
                )
                # Reads are served from memory; a long poll is held, not refused.
                assert client.get(document).json()["version"] == 1
        assert all(poller.is_alive() for poller in pollers)
        assert reads[0] > before  # reads went on while it was away
        replicas.postgres.start()
        # Writes resume by themselves; the held long polls on every replica wake with it.
        with replicas.client() as client:
            resumed = wait_for(
                lambda: (lambda r: r if r.status_code == 201 else None)(
                    push(client, service, ENVIRONMENT, _source(2))
                ),
                within=30,
                what="a push accepted again",
            )
        assert resumed.json()["version"] == 2
        for poller in pollers:
            poller.join(timeout=20)
        assert len(answers) == 3
        for name, answer in answers.items():
            assert (answer.status_code, answer.headers["etag"]) == (200, '"2"'), name
        for replica in replicas.replicas:
            with replicas.client(replica.url) as client:
                wait_for(
                    lambda client=client: client.get("/health").json()["status"] == "ok",
                    what="health ok",
                )  # type: ignore[misc]
    finally:
        stop.set()
        for loader in loaders:
            loader.join(timeout=30)
        replicas.postgres.ensure_running()
    assert read_failures == []


def _bucket(service: str, cohort: str) -> int:
    """The rollout bucket as docs/rollouts.md defines it."""
    digest = hashlib.sha256(f"{service}\0{ENVIRONMENT}\0{cohort}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def test_a_rollout_changed_through_one_replica_changes_what_the_others_answer_a_cohort(
    replicas: Fleet,
) -> None:
    service = "rolled"
    inside = next(f"host-{n}" for n in range(1000) if _bucket(service, f"host-{n}") < 30)
    outside = next(f"host-{n}" for n in range(1000) if _bucket(service, f"host-{n}") >= 30)
    a, b, c = replicas.replicas
    document = f"/v1/configs/{service}/{ENVIRONMENT}"

    def answered(url: str, cohort: str) -> int:
        with replicas.client(url) as client:
            return int(client.get(document, headers={"X-Config-Cohort": cohort}).json()["version"])

    with replicas.client(a.url) as client:
        assert push(client, service, ENVIRONMENT, _source(1)).status_code == 201
        started = client.post(
            f"{document}/rollouts",
            json={"source": _source(2), "steps": [30, 100], "bake_seconds": 600},
        )
        assert started.status_code == 201, started.text
    for replica in (b, c):
        wait_for(
            lambda r=replica: answered(r.url, inside) == 2,
            within=1.0,
            what="the cohort on the candidate",
        )  # type: ignore[misc]
        assert answered(replica.url, outside) == 1
    with replicas.client(b.url) as client:
        assert client.post(f"{document}/rollout/pause").status_code == 200
    wait_for(
        lambda: replicas_agree(replicas, document, "paused"), within=1.0, what="paused everywhere"
    )
    with replicas.client(c.url) as client:
        assert client.post(f"{document}/rollout/abort").status_code == 200
    for replica in (a, b):
        wait_for(
            lambda r=replica: answered(r.url, inside) == 1,
            within=1.0,
            what="the cohort back on stable",
        )  # type: ignore[misc]


def replicas_agree(fleet: Fleet, document: str, state: str) -> bool:
    for replica in fleet.replicas:
        with fleet.client(replica.url) as client:
            if client.get(f"{document}/rollout").json().get("state") != state:
                return False
    return True


def test_two_workers_on_postgresql_follow_the_store_beside_a_replica(
    replicas: Fleet, tmp_path: Path
) -> None:
    service = "workers"
    document = f"/v1/configs/{service}/{ENVIRONMENT}"
    workers = ServerProcess(
        make_root(tmp_path / "workers"),
        "--store",
        replicas.dsn,
        "--workers",
        "2",
        "--no-access-log",
        "--no-sync",
        open_services=True,
    ).start(timeout=60)
    try:
        # The store's one admin token works on the workers too (they made none of their own).
        assert not (workers.data_dir / "admin.token").exists()
        with replicas.client(replicas.replicas[0].url) as client:
            assert push(client, service, ENVIRONMENT, _source(1)).status_code == 201
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def long_poll() -> None:
            # A new connection each: the kernel spreads them over both workers.
            with replicas.client(workers.url) as client:
                answer = client.get(document, params={"wait": 30}, headers={"If-None-Match": '"1"'})
            with lock:
                answers.append(answer)

        pollers = [threading.Thread(target=long_poll) for _ in range(8)]
        for poller in pollers:
            poller.start()
        time.sleep(0.5)
        with replicas.client(replicas.replicas[1].url) as client:
            assert push(client, service, ENVIRONMENT, _source(2)).status_code == 201
        for poller in pollers:
            poller.join(timeout=10)
        assert len(answers) == 8
        assert {(answer.status_code, answer.headers["etag"]) for answer in answers} == {
            (200, '"2"')
        }
        # Pushes through the workers reach the replicas.
        with replicas.client(workers.url) as client:
            for number in range(3, 8):
                assert push(client, service, ENVIRONMENT, _source(number)).status_code == 201
        with replicas.client(replicas.replicas[2].url) as client:
            wait_for(
                lambda: client.get(document).json()["version"] == 7, within=2, what="the replica"
            )
    finally:
        workers.stop()
