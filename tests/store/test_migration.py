"""config_service/store/migration.py without the command line: what a copy carries that the API
does not show at once (rollouts, the global sequence past the last version, sessions), and a
copy refused part-way leaves the target as it was."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg
import pytest

from config_service.store import AuditEntry, NewRollout, NewVersion, SessionRecord, SqliteStore
from config_service.store.migration import MigrationRefused, migrate_sqlite_to_postgresql
from config_service.store.postgresql import PostgresStore
from config_service.store.urls import parse_store_url


def _version(source: str, kind: str = "push") -> NewVersion:
    return NewVersion("svc", "production", source, "{}", "hash-" + source, "tester", None, "", kind=kind)


def _filled(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store.open()
    store.write(lambda t: t.append_version(_version("a = 1"), None, None))

    def start(transaction):  # type: ignore[no-untyped-def]
        candidate, _ = transaction.append_version(_version("a = 2", "rollout"), None, None)
        return transaction.insert_rollout(
            NewRollout("svc", "production", candidate.version, 1, (10, 100), 5.0, 0, "tester"),
            AuditEntry(actor="tester", action="rollout_start", service="svc", environment="production"),
        )

    rollout = store.write(start)
    paused = dataclasses.replace(rollout, state="paused", step_started_at=None, baked_seconds=2.5)
    store.write(lambda t: t.update_rollout(paused, rollout.sequence, None))
    store.write(lambda t: t.record_rollout_failure(rollout.id, "host-1", "boom"))
    store.write(lambda t: t.insert_session(SessionRecord("h", "t", "c", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z")))
    return store


def test_rollouts_sessions_and_the_sequence_carry_over(tmp_path: Path, postgres_dsn: str) -> None:
    source = _filled(tmp_path / "config.db")
    before = (source.last_sequence(), source.active_rollouts(), source.rollout_failures(1))
    source.close()
    assert before[0] == 4  # two versions, a rollout start and a pause

    copies = migrate_sqlite_to_postgresql(
        parse_store_url(f"sqlite:///{tmp_path}/config.db"), parse_store_url(postgres_dsn)
    )
    assert all(copy.verified for copy in copies)
    assert {copy.table: copy.rows for copy in copies}["(sequence)"] == 4

    target = PostgresStore(postgres_dsn)
    target.open()
    try:
        assert (target.last_sequence(), target.active_rollouts(), target.rollout_failures(1)) == before
        assert target.get_session("h") is not None
        assert target.current_version("svc", "production").version == 1  # type: ignore[union-attr]
        record, _ = target.write(lambda t: t.append_version(_version("a = 3"), None, None))
        assert (record.version, record.sequence) == (3, 5)
    finally:
        target.close()


def test_a_copy_that_cannot_finish_leaves_the_target_empty(tmp_path: Path, postgres_dsn: str) -> None:
    _filled(tmp_path / "config.db").close()
    # A table the target does not know: refused before anything is written.
    import sqlite3

    extra = sqlite3.connect(tmp_path / "config.db")
    extra.execute("CREATE TABLE from_the_future (x INTEGER)")
    extra.commit()
    extra.close()
    with pytest.raises(MigrationRefused, match="no table for from_the_future"):
        migrate_sqlite_to_postgresql(
            parse_store_url(f"sqlite:///{tmp_path}/config.db"), parse_store_url(postgres_dsn)
        )
    with psycopg.connect(postgres_dsn) as connection:
        assert connection.execute("SELECT COUNT(*) FROM versions").fetchone() == (0,)
        assert connection.execute("SELECT last FROM sequence_counter").fetchone() == (0,)
