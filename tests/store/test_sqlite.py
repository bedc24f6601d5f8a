"""What only the SQLite store does: columns added to a file made by an older release."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from config_service.store import InstanceReport, SqliteStore


def _record(store: SqliteStore, report: InstanceReport) -> None:
    store.write(lambda transaction: transaction.record_instance(report))


def _report(instance_id: str, version: int, status: str, failed_version: int) -> InstanceReport:
    return InstanceReport("svc", "staging", instance_id, status, version, f"h{version}", None, failed_version)


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
        _record(store, _report("old", 4, "failed", 5))
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
