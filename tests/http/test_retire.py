"""Retiring documents and services through a real server: reads, held long polls and event
streams are told, history stays, the next push revives the document."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from config_service.http.events import frame
from config_service.hub import ChangeEvent
from tests.serving import ServerProcess, assert_error, make_root, push


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(make_root(tmp_path_factory.mktemp("retire")), open_services=True).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(server.admin_token) as client:
        yield client


def test_retire_then_revive(admin: httpx.Client) -> None:
    document = "/v1/configs/orders/staging"
    assert push(admin, "orders", "staging", "a: 1\n").status_code == 201
    assert push(admin, "orders", "staging", "a: 2\n").status_code == 201
    assert_error(admin.delete(document, headers={"If-Match": '"1"'}), 412, "precondition_failed")
    retired = admin.delete(document, headers={"If-Match": '"2"', "X-Config-Message": "moved%20away"})
    assert retired.status_code == 201, retired.text
    meta = retired.json()
    assert (meta["version"], meta["kind"], meta["hash"], meta["message"]) == (3, "retire", None, "moved away")
    body = assert_error(admin.get(document), 404, "retired")
    assert "version 3" in body["message"] and body["details"] == [{"retired_version": 3, "last_version": 2}]
    assert admin.get(document).headers["etag"] == '"3"'
    assert_error(admin.get(document, headers={"Accept": "text/x-tsk"}), 404, "retired")
    again = admin.delete(document)
    assert again.status_code == 200 and again.json()["version"] == 3
    listed = {entry["service"]: entry for entry in admin.get("/v1/services").json()["services"]}
    assert listed["orders"]["environments"]["staging"]["retired"] is True
    history = admin.get(document + "/versions").json()["versions"]
    assert [(v["version"], v["kind"]) for v in history] == [(3, "retire"), (2, "push"), (1, "push")]
    assert admin.get(document + "/versions/2").json()["config"] == {"a": 2}
    # The retire is a version of the history like the others: its metadata, no config.
    retire = admin.get(document + "/versions/3")
    assert retire.status_code == 200, retire.text
    assert (retire.json()["kind"], retire.json()["config"], retire.json()["hash"]) == ("retire", None, None)
    assert "immutable" in retire.headers["cache-control"] and retire.headers["etag"] == '"3"'
    assert_error(admin.post(document + "/rollback", json={"version": 3}), 409, "conflict")
    # The next push revives it with the next number, even with the same source as before.
    revived = push(admin, "orders", "staging", "a: 2\n")
    assert revived.status_code == 201 and revived.json()["version"] == 4
    assert admin.get(document).json()["config"] == {"a": 2}
    audit = admin.get("/v1/audit", params={"action": "retire", "service": "orders"}).json()["entries"]
    assert [(entry["version"], entry["environment"]) for entry in audit] == [(3, "staging")]
    assert_error(admin.delete("/v1/configs/orders/production"), 404, "not_found")


def test_a_reader_may_not_retire(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "quiet", "staging", "a: 1\n").status_code == 201
    reader = server.create_token("reader", ["*"], ["*"], name="reader")
    with server.client(reader) as client:
        assert_error(client.delete("/v1/configs/quiet/staging"), 403, "forbidden")
        assert_error(client.delete("/v1/services/quiet"), 403, "forbidden")


def test_held_long_polls_and_event_streams_are_told(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "watched", "production", "a: 1\n").status_code == 201
    answers: list[httpx.Response] = []
    events: list[str] = []

    def poll() -> None:
        with server.client(server.admin_token, timeout=30) as client:
            answers.append(client.get(
                "/v1/configs/watched/production", params={"wait": 20}, headers={"If-None-Match": '"1"'}
            ))

    def stream() -> None:
        with server.client(server.admin_token, timeout=30) as client:
            with client.stream("GET", "/v1/events", params={"service": "watched"}) as response:
                events.append("open")
                for line in response.iter_lines():
                    events.append(line)
                    if line.startswith("data:") and any(e == "event: retired" for e in events):
                        return

    threads = [threading.Thread(target=poll), threading.Thread(target=stream)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while "open" not in events and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # the long poll is parked by now
    assert admin.delete("/v1/configs/watched/production").status_code == 201
    for thread in threads:
        thread.join(timeout=20)
    assert len(answers) == 1
    assert_error(answers[0], 404, "retired")
    data = json.loads(next(line for line in events if line.startswith("data:"))[5:])
    assert "event: retired" in events
    assert data == {"service": "watched", "environment": "production", "version": 2, "hash": None}
    # Replayed the same way after a reconnect.
    with server.client(server.admin_token, timeout=10) as client:
        with client.stream("GET", "/v1/events", params={"service": "watched"},
                           headers={"Last-Event-ID": "0"}) as response:
            seen: list[str] = []
            for line in response.iter_lines():
                seen.append(line)
                if line == "event: retired":
                    break
    assert seen.count("event: version") == 1


def test_an_admin_retires_every_environment_of_a_service(server: ServerProcess, admin: httpx.Client) -> None:
    for environment in ("development", "staging"):
        assert push(admin, "legacy", environment, "a: 1\n").status_code == 201
    done = admin.delete("/v1/services/legacy")
    assert done.status_code == 200, done.text
    body: dict[str, Any] = done.json()
    assert body == {"service": "legacy", "retired": [
        {"environment": "development", "version": 2, "created": True},
        {"environment": "staging", "version": 2, "created": True},
    ]}
    for environment in ("development", "staging"):
        assert_error(admin.get(f"/v1/configs/legacy/{environment}"), 404, "retired")
    entries = admin.get("/v1/audit", params={"action": "service_retire"}).json()["entries"]
    assert entries[0]["service"] == "legacy"
    assert entries[0]["detail"]["environments"] == ["development", "staging"]
    assert_error(admin.delete("/v1/services/no-such-thing"), 404, "unknown_service")


def test_a_retired_event_is_framed_as_such() -> None:
    event = ChangeEvent(9, "a", "staging", 4, "", retired=True)
    assert frame(event) == (
        b'id: 9\nevent: retired\ndata: {"service":"a","environment":"staging","version":4,"hash":null}\n\n'
    )
