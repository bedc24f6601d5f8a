"""AdminClient against a real server: every call the `tskcfg` command makes, from Python."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from clienttest import ROOT, LiveServer, free_port

from tskcfg import (
    AdminClient,
    NoPreviousVersion,
    NotFound,
    RequestRejected,
    ServerUnavailable,
    Unauthorized,
)


@pytest.fixture
def admin(server: LiveServer) -> Iterator[AdminClient]:
    with AdminClient(server.url, server.token) as client:
        yield client


def test_push_get_source_and_history_page_by_page(admin: AdminClient) -> None:
    for value in range(1, 6):
        written = admin.push("admin-api", "development", f"value: {value}\n", message=f"v{value}")
        assert written.created and written.body["version"] == value
    again = admin.push("admin-api", "development", "value: 5\n")
    assert not again.created and again.body["version"] == 5
    current = admin.get("admin-api", "development")
    assert (current["version"], current["config"]) == (5, {"value": 5})
    assert admin.get("admin-api", "development", version=2)["config"] == {"value": 2}
    assert admin.source("admin-api", "development", 3) == "value: 3\n"
    # Pages of two, followed through next_before as the iteration goes on.
    versions = [meta["version"] for meta in admin.history("admin-api", "development", page_size=2)]
    assert versions == [5, 4, 3, 2, 1]
    older = admin.history("admin-api", "development", before=4, page_size=2)
    assert [meta["message"] for meta in itertools.islice(older, 2)] == ["v3", "v2"]


def test_a_refusal_carries_the_servers_code_message_and_details(admin: AdminClient) -> None:
    with pytest.raises(RequestRejected) as refused:
        admin.push("admin-bad", "development", "a: [1,\n")
    error = refused.value
    assert (error.status, error.code) == (422, "invalid_tsk")
    assert error.details and error.details[0]["line"] >= 1
    assert error.body["error"] == "invalid_tsk" and "(422 from PUT " in str(error)
    with pytest.raises(RequestRejected) as conflict:
        admin.push("admin-api-cas", "development", "a: 1\n", if_version=3)
    assert (conflict.value.status, conflict.value.code) == (412, "precondition_failed")


def test_names_are_checked_before_anything_is_sent(admin: AdminClient) -> None:
    for service in ("user-service\n", "User-Service", "../etc"):
        with pytest.raises(ValueError, match="is not valid"):
            admin.get(service, "development")


def test_diff_versions_and_environments(admin: AdminClient) -> None:
    for value in (1, 2, 3):
        admin.push("admin-diff", "development", f"value: {value}\n")
    last = admin.diff("admin-diff", "development")
    assert (last["from"]["version"], last["to"]["version"]) == (2, 3)
    assert last["changes"] == [{"op": "change", "path": "/value", "old": 2, "new": 3}]
    assert admin.diff("admin-diff", "development", from_version=1)["from"]["version"] == 1
    admin.push("admin-diff", "staging", "value: 1\n")
    with pytest.raises(NoPreviousVersion, match="no version before version 1"):
        admin.diff("admin-diff", "staging")
    across = admin.diff_environments("admin-diff", "staging", "development")
    assert (across["from"]["environment"], across["to"]["environment"]) == ("staging", "development")
    assert [change["path"] for change in across["changes"]] == ["/value"]


def test_rollback_and_promote_with_a_dry_run(admin: AdminClient) -> None:
    admin.push("admin-flow", "development", "value: 1\n")
    admin.push("admin-flow", "development", "value: 2\n")
    rolled = admin.rollback("admin-flow", "development", 1, message="back")
    assert rolled.created and rolled.body["rolled_back_to"] == 1
    dry = admin.promote("admin-flow", "staging", from_environment="development", dry_run=True)
    assert dry.body["would_create"] is True and not dry.created
    with pytest.raises(NotFound):
        admin.get("admin-flow", "staging")
    promoted = admin.promote("admin-flow", "staging", from_environment="development")
    assert promoted.created and promoted.body["promoted_from"]["environment"] == "development"
    with pytest.raises(RequestRejected) as skipped:
        admin.promote("admin-flow", "production", from_environment="development")
    assert skipped.value.code == "conflict"


def test_an_unknown_service_is_named_with_the_nearest_one(admin: AdminClient) -> None:
    admin.push("admin-known", "development", "a: 1\n")
    with pytest.raises(NotFound) as unknown:
        admin.get("admin-knwn", "development")
    assert unknown.value.code == "unknown_service"
    assert str(unknown.value) == "unknown service 'admin-knwn' (did you mean 'admin-known'?)"
    with pytest.raises(NotFound, match="unknown service"):
        list(admin.history("admin-knwn", "development"))


def test_services_instances_schemas_tokens_and_audit(admin: AdminClient, server: LiveServer) -> None:
    admin.push("admin-list", "development", "a: 1\n")
    names = [entry["service"] for entry in admin.services()["services"]]
    assert "admin-list" in names
    assert admin.instances("admin-list", "development")["instances"] == []
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    stored = admin.put_schema("admin-list", schema)
    assert stored.created and not admin.put_schema("admin-list", schema).created
    assert admin.schema("admin-list")["schema"] == schema
    created = admin.create_token("admin-ci", "writer", ["admin-*"], ["development"])
    assert created["token"] and created["role"] == "writer"
    assert any(token["name"] == "admin-ci" for token in admin.tokens()["tokens"])
    ci = AdminClient(server.url, created["token"])
    assert ci.push("admin-list", "development", "a: 2\n").created
    admin.revoke_token(created["id"])
    with pytest.raises(Unauthorized):
        ci.services()
    ci.close()
    pushes = list(admin.audit(service="admin-list", action="push", page_size=1))
    assert [entry["actor"] for entry in pushes[:2]] == ["admin-ci", "admin"]
    assert list(admin.audit(since=datetime.now(UTC) + timedelta(hours=1))) == []


def test_events_resume_after_the_last_one_read(admin: AdminClient) -> None:
    admin.push("admin-events", "development", "a: 1\n")
    with admin.events("admin-events", "development") as stream:
        threading.Timer(0.2, admin.push, ("admin-events", "development", "a: 2\n")).start()
        event = next(event for event in stream if event.event == "version")
    assert json.loads(event.data)["version"] == 2 and event.id is not None
    admin.push("admin-events", "development", "a: 3\n")
    with admin.events("admin-events", "development", last_event_id=event.id) as stream:
        replayed = next(event for event in stream if event.event == "version")
    assert json.loads(replayed.data)["version"] == 3


def test_no_server_a_bad_url_and_a_bad_token() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with AdminClient(nowhere, "t") as admin, pytest.raises(ServerUnavailable) as unreachable:
        admin.services()
    assert unreachable.value.status is None
    assert str(unreachable.value) == (
        f"cannot reach the config server at {nowhere}/v1/services: "
        "the connection was refused or the host is unknown"
    )
    with pytest.raises(ValueError, match="is not valid"):
        AdminClient("ftp://example")


def test_an_answer_that_is_not_the_api_is_a_server_unavailable() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>welcome</html>"))
    with AdminClient("http://config.test", "t", transport=transport) as admin:
        with pytest.raises(ServerUnavailable) as bad:
            admin.services()
    assert (bad.value.status, bad.value.code) == (200, "bad_response")


def test_the_documented_example_runs_as_written(server: LiveServer, tmp_path: Path) -> None:
    text = (ROOT / "docs" / "client.md").read_text(encoding="utf-8")
    start = text.index("## Operating from Python: `AdminClient`")
    code, printed = re.findall(r"```(?:python)?\n(.*?)```", text[start:], re.DOTALL)[:2]
    (tmp_path / "operate.py").write_text(code.replace("http://localhost:8005", server.url))
    result = subprocess.run(
        [sys.executable, "operate.py"],
        cwd=tmp_path,
        env={**os.environ, "TSKCFG_TOKEN": server.token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
