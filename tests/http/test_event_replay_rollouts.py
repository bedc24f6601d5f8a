"""A stream resumed with Last-Event-ID replays rollout changes among the versions, in sequence
order, each once, within its filters and its token's scope, then goes on live (real server)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving import ServerProcess, push

ENVIRONMENT = "production"
SLOW = 3600  # a bake that does not end during a test

Event = tuple[int, str, dict[str, Any]]  # (id, event type, data)


def bucket(service: str, environment: str, cohort: str) -> int:
    """The bucket as docs/rollouts.md defines it, computed here from the formula."""
    digest = hashlib.sha256(f"{service}\0{environment}\0{cohort}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def instance_in(service: str, low: int, high: int) -> str:
    number = 0
    while not low <= bucket(service, ENVIRONMENT, f"host-{number}") < high:
        number += 1
    return f"host-{number}"


class Reader:
    """The events of one stream, read by a thread (so a test never blocks on a quiet stream)."""

    def __init__(self, server: ServerProcess, token: str, query: str, headers: dict[str, str]) -> None:
        self.events: list[Event] = []
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(server, token, query, headers), daemon=True
        )
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self, server: ServerProcess, token: str, query: str, headers: dict[str, str]) -> None:
        with server.client(token, timeout=30) as client, client.stream(
            "GET", "/v1/events" + query, headers=headers
        ) as response:
            assert response.status_code == 200, response.read()
            self.opened.set()
            event_id, kind = 0, "message"
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((event_id, kind, json.loads(line[6:])))

    def wait_for(self, count: int, timeout: float = 10) -> list[Event]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.events)

    def close(self) -> None:
        self._stop.set()


def summary(events: list[Event]) -> list[tuple[str, str, int | None, str | None]]:
    return [
        (kind, data["environment"], data.get("version"), data.get("state"))
        for _, kind, data in events
    ]


def assert_ids_in_order(events: list[Event]) -> None:
    """Increasing ids; a version and the rollout event it goes with share one id."""
    for (before, before_kind, _), (after, kind, _) in zip(events, events[1:], strict=False):
        assert before < after or (before == after and before_kind == "version" and kind == "rollout"), events


@pytest.fixture(scope="module")
def prepared(server: ServerProcess, admin: httpx.Client) -> Iterator[tuple[str, int]]:
    """`replayed` at version 1 in production (its event's id is returned), then version 1 in
    staging, then a rollout of version 2 in production started and paused."""
    service = "replayed"
    assert push(admin, service, ENVIRONMENT, "level = 1\n").status_code == 201
    with server.client(server.admin_token) as client:
        first = Reader(server, server.admin_token, f"?service={service}&last_event_id=0", {})
        (first_id, kind, data), = first.wait_for(1)
        first.close()
        assert (kind, data["version"]) == ("version", 1)
        assert push(client, service, "staging", "level = 1\n").status_code == 201
        base = f"/v1/configs/{service}/{ENVIRONMENT}"
        started = client.post(
            base + "/rollouts", json={"source": "level = 2\n", "steps": [50, 100], "bake_seconds": SLOW}
        )
        assert started.status_code == 201, started.text
        assert client.post(base + "/rollout/pause").status_code == 200
    yield service, first_id


def test_a_resumed_stream_replays_a_rollout_among_the_versions_then_goes_on_live(
    server: ServerProcess, admin: httpx.Client, prepared: tuple[str, int]
) -> None:
    service, first_id = prepared
    inside = instance_in(service, 0, 50)
    outside = instance_in(service, 50, 100)
    cohort = Reader(server, server.admin_token, f"?service={service}", {"Last-Event-ID": str(first_id), "X-Instance-ID": inside})
    others = Reader(server, server.admin_token, f"?service={service}&last_event_id={first_id}", {"X-Instance-ID": outside})
    try:
        # Started then paused: replayed once, as it is now, at its latest change's id; the
        # cohort gets the candidate with it, everyone else the rollout event alone.
        replayed_cohort = cohort.wait_for(3)
        replayed_others = others.wait_for(2)
        assert summary(replayed_cohort) == [
            ("version", "staging", 1, None),
            ("version", ENVIRONMENT, 2, None),
            ("rollout", ENVIRONMENT, None, "paused"),
        ]
        assert summary(replayed_others) == [
            ("version", "staging", 1, None),
            ("rollout", ENVIRONMENT, None, "paused"),
        ]
        assert_ids_in_order(replayed_cohort)
        assert replayed_cohort[0][0] > first_id
        assert replayed_cohort[-1][0] == replayed_others[-1][0]
        rollout = replayed_cohort[-1][2]
        assert (rollout["candidate"]["version"], rollout["stable"]["version"]) == (2, 1)
        # Live from there: the next change once, after the replayed ones, with no repeat.
        base = f"/v1/configs/{service}/{ENVIRONMENT}"
        assert admin.post(base + "/rollout/resume").status_code == 200
        live_cohort = cohort.wait_for(4)
        live_others = others.wait_for(3)
        time.sleep(0.3)  # anything repeated would have arrived by now
        assert summary(cohort.events) == summary(replayed_cohort) + [("rollout", ENVIRONMENT, None, "running")]
        assert summary(others.events) == summary(replayed_others) + [("rollout", ENVIRONMENT, None, "running")]
        assert_ids_in_order(live_cohort)
        assert live_cohort[-1][0] == live_others[-1][0] > replayed_cohort[-1][0]
        # Put back as the other tests expect it.
        assert admin.post(base + "/rollout/pause").status_code == 200
    finally:
        cohort.close()
        others.close()


def test_a_replay_from_the_beginning_holds_each_event_once_and_keeps_to_the_filters(
    server: ServerProcess, admin: httpx.Client, prepared: tuple[str, int]
) -> None:
    service, first_id = prepared
    inside = instance_in(service, 0, 50)
    stream = Reader(
        server, server.admin_token, f"?service={service}&environment={ENVIRONMENT}",
        {"Last-Event-ID": "0", "X-Instance-ID": inside},
    )
    try:
        events = stream.wait_for(3)
        time.sleep(0.3)
        assert summary(stream.events) == [
            ("version", ENVIRONMENT, 1, None),
            ("version", ENVIRONMENT, 2, None),
            ("rollout", ENVIRONMENT, None, "paused"),
        ]
        assert events[0][0] == first_id
        assert_ids_in_order(events)
    finally:
        stream.close()


def test_a_replay_leaves_out_rollouts_outside_the_token_s_scope(
    server: ServerProcess, admin: httpx.Client, prepared: tuple[str, int]
) -> None:
    service, _ = prepared
    assert push(admin, "elsewhere", ENVIRONMENT, "level = 1\n").status_code == 201
    token = server.create_token("reader", ["elsewhere"], [ENVIRONMENT], name="elsewhere-reader")
    stream = Reader(server, token, "", {"Last-Event-ID": "0", "X-Instance-ID": instance_in(service, 0, 50)})
    try:
        stream.wait_for(1)
        time.sleep(0.5)
        assert summary(stream.events) == [("version", ENVIRONMENT, 1, None)]
        assert {data["service"] for _, _, data in stream.events} == {"elsewhere"}
    finally:
        stream.close()
