"""End-to-end: one source of truth per document. A real `tskcfg serve` with real files under
environments/ and its real watcher: a file change after the document moved on through the API
is a sync conflict (nothing applied, logged, audited, shown by /v1/services and `tskcfg
services`), and the two ways out of it (the file made equal to the current source, or taken);
the same rule at start; deleting a file changes nothing."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import TSKCFG, USER_SERVICE, ServerProcess, assert_error, make_root, push

FILE = "staging/user-service.tsk"


def _wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _sync(admin: httpx.Client, service: str = "user-service", environment: str = "staging") -> Any:
    for entry in admin.get("/v1/services").json()["services"]:
        if entry["service"] == service:
            return entry["environments"].get(environment, {}).get("sync")
    return None


def _current(admin: httpx.Client, service: str = "user-service") -> dict[str, Any]:
    body: dict[str, Any] = admin.get(f"/v1/configs/{service}/staging").json()
    return body


def _source(admin: httpx.Client) -> str:
    return admin.get("/v1/configs/user-service/staging", headers={"Accept": "text/x-tsk"}).text


def _audit(admin: httpx.Client, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = admin.get("/v1/audit", params={"action": action}).json()["entries"]
    return entries


def _tskcfg(server: ServerProcess, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TSKCFG), "--server", server.url, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TSKCFG_TOKEN": server.admin_token},
        check=False,
    )


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """A server whose user-service/staging came from its file (version 1)."""
    root = make_root(tmp_path)
    document = root / "environments" / FILE
    document.write_text(USER_SERVICE, encoding="utf-8")
    server = ServerProcess(root, "--no-access-log").start()
    try:
        yield server, document
    finally:
        server.stop()


def _conflict(server: ServerProcess, document: Path, admin: httpx.Client) -> None:
    """API push (version 2), then a file edit: the edit waits as a conflict."""
    pushed = push(admin, "user-service", "staging", USER_SERVICE.replace("pool_size: 20", "pool_size: 3"))
    assert pushed.status_code == 201 and pushed.json()["version"] == 2
    assert _sync(admin) == {"state": "api_ahead", "file": FILE, "file_version": 1, "current_version": 2}
    document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 10"), encoding="utf-8")
    _wait_for(lambda: (_sync(admin) or {}).get("state") == "conflict")


def test_a_file_edit_after_an_api_push_is_a_conflict_that_ends_when_the_file_equals_the_source(
    synced: tuple[ServerProcess, Path],
) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        assert _sync(admin) == {"state": "in_sync", "file": FILE, "file_version": 1}
        _conflict(server, document, admin)
        # Nothing applied: the API's version stays.
        current = _current(admin)
        assert current["version"] == 2 and current["kind"] == "push"
        assert current["config"]["database"]["pool_size"] == 3
        assert _sync(admin) == {"state": "conflict", "file": FILE, "file_version": 1, "current_version": 2}
        # The audit log and the server's log name both versions.
        (entry,) = _audit(admin, "sync_conflict")
        assert entry["actor"] == f"file:{FILE}" and entry["service"] == "user-service"
        assert entry["detail"] == {"file": FILE, "file_version": 1, "current_version": 2}
        assert "(current_version 2) since the file last gave it a version (file_version 1)" in server.log()
        # `tskcfg services` shows it.
        listed = _tskcfg(server, "services")
        assert listed.returncode == 0, listed.stderr
        assert "CONFLICT" in listed.stdout
        assert "user-service/staging: sync conflict" in listed.stdout
        assert "file_version 1, current_version 2" in listed.stdout
        # More edits while in conflict change nothing either.
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 11"), encoding="utf-8")
        _wait_for(lambda: len(_audit(admin, "sync_conflict")) == 2)
        assert _current(admin)["version"] == 2
        # Way out: the file made equal to the current source (`tskcfg get ... > file`).
        with document.open("w", encoding="utf-8") as out:
            got = subprocess.run(
                [str(TSKCFG), "--server", server.url, "get", "user-service", "staging"],
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                env={**os.environ, "TSKCFG_TOKEN": server.admin_token},
                check=False,
            )
        assert got.returncode == 0, got.stderr
        _wait_for(lambda: (_sync(admin) or {}).get("state") == "in_sync")
        assert _sync(admin) == {"state": "in_sync", "file": FILE, "file_version": 2}
        assert _current(admin)["version"] == 2  # no new version: they agree
        assert "CONFLICT" not in _tskcfg(server, "services").stdout
        # From now on the file leads again: its next edit is applied.
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 4"), encoding="utf-8")
        _wait_for(lambda: _current(admin)["version"] == 3)
        current = _current(admin)
        assert current["kind"] == "sync" and current["author"] == f"file:{FILE}"
        assert current["config"]["database"]["pool_size"] == 4
        assert _sync(admin) == {"state": "in_sync", "file": FILE, "file_version": 3}


def test_taking_the_file_ends_a_conflict_with_a_new_version(synced: tuple[ServerProcess, Path]) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        # No conflict yet: 409, nothing changes.
        refused = assert_error(admin.post("/v1/configs/user-service/staging/sync", json={"take": "file"}), 409, "conflict")
        assert "not in a sync conflict" in refused["message"]
        _conflict(server, document, admin)
        # Only a writer in scope, and only {"take": "file"}.
        reader = server.create_token("reader", ["user-service"], ["staging"])
        other = server.create_token("writer", ["user-service"], ["production"])
        writer = server.create_token("writer", ["user-*"], ["staging"], name="deployer")
        for token in (reader, other):
            with server.client(token) as client:
                assert_error(client.post("/v1/configs/user-service/staging/sync", json={"take": "file"}), 403, "forbidden")
        with server.client(writer) as client:
            for body in ({"take": "api"}, {}, {"take": "file", "force": True}):
                assert_error(client.post("/v1/configs/user-service/staging/sync", json=body), 400, "bad_request")
            assert_error(
                client.post("/v1/configs/user-service/staging/sync", content=b"take=file",
                            headers={"Content-Type": "text/plain"}),
                415,
                "unsupported_media_type",
            )
            # A file that breaks the schema is reported as such by file sync, and refused like a
            # push when taken: still in conflict.
            broken = USER_SERVICE.replace("pool_size: 20", "pool_size: 0")
            document.write_text(broken, encoding="utf-8")
            _wait_for(lambda: len(_audit(admin, "sync_failed")) == 1)
            body = assert_error(client.post("/v1/configs/user-service/staging/sync", json={"take": "file"}), 422, "schema_violation")
            assert body["details"][0]["path"] == "/database/pool_size"
            assert _current(admin)["version"] == 2
            assert _sync(admin)["state"] == "conflict"
            # The file fixed: taken as version 3, kind sync, audited with who took it.
            document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 10"), encoding="utf-8")
            _wait_for(lambda: len(_audit(admin, "sync_conflict")) == 2)
            taken = client.post("/v1/configs/user-service/staging/sync", json={"take": "file"})
            assert taken.status_code == 201, taken.text
            assert taken.json()["version"] == 3 and taken.json()["kind"] == "sync"
            # Taken once: there is no conflict left to take.
            assert_error(client.post("/v1/configs/user-service/staging/sync", json={"take": "file"}), 409, "conflict")
        current = _current(admin)
        assert current["version"] == 3 and current["config"]["database"]["pool_size"] == 10
        assert current["author"] == f"file:{FILE}" and "deployer" in current["message"]
        assert _sync(admin) == {"state": "in_sync", "file": FILE, "file_version": 3}
        (entry,) = _audit(admin, "sync_take_file")
        assert entry["actor"] == "deployer" and entry["version"] == 3
        assert entry["detail"] == {"file": FILE, "file_version": 1, "current_version": 2, "created": True}
        # And the file leads again.
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 12"), encoding="utf-8")
        _wait_for(lambda: _current(admin)["version"] == 4)
        # A document no file backs has no sync state, and nothing to take: 404.
        assert push(admin, "user-service", "production", USER_SERVICE).status_code == 201
        production = next(
            entry for entry in admin.get("/v1/services").json()["services"] if entry["service"] == "user-service"
        )["environments"]["production"]
        assert "sync" not in production
        missing = assert_error(admin.post("/v1/configs/user-service/production/sync", json={"take": "file"}), 404, "not_found")
        assert "production/user-service.tsk" in missing["message"]
        # Names are checked before any file is looked for.
        assert_error(admin.post("/v1/configs/user-service/qa/sync", json={"take": "file"}), 404, "unknown_environment")
        assert_error(admin.post("/v1/configs/User..Service/staging/sync", json={"take": "file"}), 422, "invalid_name")


def test_tskcfg_sync_take_file_and_its_refusals(synced: tuple[ServerProcess, Path]) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        not_yet = _tskcfg(server, "sync", "take-file", "user-service", "staging")
        assert not_yet.returncode == 1 and "not in a sync conflict" in not_yet.stderr
        _conflict(server, document, admin)
        taken = _tskcfg(server, "sync", "take-file", "user-service", "staging")
        assert taken.returncode == 0, taken.stderr
        assert "user-service/staging: the file is now version 3" in taken.stdout
        assert _current(admin)["config"]["database"]["pool_size"] == 10
        no_file = _tskcfg(server, "sync", "take-file", "user-service", "production")
        assert no_file.returncode == 1 and "production/user-service.tsk" in no_file.stderr


def test_the_rule_holds_at_start(synced: tuple[ServerProcess, Path]) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        assert push(admin, "user-service", "staging", USER_SERVICE.replace("pool_size: 20", "pool_size: 3")).status_code == 201
    # A restart with the file unchanged: the API is ahead, no conflict.
    server.stop()
    server.start()
    with server.client(server.admin_token) as admin:
        assert _current(admin)["version"] == 2
        assert _sync(admin) == {"state": "api_ahead", "file": FILE, "file_version": 1, "current_version": 2}
        assert _audit(admin, "sync_conflict") == []
    # The file edited while the server is down: a conflict at start, not an overwrite.
    server.stop()
    document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 10"), encoding="utf-8")
    server.start()
    with server.client(server.admin_token) as admin:
        current = _current(admin)
        assert current["version"] == 2 and current["config"]["database"]["pool_size"] == 3
        assert _sync(admin) == {"state": "conflict", "file": FILE, "file_version": 1, "current_version": 2}
        (entry,) = _audit(admin, "sync_conflict")
        assert entry["detail"] == {"file": FILE, "file_version": 1, "current_version": 2}
    # Put back as it was last synced while the server is down: the conflict is over.
    server.stop()
    document.write_text(USER_SERVICE, encoding="utf-8")
    server.start()
    with server.client(server.admin_token) as admin:
        assert _current(admin)["version"] == 2
        assert _sync(admin) == {"state": "api_ahead", "file": FILE, "file_version": 1, "current_version": 2}
        # A file for a document the API made (none backed it) that disagrees: a conflict too.
        assert push(admin, "user-service", "production", USER_SERVICE).status_code == 201
    server.stop()
    (document.parent.parent / "production" / "user-service.tsk").write_text(
        USER_SERVICE.replace("pool_size: 20", "pool_size: 30"), encoding="utf-8"
    )
    server.start()
    with server.client(server.admin_token) as admin:
        assert admin.get("/v1/configs/user-service/production").json()["version"] == 1
        assert _sync(admin, environment="production") == {
            "state": "conflict",
            "file": "production/user-service.tsk",
            "file_version": None,
            "current_version": 1,
        }


def test_deleting_a_file_changes_nothing(synced: tuple[ServerProcess, Path]) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        _conflict(server, document, admin)
        document.unlink()
        time.sleep(1.0)  # past the watcher's 300 ms window
        assert _current(admin)["version"] == 2
        assert _sync(admin) == {"state": "conflict", "file": FILE, "file_version": 1, "current_version": 2}
        assert "was deleted; its document keeps its current version" in server.log()
        # With the file gone there is nothing to take.
        assert_error(admin.post("/v1/configs/user-service/staging/sync", json={"take": "file"}), 404, "not_found")
    server.stop()
    server.start()
    with server.client(server.admin_token) as admin:
        assert _current(admin)["version"] == 2
        assert _sync(admin)["state"] == "conflict"


def test_a_file_change_during_a_rollout_is_held_as_a_conflict_until_it_ends(
    synced: tuple[ServerProcess, Path],
) -> None:
    server, document = synced
    base = "/v1/configs/user-service/staging"
    with server.client(server.admin_token) as admin:
        started = admin.post(
            base + "/rollouts",
            json={"source": USER_SERVICE.replace("pool_size: 20", "pool_size: 5"), "steps": [50, 100],
                  "bake_seconds": 3600},
        )
        assert started.status_code == 201, started.text
        rollout = started.json()["id"]
        # The file is the stable version's source, but a rollout runs: its change is held.
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 10"), encoding="utf-8")
        _wait_for(lambda: (_sync(admin) or {}).get("state") == "conflict")
        (entry,) = _audit(admin, "sync_conflict")
        assert entry["detail"] == {"file": FILE, "file_version": 1, "current_version": 1, "rollout": rollout}
        assert f"is in rollout {rollout}" in server.log()
        assert f"user-service/staging: sync conflict: {FILE} changed during rollout {rollout}" in (
            _tskcfg(server, "services").stdout
        )
        assert admin.get(base).json()["config"]["database"]["pool_size"] == 20
        # Taking the file is a plain write: refused while the rollout runs.
        assert_error(admin.post(base + "/sync", json={"take": "file"}), 409, "rollout_in_progress")
        assert admin.post(base + "/rollout/abort").status_code == 200
        # The rollout over, the conflict stays until someone ends it: taking the file does.
        assert _sync(admin)["state"] == "conflict"
        taken = admin.post(base + "/sync", json={"take": "file"})
        assert taken.status_code == 201, taken.text
        assert admin.get(base).json()["config"]["database"]["pool_size"] == 10
        assert _sync(admin) == {"state": "in_sync", "file": FILE, "file_version": taken.json()["version"]}
