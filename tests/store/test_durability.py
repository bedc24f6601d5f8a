"""End-to-end: every version answered 201 survives `kill -9` of the server (SQLite: the file stays
sound) or of PostgreSQL (the server answers 503 meanwhile and resumes by itself)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.postgres import start_postgres
from tests.serving import ServerProcess, make_root, push


def test_acknowledged_pushes_survive_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-access-log", open_services=True).start()
    token = server.admin_token
    acknowledged: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def write(worker: int) -> None:
        service = f"durable-{worker}"
        with server.client(token, timeout=3.0) as client:
            for number in range(5000):  # bounded; the kill ends it much sooner
                if stop.is_set():
                    return
                try:
                    response = push(client, service, "production", f"worker: {worker}\nn: {number}\n")
                except httpx.HTTPError:
                    return  # the server is gone: this answer never came
                if response.status_code == 201:
                    body = response.json()
                    with lock:
                        acknowledged.append((service, body["version"], body["hash"]))

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acknowledged) > 20, "the writers did not get going before the kill"

    database = sqlite3.connect(server.data_dir / "config.db")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        database.close()

    server.start()
    try:
        with server.client(token) as client:
            for service, version, digest in acknowledged:
                response = client.get(f"/v1/configs/{service}/production/versions/{version}")
                assert response.status_code == 200, (service, version)
                assert response.json()["hash"] == digest
            # Numbers continue after the last stored one: nothing is reused.
            for worker in range(4):
                service = f"durable-{worker}"
                stored = client.get(f"/v1/configs/{service}/production").json()["version"]
                pushed = push(client, service, "production", "after: true\n")
                assert pushed.status_code == 201
                assert pushed.json()["version"] == stored + 1
    finally:
        server.stop()


def test_pushes_acknowledged_before_postgresql_is_killed_survive_and_the_server_resumes(
    tmp_path: Path,
) -> None:
    """kill -9 of PostgreSQL (all its processes) under four writers: every push answered 201
    is there after PostgreSQL restarts, the pushes meanwhile were answered 503
    store_unavailable (never 500), and the same server takes pushes again without a restart."""
    postgres = start_postgres()
    server = ServerProcess(
        make_root(tmp_path), "--no-access-log", "--store", postgres.create_database(), open_services=True
    )
    try:
        server.start()
        token = server.admin_token
        acknowledged: list[tuple[str, int, str]] = []
        statuses: set[int] = set()
        lock = threading.Lock()
        stop = threading.Event()

        def write(worker: int) -> None:
            service = f"durable-{worker}"
            with server.client(token, timeout=10.0) as client:
                for number in range(5000):  # bounded; the stop ends it much sooner
                    if stop.is_set():
                        return
                    response = push(client, service, "production", f"worker: {worker}\nn: {number}\n")
                    with lock:
                        statuses.add(response.status_code)
                        if response.status_code == 201:
                            body = response.json()
                            acknowledged.append((service, body["version"], body["hash"]))
                    if response.status_code == 503:
                        time.sleep(0.05)

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        postgres.kill()
        time.sleep(1.0)
        postgres.start()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(acknowledged) > 20, "the writers did not get going before the kill"
        assert 503 in statuses and statuses <= {201, 503}, statuses
        with server.client(token) as client:
            for service, version, digest in acknowledged:
                response = client.get(f"/v1/configs/{service}/production/versions/{version}")
                assert response.status_code == 200, (service, version)
                assert response.json()["hash"] == digest
            for worker in range(4):
                service = f"durable-{worker}"
                stored = client.get(f"/v1/configs/{service}/production/versions", params={"limit": 1})
                latest = stored.json()["versions"][0]["version"]
                pushed = push(client, service, "production", "after: true\n")
                assert pushed.status_code == 201, pushed.text
                assert pushed.json()["version"] == latest + 1
    finally:
        server.stop()
        postgres.remove()
