"""End-to-end: every version answered 201 survives `kill -9` of the server, and the file stays sound."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

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
