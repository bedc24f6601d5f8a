"""The SQLite store without HTTP: group commit, savepoints per write, listeners in commit order."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from config_service.store import (
    AuditEntry,
    NewVersion,
    PreconditionFailed,
    SqliteStore,
    Transaction,
)


def _new(service: str, source: str) -> NewVersion:
    return NewVersion(service, "staging", source, "{}", "hash-" + source, "tester", None, "")


def test_concurrent_writes_get_distinct_numbers_and_failures_stay_their_own(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    committed: list[tuple[str, int]] = []
    store.add_commit_listener(lambda records: committed.extend((r.service, r.version) for r in records))
    try:
        results: dict[int, object] = {}

        def write(index: int) -> None:
            if index % 5 == 0:
                # Create-only on a document that exists: refused, without touching the others.
                operation = lambda transaction: transaction.append_version(  # noqa: E731
                    _new("shared", f"refused {index}"), 0, None
                )
            else:
                operation = lambda transaction: transaction.append_version(  # noqa: E731
                    _new("shared", f"source {index}"), None, AuditEntry(actor="tester", action="push")
                )
            try:
                results[index] = store.write(operation)
            except PreconditionFailed as failure:
                results[index] = failure

        store.append_version(_new("shared", "first"), 0, None)
        threads = [threading.Thread(target=write, args=(index,)) for index in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        refused = [index for index, result in results.items() if isinstance(result, PreconditionFailed)]
        assert sorted(refused) == list(range(0, 40, 5))
        versions = sorted(result[0].version for result in results.values() if isinstance(result, tuple))
        assert versions == list(range(2, 34))
        history = store.list_versions("shared", "staging", 100, None)
        assert [record.version for record in history] == list(range(33, 0, -1))
        stored = [store.get_version("shared", "staging", record.version) for record in history]
        assert not any(record is None or record.source.startswith("refused") for record in stored)
        # Listeners saw every created version once, in commit order.
        assert committed == [("shared", number) for number in range(1, 34)]
        assert len(store.list_audit(100, None, action="push")) == 32
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_an_operation_that_raises_undoes_only_its_own_changes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    try:
        def half_done(transaction: Transaction) -> None:
            transaction.append_version(_new("undone", "a"), None, None)
            raise ValueError("changed my mind")

        with pytest.raises(ValueError):
            store.write(half_done)
        assert store.current_version("undone", "staging") is None
        record, created = store.append_version(_new("undone", "b"), None, None)
        assert created and record.version == 1
        again, created_again = store.append_version(_new("undone", "b"), None, None)
        assert not created_again and again.version == 1
    finally:
        store.close()
    with pytest.raises(RuntimeError):
        store.append_version(_new("closed", "a"), None, None)


def test_writes_waiting_together_share_one_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    batches: list[int] = []
    store.add_commit_listener(lambda records: batches.append(len(records)))
    try:
        release = threading.Event()
        blocking = store.submit(lambda transaction: release.wait(10))
        waiting = [
            store.submit(
                lambda transaction, number=number: transaction.append_version(
                    _new(f"grouped-{number}", "a"), None, None
                )
            )
            for number in range(10)
        ]
        release.set()
        assert blocking.result(timeout=10) is True
        assert all(future.result(timeout=10)[1] for future in waiting)
        # The ten writes queued behind the first were committed as one batch: one listener call.
        assert batches == [10]
    finally:
        store.close()


def test_instances_per_document_are_bounded_oldest_forgotten_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config_service import store as store_module

    monkeypatch.setattr(store_module, "MAX_INSTANCES_PER_DOCUMENT", 3)
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    try:
        for index in range(5):
            store.record_instance("svc", "staging", f"host-{index}", 1, "h", "applied", None)
        store.record_instance("svc", "production", "other", 1, "h", "applied", None)
        kept = [record.instance_id for record in store.list_instances("svc", "staging")]
        assert kept == ["host-2", "host-3", "host-4"]
        # a report from a known instance updates it and forgets nobody
        store.record_instance("svc", "staging", "host-2", 2, "h2", "applied", None)
        assert len(store.list_instances("svc", "staging")) == 3
        assert [r.instance_id for r in store.list_instances("svc", "production")] == ["other"]
    finally:
        store.close()
