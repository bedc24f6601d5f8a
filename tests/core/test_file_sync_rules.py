"""The one-source-of-truth rule in the core (`config_service/core/file_sync.py`), on a real SQLite
store: every way a file change meets a document, without HTTP or a watcher (those are in
tests/sync/test_one_source_of_truth.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config_service.core.access import Principal
from config_service.core.refusals import Refused
from config_service.core.wiring import Core
from config_service.settings import Settings

ADMIN = Principal("t1", "admin", "admin", ("*",), ("*",))
WRITER = Principal("t2", "deployer", "writer", ("*",), ("staging",))


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    (tmp_path / "environments" / "staging").mkdir(parents=True)
    settings = Settings(
        data_dir=tmp_path / "data",
        environments_dir=tmp_path / "environments",
        sync=False,
        access_log=False,
        open_services=True,
    )
    server = Core(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _sync(core: Core, service: str = "api") -> Any:
    for entry in core.documents.services(ADMIN)["services"]:
        if entry["service"] == service:
            return entry["environments"].get("staging", {}).get("sync")
    return None


def _audit(core: Core, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = core.audit.listing(50, None, action=action)["entries"]
    return entries


def test_a_new_document_comes_from_its_file_and_the_file_leads_while_nothing_else_writes(core: Core) -> None:
    first = core.file_sync.apply("api", "staging", "a: 1\n")
    assert (first.status, first.version) == ("created", 1)
    assert core.file_sync.apply("api", "staging", "a: 2\n").status == "created"
    assert core.file_sync.apply("api", "staging", "a: 2\n").status == "unchanged"
    assert _sync(core) == {"state": "in_sync", "file": "staging/api.tsk", "file_version": 2}
    assert core.documents.current("api", "staging").record.kind == "sync"


def test_an_api_write_makes_the_next_file_change_a_conflict(core: Core) -> None:
    core.file_sync.apply("api", "staging", "a: 1\n")
    core.documents.push(ADMIN, "api", "staging", "a: 5\n")
    # The file as it was last synced: the API is ahead, no conflict.
    assert core.file_sync.apply("api", "staging", "a: 1\n").status == "unchanged"
    assert _sync(core) == {"state": "api_ahead", "file": "staging/api.tsk", "file_version": 1, "current_version": 2}
    change = core.file_sync.apply("api", "staging", "a: 2\n")
    assert (change.status, change.version, change.file_version) == ("conflict", 2, 1)
    refusal = change.conflict("api", "staging")
    assert refusal.code == "sync_conflict"
    assert "(current_version 2) since the file last gave it a version (file_version 1)" in refusal.message
    assert core.documents.current("api", "staging").record.source == "a: 5\n"
    assert _sync(core)["state"] == "conflict"
    (entry,) = _audit(core, "sync_conflict")
    assert entry["version"] == 2 and entry["detail"] == {
        "file": "staging/api.tsk", "file_version": 1, "current_version": 2
    }
    # Put back as last synced: no longer a conflict, the API still ahead.
    assert core.file_sync.apply("api", "staging", "a: 1\n").status == "unchanged"
    assert _sync(core)["state"] == "api_ahead"
    # Equal to the current source: in sync at the API's version; the file leads again.
    assert core.file_sync.apply("api", "staging", "a: 5\n").status == "unchanged"
    assert _sync(core) == {"state": "in_sync", "file": "staging/api.tsk", "file_version": 2}
    assert core.file_sync.apply("api", "staging", "a: 6\n").status == "created"


def test_an_invalid_file_is_refused_as_such_and_leaves_the_state_alone(core: Core) -> None:
    core.file_sync.apply("api", "staging", "a: 1\n")
    core.documents.push(ADMIN, "api", "staging", "a: 5\n")
    with pytest.raises(Refused) as refused:
        core.file_sync.apply("api", "staging", 'a: "\n')
    assert refused.value.code == "invalid_tsk"
    assert _sync(core)["state"] == "api_ahead"


def test_a_retired_document_or_one_the_api_made_is_in_conflict_with_a_changed_file(core: Core) -> None:
    core.file_sync.apply("api", "staging", "a: 1\n")
    core.documents.retire(ADMIN, "api", "staging")
    assert core.file_sync.apply("api", "staging", "a: 2\n").status == "conflict"
    with pytest.raises(Refused) as still_retired:
        core.documents.current("api", "staging")
    assert still_retired.value.code == "retired"
    (core.settings.environments_dir / "staging" / "api.tsk").write_text("a: 2\n", encoding="utf-8")
    # Taking the file revives the document.
    rendered, created = core.file_sync.take_file(WRITER, "api", "staging", "r-1")
    assert created and rendered.record.version == 3 and rendered.record.kind == "sync"
    assert _sync(core) == {"state": "in_sync", "file": "staging/api.tsk", "file_version": 3}
    (entry,) = _audit(core, "sync_take_file")
    assert (entry["actor"], entry["request_id"]) == ("deployer", "r-1")
    assert entry["detail"] == {"file": "staging/api.tsk", "file_version": 1, "current_version": 2, "created": True}
    # A document the API made, which no file backs, and a file that disagrees with it.
    core.documents.push(ADMIN, "web", "staging", "b: 1\n")
    assert _sync(core, "web") is None
    change = core.file_sync.apply("web", "staging", "b: 2\n")
    assert (change.status, change.file_version) == ("conflict", None)
    assert _sync(core, "web") == {
        "state": "conflict", "file": "staging/web.tsk", "file_version": None, "current_version": 1
    }


def test_taking_a_file_equal_to_the_current_source_ends_the_conflict_without_a_version(core: Core) -> None:
    core.file_sync.apply("api", "staging", "a: 1\n")
    core.documents.push(ADMIN, "api", "staging", "a: 5\n")
    core.file_sync.apply("api", "staging", "a: 2\n")
    (core.settings.environments_dir / "staging" / "api.tsk").write_text("a: 5\n", encoding="utf-8")
    rendered, created = core.file_sync.take_file(WRITER, "api", "staging")
    assert not created and rendered.record.version == 2
    assert _sync(core) == {"state": "in_sync", "file": "staging/api.tsk", "file_version": 2}
    with pytest.raises(Refused) as refused:
        core.file_sync.take_file(WRITER, "api", "staging")
    assert refused.value.code == "conflict"


def test_a_file_over_the_size_limit_or_not_utf8_is_refused_when_taken(core: Core) -> None:
    core.file_sync.apply("api", "staging", "a: 1\n")
    core.documents.push(ADMIN, "api", "staging", "a: 5\n")
    core.file_sync.apply("api", "staging", "a: 2\n")
    path = core.settings.environments_dir / "staging" / "api.tsk"
    path.write_bytes(b"a: 1\nb: \"\xff\"\n")
    with pytest.raises(Refused) as refused:
        core.file_sync.take_file(WRITER, "api", "staging")
    assert refused.value.code == "invalid_tsk" and refused.value.details[0]["line"] == 2
    path.write_bytes(b"a: " + b"1" * core.settings.max_body + b"\n")
    with pytest.raises(Refused) as refused:
        core.file_sync.take_file(WRITER, "api", "staging")
    assert refused.value.code == "too_large"
    assert core.documents.current("api", "staging").record.version == 2
    assert _sync(core)["state"] == "conflict"


def test_a_sync_state_that_moves_under_a_decision_is_decided_again(core: Core) -> None:
    core.file_sync.apply("api", "staging", "a: 1\n")
    core.documents.push(ADMIN, "api", "staging", "a: 5\n")
    rules = core.file_sync
    original = rules._synced
    calls = []

    def stale(service: str, environment: str, file: str) -> tuple[int | None, str | None]:
        calls.append(file)
        if len(calls) == 1:
            return 7, "a: 9\n"  # what another writer's state looked like a moment ago
        return original(service, environment, file)

    rules._synced = stale  # type: ignore[method-assign]
    assert rules.apply("api", "staging", "a: 1\n").status == "unchanged"
    assert len(calls) == 2
    assert _sync(core)["state"] == "api_ahead"
