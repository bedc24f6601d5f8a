"""The SQLite store without HTTP: group commit, savepoints per write, listeners in commit order."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config_service.store import (
    MAX_INSTANCES_PER_DOCUMENT,
    AuditEntry,
    IfMatch,
    InstanceReport,
    NewVersion,
    PreconditionFailed,
    SqliteStore,
    TooManyInstances,
    Transaction,
    VersionRecord,
    utc_timestamp,
)


def _new(service: str, source: str) -> NewVersion:
    return NewVersion(service, "staging", source, "{}", "hash-" + source, "tester", None, "")


def _append(
    store: SqliteStore, new: NewVersion, if_match: IfMatch, audit: AuditEntry | None
) -> tuple[VersionRecord, bool]:
    return store.write(lambda transaction: transaction.append_version(new, if_match, audit))


def _record(
    store: SqliteStore,
    report: InstanceReport,
    limit: int = MAX_INSTANCES_PER_DOCUMENT,
    forget_before: str | None = None,
) -> None:
    store.write(lambda transaction: transaction.record_instance(report, limit, forget_before))


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

        _append(store, _new("shared", "first"), 0, None)
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
        record, created = _append(store, _new("undone", "b"), None, None)
        assert created and record.version == 1
        again, created_again = _append(store, _new("undone", "b"), None, None)
        assert not created_again and again.version == 1
    finally:
        store.close()
    with pytest.raises(RuntimeError):
        _append(store, _new("closed", "a"), None, None)


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


def _report(
    instance_id: str,
    version: int | None,
    status: str = "applied",
    error: str | None = None,
    failed_version: int | None = None,
    failed_hash: str | None = None,
    cohort: str | None = None,
) -> InstanceReport:
    return InstanceReport(
        "svc", "staging", instance_id, status, version, f"h{version}", error, failed_version, failed_hash, cohort
    )


def test_instances_per_document_are_bounded_stale_ones_make_room(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    try:
        for index in range(3):
            _record(store, _report(f"host-{index}", 1), limit=3, forget_before=None)
        _record(
            store, InstanceReport("svc", "production", "other", "applied", 1, "h"), limit=3
        )
        # A fourth instance, none of the three stale: refused, nothing forgotten.
        with pytest.raises(TooManyInstances):
            _record(store, _report("host-3", 1), limit=3, forget_before="2000-01-01T00:00:00.000Z")
        listed = [record.instance_id for record in store.list_instances("svc", "staging")]
        assert listed == ["host-0", "host-1", "host-2"]
        # A known instance still reports, and forgets nobody.
        _record(store, _report("host-0", 2), limit=3)
        # Once the others count as stale, the one seen longest ago makes room.
        later = utc_timestamp(datetime.now(UTC) + timedelta(seconds=1))
        _record(store, _report("host-3", 2), limit=3, forget_before=later)
        listed = [record.instance_id for record in store.list_instances("svc", "staging")]
        assert listed == ["host-0", "host-2", "host-3"]
        assert [r.instance_id for r in store.list_instances("svc", "production")] == ["other"]
    finally:
        store.close()


def test_a_failed_report_keeps_the_version_the_instance_runs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    try:
        _record(store, _report("a", 4))
        _record(store, _report("a", 5, "failed", error="boom"))  # failing `version`
        (record,) = store.list_instances("svc", "staging")
        assert (record.version, record.hash, record.failed_version, record.failed_hash) == (4, "h4", 5, "h5")
        assert (record.status, record.error) == ("failed", "boom")
        _record(store, _report("a", 4, "failed", failed_version=6, failed_hash="h6", cohort="c"))
        (record,) = store.list_instances("svc", "staging")
        assert (record.version, record.failed_version, record.cohort) == (4, 6, "c")
        _record(store, _report("a", 6))
        (record,) = store.list_instances("svc", "staging")
        assert (record.version, record.status, record.failed_version, record.failed_hash) == (6, "applied", None, None)
        # A first report that is a failure: it runs nothing the server knows of.
        _record(store, _report("b", 1, "failed"))
        record = store.list_instances("svc", "staging")[1]
        assert (record.instance_id, record.version, record.failed_version) == ("b", None, 1)
    finally:
        store.close()


def test_a_store_made_before_failed_versions_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE instances (
            service TEXT NOT NULL, environment TEXT NOT NULL, instance_id TEXT NOT NULL,
            version INTEGER, hash TEXT, status TEXT NOT NULL, error TEXT,
            first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
            PRIMARY KEY (service, environment, instance_id)
        );
        INSERT INTO instances VALUES ('svc', 'staging', 'old', 3, 'h3', 'applied', NULL,
            '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
        """
    )
    old.commit()
    old.close()
    store = SqliteStore(path)
    store.open()
    try:
        (record,) = store.list_instances("svc", "staging")
        assert (record.instance_id, record.version, record.failed_version, record.cohort) == ("old", 3, None, None)
        _record(store, _report("old", 4, "failed", failed_version=5))
        (record,) = store.list_instances("svc", "staging")
        assert (record.version, record.failed_version) == (4, 5)
    finally:
        store.close()
    # Opening it again (the columns now present) changes nothing.
    store = SqliteStore(path)
    store.open()
    try:
        assert store.list_instances("svc", "staging")[0].failed_version == 5
    finally:
        store.close()


def test_current_documents_carry_their_config_and_listings_do_not(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    store.open()
    try:
        _append(store, _new("documents", "a"), None, None)
        _append(store, _new("documents", "b"), None, None)
        [document] = store.current_documents()
        assert (document.version, document.source, document.config) == (2, "b", "{}")
        inside = store.write(lambda transaction: transaction.current_versions())
        assert [(record.version, record.config) for record in inside] == [(2, "{}")]
        [listed] = store.current_versions()
        assert listed.version == 2 and not listed.config
    finally:
        store.close()
