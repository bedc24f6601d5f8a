"""End-to-end: concurrent writers never share a version number, and compare-and-set has one winner."""

from __future__ import annotations

import threading

import httpx

from tests.serving import ServerProcess, push


def _race(server: ServerProcess, token: str, service: str, sources: list[str], if_match: str) -> list[int]:
    barrier = threading.Barrier(len(sources))
    statuses: list[int] = [0] * len(sources)

    def write(index: int) -> None:
        with server.client(token) as client:
            barrier.wait(timeout=5)
            statuses[index] = push(client, service, "staging", sources[index], headers={"If-Match": if_match}).status_code

    threads = [threading.Thread(target=write, args=(index,)) for index in range(len(sources))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return statuses


def test_two_writers_with_the_same_if_match_one_wins(server: ServerProcess, admin: httpx.Client) -> None:
    token = server.admin_token
    for round_number in range(10):
        service = f"race-{round_number}"
        assert push(admin, service, "staging", "a: 0\n").status_code == 201
        statuses = _race(server, token, service, ["a: 1\n", "a: 2\n"], '"1"')
        assert sorted(statuses) == [201, 412], statuses
        current = admin.get(f"/v1/configs/{service}/staging").json()
        assert current["version"] == 2
        assert current["config"]["a"] in (1, 2)


def test_create_only_race_has_one_winner(server: ServerProcess, admin: httpx.Client) -> None:
    statuses = _race(server, server.admin_token, "race-create", [f"a: {n}\n" for n in range(4)], '"0"')
    assert sorted(statuses) == [201, 412, 412, 412], statuses


def test_concurrent_pushes_get_distinct_consecutive_versions(server: ServerProcess, admin: httpx.Client) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def write(worker: int) -> None:
        with server.client(server.admin_token) as client:
            for number in range(10):
                response = push(client, "race-many", "staging", f"worker: {worker}\nn: {number}\n")
                assert response.status_code == 201, response.text
                with lock:
                    versions.append(response.json()["version"])

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(versions) == list(range(1, 61))
    history = admin.get("/v1/configs/race-many/staging/versions", params={"limit": 100}).json()
    assert [item["version"] for item in history["versions"]] == list(range(60, 0, -1))
