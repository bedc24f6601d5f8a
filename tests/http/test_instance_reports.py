"""End-to-end: instance reports only for documents that exist, bounded per document and per
token, each field bounded; a failed apply shows what the instance runs and what failed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import ServerProcess, assert_error, make_root, push

PER_MINUTE = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        make_root(tmp_path_factory.mktemp("instances")),
        "--no-sync",
        environ={
            "TSKCFG_MAX_INSTANCES": "3",
            "TSKCFG_INSTANCE_REPORTS_PER_MINUTE": str(PER_MINUTE),
            "TSKCFG_INSTANCE_REPORT_INTERVAL": "0.2",  # stale after 0.6 s
        },
        open_services=True,
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def reader(server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A fresh reader token per test: the per-token count starts at zero."""
    token = server.create_token("reader", ["*"], ["*"], name=request.node.name[:60])
    with server.client(token) as client:
        yield client


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(server.admin_token) as client:
        yield client


def _report(service: str, instance_id: str, status: str = "applied", **fields: Any) -> dict[str, Any]:
    return {"service": service, "environment": "staging", "instance_id": instance_id, "status": status, **fields}


def _listed(client: httpx.Client, service: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/v1/configs/{service}/staging/instances")
    assert response.status_code == 200, response.text
    return {item["instance_id"]: item for item in response.json()["instances"]}


def test_a_report_on_a_document_that_does_not_exist_is_404_and_stores_nothing(
    admin: httpx.Client, reader: httpx.Client
) -> None:
    assert push(admin, "ghost", "development", "n: 1\n").status_code == 201
    for service in ("ghost", "never-pushed"):
        response = reader.post("/v1/instances", json=_report(service, "i-1", version=1))
        assert "exist" in assert_error(response, 404, "not_found")["message"]
    assert push(admin, "ghost", "staging", "n: 1\n").status_code == 201
    assert _listed(reader, "ghost") == {}


def test_a_report_naming_a_version_that_does_not_exist_is_404_and_stores_nothing(
    admin: httpx.Client, reader: httpx.Client
) -> None:
    # Otherwise any reader could list instances running made-up versions (and so "behind").
    for number in (1, 2):
        assert push(admin, "made-up", "staging", f"n: {number}\n").status_code == 201
    for fields in ({"version": 9}, {"version": 0}, {"status": "failed", "version": 2, "failed_version": 7}):
        response = reader.post("/v1/instances", json=_report("made-up", "i-1", **fields))
        number = fields.get("failed_version", fields["version"])
        message = assert_error(response, 404, "not_found")["message"]
        assert f"no version {number}," in message, message
    assert _listed(reader, "made-up") == {}
    # An older version that exists is taken (the instance is behind), and so is the current one.
    assert reader.post("/v1/instances", json=_report("made-up", "old", version=1)).status_code == 204
    assert reader.post("/v1/instances", json=_report("made-up", "new", version=2)).status_code == 204
    listed = _listed(reader, "made-up")
    assert (listed["old"]["behind"], listed["new"]["behind"]) == (True, False)


def test_a_failed_apply_shows_the_version_run_and_the_one_that_failed(
    admin: httpx.Client, reader: httpx.Client
) -> None:
    for number in (1, 2, 3, 4):
        assert push(admin, "fleet", "staging", f"n: {number}\n").status_code == 201
    four = admin.get("/v1/configs/fleet/staging").json()["hash"]
    assert reader.post("/v1/instances", json=_report("fleet", "a", version=4, hash=four)).status_code == 204
    assert push(admin, "fleet", "staging", "n: 5\n").status_code == 201
    five = admin.get("/v1/configs/fleet/staging").json()["hash"]
    # The client's form: what it runs, and what it could not apply.
    failed = _report("fleet", "a", "failed", version=4, hash=four, failed_version=5, failed_hash=five, error="boom")
    assert reader.post("/v1/instances", json=failed).status_code == 204
    # The older form, without failed_version: `version` is the one that failed.
    older = _report("fleet", "b", version=4, hash=four)
    assert reader.post("/v1/instances", json=older).status_code == 204
    older_failed = _report("fleet", "b", "failed", version=5, hash=five, error="boom")
    assert reader.post("/v1/instances", json=older_failed).status_code == 204
    listed = _listed(reader, "fleet")
    for instance_id in ("a", "b"):
        item = listed[instance_id]
        assert set(item) == {
            "instance_id", "version", "hash", "status", "error", "failed_version", "last_seen", "stale", "behind"
        }
        assert (item["version"], item["hash"], item["failed_version"]) == (4, four, 5), item
        assert (item["status"], item["error"], item["behind"]) == ("failed", "boom", True), item
    stopped = _report("fleet", "a", "stopped", version=4, hash=four)
    assert reader.post("/v1/instances", json=stopped).status_code == 204
    assert _listed(reader, "fleet")["a"]["status"] == "stopped"
    assert _listed(reader, "fleet")["a"]["failed_version"] is None
    wrong = _report("fleet", "a", "applied", version=5, failed_version=5)
    assert "failed" in assert_error(reader.post("/v1/instances", json=wrong), 400, "bad_request")["message"]


def test_a_document_keeps_a_bounded_number_of_instances(
    admin: httpx.Client, reader: httpx.Client
) -> None:
    assert push(admin, "crowd", "staging", "n: 1\n").status_code == 201
    for index in range(3):
        assert reader.post("/v1/instances", json=_report("crowd", f"i-{index}", version=1)).status_code == 204
    response = reader.post("/v1/instances", json=_report("crowd", "i-3", version=1))
    assert "3 instances" in assert_error(response, 429, "too_many_instances")["message"]
    # Known instances still report.
    assert reader.post("/v1/instances", json=_report("crowd", "i-0", version=1)).status_code == 204
    assert set(_listed(reader, "crowd")) == {"i-0", "i-1", "i-2"}
    # Once one has been silent for three report intervals (stale), a new one takes its place.
    time.sleep(0.7)
    assert reader.post("/v1/instances", json=_report("crowd", "i-3", version=1)).status_code == 204
    assert len(_listed(reader, "crowd")) == 3


def test_a_token_sends_a_bounded_number_of_reports_a_minute(
    server: ServerProcess, admin: httpx.Client, reader: httpx.Client
) -> None:
    assert push(admin, "chatty", "staging", "n: 1\n").status_code == 201
    report = _report("chatty", "i-1", version=1)
    for _ in range(PER_MINUTE):
        assert reader.post("/v1/instances", json=report).status_code == 204
    response = reader.post("/v1/instances", json=report)
    assert f"{PER_MINUTE} instance reports" in assert_error(response, 429, "too_many_requests")["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    other = server.create_token("reader", ["chatty"], ["staging"], name="another-reader")
    with server.client(other) as client:
        assert client.post("/v1/instances", json=report).status_code == 204


def test_each_field_of_a_report_is_bounded(
    server: ServerProcess, admin: httpx.Client, reader: httpx.Client
) -> None:
    assert push(admin, "verbose", "staging", "n: 1\n").status_code == 201
    database = Path(server.data_dir)

    def stored_bytes() -> int:
        return sum(path.stat().st_size for path in database.glob("config.db*"))

    before = stored_bytes()
    error = "\u00e9" * 500_000  # 1 MB of UTF-8
    for index in range(10):
        report = _report("verbose", f"i-{index % 3}", "failed", version=1, error=error)
        assert reader.post("/v1/instances", json=report).status_code == 204
    listed = _listed(reader, "verbose")
    assert all(len(item["error"].encode("utf-8")) == 2048 for item in listed.values())
    assert stored_bytes() - before < 512 * 1024
    for bad in (
        _report("verbose", "i" * 201),
        _report("verbose", "i\x1b[2J"),
        _report("verbose", "i-1", hash="h" * 129),
        _report("verbose", "i-1", cohort="c" * 201),
        _report("verbose", "i-1", "failed", failed_version=-1),
    ):
        assert_error(reader.post("/v1/instances", json=bad), 400, "bad_request")
