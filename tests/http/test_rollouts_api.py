"""End-to-end rollouts on a real server: buckets, cohort reads and long polls, widening wake-ups,
automatic rollback on failure reports, completion, pause/resume/abort, a restart in the middle
of a bake, event streams, listings and the 409s."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import ServerProcess, assert_error, make_root, push

ENVIRONMENT = "production"
SLOW = 3600  # a bake that does not end during a test


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(make_root(tmp_path_factory.mktemp("rollouts")), "--no-sync").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(server.admin_token) as client:
        yield client


def bucket(service: str, environment: str, cohort: str) -> int:
    """The bucket as docs/rollouts.md defines it, computed here from the formula."""
    digest = hashlib.sha256(f"{service}\0{environment}\0{cohort}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def instances_in(service: str, low: int, high: int, count: int = 1, prefix: str = "host") -> list[str]:
    """Instance ids whose bucket for the document is in [low, high)."""
    found: list[str] = []
    number = 0
    while len(found) < count:
        name = f"{prefix}-{number}"
        if low <= bucket(service, ENVIRONMENT, name) < high:
            found.append(name)
        number += 1
    return found


def document(admin: httpx.Client, service: str, source: str = "level = 1\n") -> None:
    """`service` in production at version 1 (created first where services must exist)."""
    created = admin.post("/v1/services", json={"service": service})
    assert created.status_code in (200, 201, 404, 405), created.text
    response = push(admin, service, ENVIRONMENT, source)
    assert response.status_code == 201, response.text


def start(admin: httpx.Client, service: str, **plan: Any) -> dict[str, Any]:
    plan.setdefault("source", "level = 2\n")
    response = admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollouts", json=plan)
    assert response.status_code == 201, response.text
    return dict(response.json())


def rollout_of(client: httpx.Client, service: str) -> dict[str, Any]:
    response = client.get(f"/v1/configs/{service}/{ENVIRONMENT}/rollout")
    assert response.status_code == 200, response.text
    return dict(response.json())


def read(client: httpx.Client, service: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.get(f"/v1/configs/{service}/{ENVIRONMENT}", headers=headers or {})


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Poll(threading.Thread):
    """A long poll in a thread, as one instance: `response` once it is answered."""

    def __init__(self, server: ServerProcess, service: str, instance: str, known: int, wait: float) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.service = service
        self.instance = instance
        self.known = known
        self.wait = wait
        self.response: httpx.Response | None = None
        self.answered_at = 0.0

    def run(self) -> None:
        with self.server.client(self.server.admin_token, timeout=self.wait + 10) as client:
            self.response = client.get(
                f"/v1/configs/{self.service}/{ENVIRONMENT}?wait={self.wait}",
                headers={"X-Instance-ID": self.instance, "If-None-Match": f'"{self.known}"'},
            )
        self.answered_at = time.monotonic()


def parked(server: ServerProcess, count: int) -> bool:
    """True once at least `count` long polls wait on the server."""
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith('tskcfg_watchers{kind="long_poll"}'):
            return float(line.split()[-1]) >= count
    return False


def test_buckets_follow_the_formula_and_headers_choose_the_cohort(admin: httpx.Client) -> None:
    service = "bucketed"
    document(admin, service)
    rollout = start(admin, service, steps=[30, 100], bake_seconds=SLOW)
    assert (rollout["state"], rollout["percent"], rollout["candidate"]["version"]) == ("running", 30, 2)
    for number in range(40):
        instance = f"pod-{number}"
        expected = 2 if bucket(service, ENVIRONMENT, instance) < 30 else 1
        response = read(admin, service, {"X-Instance-ID": instance})
        assert response.json()["version"] == expected, instance
        cohort = "candidate" if expected == 2 else "stable"
        assert response.headers["x-config-rollout"] == f"{rollout['id']}; cohort={cohort}"
        assert response.headers["etag"] == f'"{expected}"'
    # X-Config-Cohort wins over X-Instance-ID.
    (inside,) = instances_in(service, 0, 30, prefix="team")
    (outside,) = instances_in(service, 30, 100, prefix="team")
    response = read(admin, service, {"X-Instance-ID": outside, "X-Config-Cohort": inside})
    assert response.json()["version"] == 2
    response = read(admin, service, {"X-Instance-ID": inside, "X-Config-Cohort": outside})
    assert response.json()["version"] == 1
    # Neither header: the stable version.
    response = read(admin, service)
    assert response.json()["version"] == 1
    assert response.headers["x-config-rollout"] == f"{rollout['id']}; cohort=stable"
    # The source, and conditional reads, per cohort too.
    response = read(admin, service, {"X-Instance-ID": inside, "Accept": "text/x-tsk"})
    assert response.text == "level = 2\n"
    response = read(admin, service, {"X-Instance-ID": inside, "If-None-Match": '"2"'})
    assert response.status_code == 304
    response = read(admin, service, {"X-Instance-ID": outside, "If-None-Match": '"2"'})
    assert response.status_code == 200 and response.json()["version"] == 1
    # The candidate's own version stays readable by number, without rollout state.
    response = admin.get(f"/v1/configs/{service}/{ENVIRONMENT}/versions/2")
    assert response.json()["kind"] == "rollout" and "rollout" not in response.json()


def test_long_polls_answer_each_cohort_its_version(server: ServerProcess, admin: httpx.Client) -> None:
    service = "polled"
    document(admin, service)
    start(admin, service, steps=[50, 100], bake_seconds=SLOW)
    (inside,) = instances_in(service, 0, 50)
    (outside,) = instances_in(service, 50, 100)
    with server.client(server.admin_token) as client:
        url = f"/v1/configs/{service}/{ENVIRONMENT}?wait=30"
        # An instance of the cohort that has the stable version gets the candidate at once.
        response = client.get(url, headers={"X-Instance-ID": inside, "If-None-Match": '"1"'})
        assert response.status_code == 200 and response.json()["version"] == 2
        # One outside it that has the stable version waits (here: for one second).
        began = time.monotonic()
        response = client.get(
            f"/v1/configs/{service}/{ENVIRONMENT}?wait=1",
            headers={"X-Instance-ID": outside, "If-None-Match": '"1"'},
        )
        assert response.status_code == 304 and time.monotonic() - began >= 0.9
        # And one of the cohort that has the candidate waits too.
        response = client.get(
            f"/v1/configs/{service}/{ENVIRONMENT}?wait=1",
            headers={"X-Instance-ID": inside, "If-None-Match": '"2"'},
        )
        assert response.status_code == 304 and response.headers["etag"] == '"2"'


def test_a_widening_step_wakes_exactly_the_waiters_that_move(
    server: ServerProcess, admin: httpx.Client
) -> None:
    service = "widened"
    document(admin, service)
    first, moving, last = (
        instances_in(service, 0, 10)[0],
        instances_in(service, 10, 60)[0],
        instances_in(service, 60, 100)[0],
    )
    start(admin, service, steps=[10, 60, 100], bake_seconds=2.0)
    polls = {
        "first": Poll(server, service, first, 2, 20),
        "moving": Poll(server, service, moving, 1, 20),
        "last": Poll(server, service, last, 1, 5),
    }
    for poll in polls.values():
        poll.start()
    assert wait_for(lambda: parked(server, 3), timeout=1.4), "the polls were not parked before the step"
    polls["moving"].join(timeout=15)
    assert polls["moving"].response is not None, "the step to 60 % did not wake its waiter"
    # Pause at once, before the next step moves the last one too.
    paused = admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/pause")
    assert paused.status_code == 200, paused.text
    assert (paused.json()["state"], paused.json()["percent"]) == ("paused", 60)
    response = polls["moving"].response
    assert response.status_code == 200 and response.json()["version"] == 2
    assert response.headers["x-config-rollout"].endswith("cohort=candidate")
    assert polls["first"].is_alive() and polls["last"].is_alive()
    # Abort: the cohort's waiters get the stable version; the others go on waiting.
    aborted = admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/abort")
    assert aborted.status_code == 200 and aborted.json()["state"] == "aborted"
    polls["first"].join(timeout=10)
    response = polls["first"].response
    assert response is not None and response.status_code == 200
    assert response.json()["version"] == 1 and "x-config-rollout" not in response.headers
    assert polls["last"].is_alive()
    polls["last"].join(timeout=15)
    assert polls["last"].response is not None and polls["last"].response.status_code == 304
    # Aborted: everyone reads the stable version; the candidate stays in history, and the next
    # push is numbered after it.
    assert read(admin, service, {"X-Instance-ID": first}).json()["version"] == 1
    history = admin.get(f"/v1/configs/{service}/{ENVIRONMENT}/versions").json()["versions"]
    assert history[0]["version"] == 2 and history[0]["rollout"]["state"] == "aborted"
    assert "rollout" not in history[1]
    assert push(admin, service, ENVIRONMENT, "level = 3\n").json()["version"] == 3


def test_failures_of_the_cohort_roll_back_at_once(server: ServerProcess, admin: httpx.Client) -> None:
    service = "failing"
    document(admin, service)
    rollout = start(admin, service, steps=[50, 100], bake_seconds=SLOW, max_failed=1)
    inside = instances_in(service, 0, 50, count=3)
    (outside,) = instances_in(service, 50, 100)
    waiter = Poll(server, service, inside[2], 2, 30)
    waiter.start()
    assert wait_for(lambda: parked(server, 1))

    def report(instance: str, **fields: Any) -> None:
        body = {
            "service": service,
            "environment": ENVIRONMENT,
            "instance_id": instance,
            "status": "failed",
            "version": 1,
            "failed_version": 2,
            "error": "ValueError: level must be odd",
            **fields,
        }
        response = admin.post("/v1/instances", json=body)
        assert response.status_code == 204, response.text

    # Outside the cohort: it never read the candidate from us, so it never rolls back.
    report(outside)
    report(outside + "-again", failed_version=2)
    report(inside[0])
    report(inside[0])  # the same instance twice counts once
    state = rollout_of(admin, service)
    assert state["state"] == "running" and state["counts"]["failed"] == 1
    # A failure of another version does not count either.
    report(inside[1], failed_version=1)
    assert rollout_of(admin, service)["state"] == "running"
    report(inside[1])
    state = rollout_of(admin, service)
    assert state["state"] == "rolled_back", state
    assert "2 instances failed to apply version 2" in state["reason"] and inside[1] in state["reason"]
    waiter.join(timeout=10)
    assert waiter.response is not None and waiter.response.json()["version"] == 1
    assert read(admin, service, {"X-Instance-ID": inside[0]}).json()["version"] == 1
    audit = admin.get("/v1/audit", params={"service": service}).json()["entries"]
    assert [entry["action"] for entry in audit][:2] == ["rollout_rolled_back", "rollout_start"]
    history = admin.get(f"/v1/configs/{service}/{ENVIRONMENT}/versions").json()["versions"]
    assert history[0]["rollout"] == {"id": rollout["id"], "state": "rolled_back"}
    # Over: plain pushes are taken again.
    assert push(admin, service, ENVIRONMENT, "level = 5\n").status_code == 201


def test_counts_show_the_cohort(admin: httpx.Client) -> None:
    service = "counted"
    document(admin, service)
    start(admin, service, steps=[50, 100], bake_seconds=SLOW, max_failed=5)
    applied, failed, pending = instances_in(service, 0, 50, count=3)
    (outside,) = instances_in(service, 50, 100)
    for instance, fields in (
        (applied, {"status": "applied", "version": 2}),
        (failed, {"status": "failed", "version": 1, "failed_version": 2}),
        (pending, {"status": "applied", "version": 1}),
        (outside, {"status": "applied", "version": 1}),
    ):
        body = {"service": service, "environment": ENVIRONMENT, "instance_id": instance, **fields}
        assert admin.post("/v1/instances", json=body).status_code == 204
    assert rollout_of(admin, service)["counts"] == {"applied": 1, "failed": 1, "pending": 1}


def test_a_rollout_completes_after_its_last_bake(admin: httpx.Client) -> None:
    service = "completed"
    document(admin, service)
    start(admin, service, steps=[50, 100], bake_seconds=0.3)
    assert wait_for(lambda: rollout_of(admin, service)["state"] == "completed")
    state = rollout_of(admin, service)
    assert (state["step"], state["percent"], state["reason"]) == (1, 100, "every step baked")
    response = read(admin, service)
    assert response.json()["version"] == 2 and "x-config-rollout" not in response.headers
    assert response.json()["kind"] == "rollout"
    actions = [entry["action"] for entry in admin.get("/v1/audit", params={"service": service}).json()["entries"]]
    assert actions[:3] == ["rollout_complete", "rollout_step", "rollout_start"]
    listed = admin.get("/v1/services").json()["services"]
    (entry,) = [item for item in listed if item["service"] == service]
    assert entry["environments"][ENVIRONMENT]["version"] == 2
    assert "rollout" not in entry["environments"][ENVIRONMENT]


def test_complete_by_hand_and_services_show_the_rollout(admin: httpx.Client) -> None:
    service = "finished"
    document(admin, service)
    rollout = start(admin, service, steps=[20, 100], bake_seconds=SLOW)
    listed = admin.get("/v1/services").json()["services"]
    (entry,) = [item for item in listed if item["service"] == service]
    assert entry["environments"][ENVIRONMENT]["version"] == 1
    assert entry["environments"][ENVIRONMENT]["rollout"] == {
        "id": rollout["id"], "state": "running", "percent": 20, "candidate": 2,
    }
    response = admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/complete")
    assert response.status_code == 200 and response.json()["state"] == "completed"
    assert read(admin, service).json()["version"] == 2


def test_pause_freezes_the_bake_clock(admin: httpx.Client) -> None:
    service = "paused"
    document(admin, service)
    start(admin, service, steps=[10, 100], bake_seconds=1.0)
    paused = admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/pause")
    assert paused.status_code == 200 and paused.json()["step_started_at"] is None
    assert_error(admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/pause"), 409, "conflict")
    time.sleep(1.3)
    assert rollout_of(admin, service)["step"] == 0
    resumed = admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    assert_error(admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/resume"), 409, "conflict")
    assert wait_for(lambda: rollout_of(admin, service)["step"] == 1, timeout=5)
    actions = [entry["action"] for entry in admin.get("/v1/audit", params={"service": service}).json()["entries"]]
    assert actions[:4] == ["rollout_step", "rollout_resume", "rollout_pause", "rollout_start"]


def test_plain_writes_and_a_second_rollout_are_refused_during_a_rollout(admin: httpx.Client) -> None:
    service = "guarded"
    document(admin, service)
    staging = push(admin, service, "staging", "level = 9\n")
    assert staging.status_code == 201
    start(admin, service, bake_seconds=SLOW)
    base = f"/v1/configs/{service}/{ENVIRONMENT}"
    body = assert_error(push(admin, service, ENVIRONMENT, "level = 7\n"), 409, "rollout_in_progress")
    assert body["details"][0]["state"] == "running"
    assert_error(admin.post(base + "/promote", json={"from": "staging"}), 409, "rollout_in_progress")
    assert_error(admin.post(base + "/rollback", json={"version": 1}), 409, "rollout_in_progress")
    assert_error(admin.post(base + "/rollouts", json={"source": "level = 8\n"}), 409, "rollout_in_progress")
    assert read(admin, service).json()["version"] == 1
    admin.post(base + "/rollout/abort")
    # Then a rollout from a promotion: staging's source, its provenance recorded.
    rollout = start(admin, service, source=None, **{"from": "staging"}, bake_seconds=SLOW)
    candidate = admin.get(base + f"/versions/{rollout['candidate']['version']}").json()
    assert candidate["promoted_from"] == {"environment": "staging", "version": 1}
    assert candidate["kind"] == "rollout"


def test_bad_plans_are_400_and_change_nothing(admin: httpx.Client) -> None:
    service = "planned"
    document(admin, service)
    base = f"/v1/configs/{service}/{ENVIRONMENT}"
    for plan, words in (
        ({"steps": [50, 10, 100]}, "increase"),
        ({"steps": [10, 50]}, "end at 100"),
        ({"steps": []}, "list of 1 to"),
        ({"steps": [0, 100]}, "from 1 to 100"),
        ({"steps": [10.5, 100]}, "whole percents"),
        ({"steps": "10,100"}, "list"),
        ({"bake_seconds": -1}, "bake_seconds"),
        ({"bake_seconds": "5m"}, "bake_seconds"),
        ({"bake_seconds": 10**9}, "bake_seconds"),
        ({"max_failed": -1}, "max_failed"),
        ({"max_failed": True}, "max_failed"),
        ({"max_failed": 1.5}, "max_failed"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"source": 5}, "source"),
        ({"source": "a = 1\n", "version": 1}, "one of"),
        ({"source": None}, "give the candidate"),
    ):
        body = {"source": "level = 2\n", **plan}
        if body["source"] is None:
            del body["source"]
        error = assert_error(admin.post(base + "/rollouts", json=body), 400, "bad_request")
        assert words in error["message"], (plan, error)
    assert_error(admin.post(base + "/rollouts", json={"source": "level = \n"}), 422, "invalid_tsk")
    assert_error(admin.post(base + "/rollouts", json={"version": 9}), 404, "not_found")
    assert_error(admin.post(base + "/rollouts", json={"source": "level = 1\n"}), 409, "conflict")
    assert_error(admin.get(base + "/rollout"), 404, "not_found")
    assert_error(admin.post(base + "/rollout/abort"), 409, "conflict")
    history = admin.get(base + "/versions").json()["versions"]
    assert [item["version"] for item in history] == [1]


def test_a_rollout_on_a_missing_document_is_409(admin: httpx.Client) -> None:
    created = admin.post("/v1/services", json={"service": "absent"})
    assert created.status_code in (200, 201, 404, 405)
    response = admin.post(f"/v1/configs/absent/{ENVIRONMENT}/rollouts", json={"source": "a = 1\n"})
    assert_error(response, 409, "conflict")


def test_a_reader_may_read_but_not_start_or_change_a_rollout(server: ServerProcess, admin: httpx.Client) -> None:
    service = "scoped"
    document(admin, service)
    start(admin, service, bake_seconds=SLOW)
    token = server.create_token("reader", [service], [ENVIRONMENT], name="rollout-reader")
    with server.client(token) as reader:
        assert rollout_of(reader, service)["state"] == "running"
        base = f"/v1/configs/{service}/{ENVIRONMENT}"
        assert_error(reader.post(base + "/rollouts", json={"source": "level = 3\n"}), 403, "forbidden")
        assert_error(reader.post(base + "/rollout/abort"), 403, "forbidden")


def _events(lines: Iterator[str], wanted: int, timeout: float = 10) -> list[tuple[str, dict[str, Any]]]:
    """(event type, data) of the next `wanted` events of a stream."""
    found: list[tuple[str, dict[str, Any]]] = []
    kind = "message"
    deadline = time.monotonic() + timeout
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            found.append((kind, json.loads(line[6:])))
            if len(found) == wanted:
                break
        if time.monotonic() > deadline:
            break
    return found


def test_event_streams_get_rollout_events_and_their_cohort_s_version(
    server: ServerProcess, admin: httpx.Client
) -> None:
    service = "streamed"
    document(admin, service)
    (inside,) = instances_in(service, 0, 50)
    (outside,) = instances_in(service, 50, 100)
    received: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    ready = threading.Barrier(3)

    def follow(instance: str, wanted: int) -> None:
        with server.client(server.admin_token, timeout=20) as client, client.stream(
            "GET", f"/v1/events?service={service}", headers={"X-Instance-ID": instance}
        ) as stream:
            lines = stream.iter_lines()
            next(lines)  # retry: 2000
            ready.wait(timeout=10)
            received[instance] = _events(lines, wanted)

    threads = [
        threading.Thread(target=follow, args=(inside, 3), daemon=True),
        threading.Thread(target=follow, args=(outside, 3), daemon=True),
    ]
    for thread in threads:
        thread.start()
    ready.wait(timeout=10)
    time.sleep(0.3)  # the streams are live (handed to the protocol) by now
    start(admin, service, steps=[50, 100], bake_seconds=SLOW)
    assert admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/complete").status_code == 200
    for thread in threads:
        thread.join(timeout=15)
    kinds_inside = [(kind, data.get("version"), data.get("state")) for kind, data in received[inside]]
    kinds_outside = [(kind, data.get("version"), data.get("state")) for kind, data in received[outside]]
    # The cohort gets the candidate with the start; everyone else with the completion.
    assert kinds_inside == [("version", 2, None), ("rollout", None, "running"), ("rollout", None, "completed")]
    assert kinds_outside == [("rollout", None, "running"), ("version", 2, None), ("rollout", None, "completed")]


def test_a_rollout_survives_a_restart_in_the_middle_of_a_bake(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync").start()
    service = "restarted"
    bake = 8.0
    try:
        with server.client(server.admin_token) as admin:
            document(admin, service)
            (inside,) = instances_in(service, 0, 50)
            (outside,) = instances_in(service, 50, 100)
            started = start(admin, service, steps=[50, 100], bake_seconds=bake)
        server.kill()  # no shutdown code runs
        time.sleep(2.0)  # down for a while: the bake clock goes on meanwhile
        server.start()
        with server.client(server.admin_token) as admin:
            state = rollout_of(admin, service)
            assert (state["state"], state["step"]) == ("running", 0)
            assert read(admin, service, {"X-Instance-ID": inside}).json()["version"] == 2
            assert read(admin, service, {"X-Instance-ID": outside}).json()["version"] == 1
            # The step comes when the stored clock says, not a whole bake after the restart.
            assert wait_for(lambda: rollout_of(admin, service)["step"] == 1, timeout=bake + 5)
            stepped = rollout_of(admin, service)
            took = (
                datetime.fromisoformat(stepped["step_started_at"].replace("Z", "+00:00"))
                - datetime.fromisoformat(started["started_at"].replace("Z", "+00:00"))
            ).total_seconds()
            assert bake <= took < bake + 2.0, took
            assert read(admin, service, {"X-Instance-ID": outside}).json()["version"] == 2
    finally:
        server.stop()


def test_a_schema_change_must_accept_the_candidate_too(admin: httpx.Client) -> None:
    service = "schemed"
    document(admin, service)
    start(admin, service, bake_seconds=SLOW)  # candidate: level = 2
    strict = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"level": {"type": "integer", "maximum": 1}},
    }
    refused = assert_error(admin.put(f"/v1/schemas/{service}", json=strict), 409, "schema_conflict")
    assert [(item["environment"], item["version"]) for item in refused["details"]] == [(ENVIRONMENT, 2)]
    assert refused["details"][0]["path"] == "/level"
    admin.post(f"/v1/configs/{service}/{ENVIRONMENT}/rollout/abort")
    # Aborted: the candidate is no document's answer any more, so the schema is taken.
    assert admin.put(f"/v1/schemas/{service}", json=strict).status_code == 201
