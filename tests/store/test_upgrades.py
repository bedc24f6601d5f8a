"""The SQLite store's schema version: a file from before versioning upgrades without loss (and
is backed up first), a new file starts at the latest version, a newer file is refused."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from config_service.cli import main
from config_service.store import (
    DocumentState,
    NewVersion,
    ServiceRecord,
    SqliteStore,
    StoreTooNew,
)
from config_service.store.sqlite_schema import LATEST

# The tables exactly as the server made them before the store carried a schema version
# (schema version 1), kept here as text so the upgrade is tested against what is on disk.
OLD_DDL = """
CREATE TABLE IF NOT EXISTS versions (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    config TEXT NOT NULL,
    hash TEXT NOT NULL,
    author TEXT NOT NULL,
    token_id TEXT,
    message TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    promoted_from_environment TEXT,
    promoted_from_version INTEGER,
    rolled_back_to INTEGER,
    UNIQUE (service, environment, version)
);
CREATE INDEX IF NOT EXISTS versions_kind ON versions (service, environment, kind, version);
CREATE TABLE IF NOT EXISTS schemas (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema TEXT NOT NULL,
    hash TEXT NOT NULL,
    author TEXT NOT NULL,
    token_id TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    services TEXT NOT NULL,
    environments TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    version INTEGER,
    hash TEXT,
    status TEXT NOT NULL,
    error TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    failed_version INTEGER,
    failed_hash TEXT,
    cohort TEXT,
    PRIMARY KEY (service, environment, instance_id)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    token_id TEXT,
    action TEXT NOT NULL,
    service TEXT,
    environment TEXT,
    version INTEGER,
    request_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_service ON audit (service, environment, id);
"""

OLD_VERSIONS = [
    # service, environment, version, source, kind, author, created_at, promoted_from, rolled_back_to
    ("user-service", "development", 1, "a: 1\n", "sync", "file:development/user-service.tsk",
     "2026-01-01T00:00:01.000Z", None, None),
    ("user-service", "development", 2, "a: 2\n", "push", "ci", "2026-01-01T00:00:02.000Z", None, None),
    ("user-service", "staging", 1, "a: 1\n", "promote", "ci", "2026-01-01T00:00:03.000Z",
     ("development", 1), None),
    ("user-service", "development", 3, "a: 1\n", "rollback", "ci", "2026-01-01T00:00:04.000Z", None, 1),
    ("billing", "production", 1, "b: 1\n", "sync", "file:production/billing.tsk",
     "2026-01-01T00:00:05.000Z", None, None),
    ("billing", "production", 2, "b: 2\n", "sync", "file:production/billing.tsk",
     "2026-01-01T00:00:06.000Z", None, None),
]


def _old_store(path: Path) -> None:
    connection = sqlite3.connect(str(path), isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.executescript(OLD_DDL)
    for service, env, number, source, kind, author, at, promoted, rolled in OLD_VERSIONS:
        connection.execute(
            "INSERT INTO versions (service, environment, version, source, config, hash, author, "
            "token_id, message, created_at, kind, promoted_from_environment, promoted_from_version, "
            "rolled_back_to) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 'm', ?, ?, ?, ?, ?)",
            (service, env, number, source, "{}", "h-" + source, author, at, kind,
             promoted[0] if promoted else None, promoted[1] if promoted else None, rolled),
        )
    for name, version, at in (("user-service", 1, "2025-12-31T00:00:00.000Z"),
                              ("user-service", 2, "2026-01-02T00:00:00.000Z"),
                              ("database", 1, "2026-01-01T00:00:00.500Z"),
                              ("payments", 1, "2026-01-03T00:00:00.000Z")):
        connection.execute(
            "INSERT INTO schemas (name, version, schema, hash, author, token_id, created_at) "
            "VALUES (?, ?, '{}', ?, 'admin', NULL, ?)",
            (name, version, f"s-{name}-{version}", at),
        )
    connection.execute(
        "INSERT INTO tokens VALUES ('t1', 'ci', 'writer', '[\"*\"]', '[\"*\"]', 'secret-hash', "
        "'2026-01-01T00:00:00.000Z', 'admin', NULL)"
    )
    connection.execute(
        "INSERT INTO instances (service, environment, instance_id, version, hash, status, first_seen, "
        "last_seen) VALUES ('user-service', 'development', 'i-1', 3, 'h', 'ok', 'x', 'y')"
    )
    connection.execute(
        "INSERT INTO audit (at, actor, action, service, environment, version, detail) "
        "VALUES ('2026-01-01T00:00:00.000Z', 'ci', 'push', 'user-service', 'development', 2, '{\"a\": 1}')"
    )
    connection.close()


def _user_version(path: Path) -> int:
    connection = sqlite3.connect(str(path))
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    finally:
        connection.close()


def test_a_store_from_before_versioning_is_backed_up_then_upgraded_without_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.db"
    _old_store(path)
    store = SqliteStore(path)
    with caplog.at_level(logging.INFO, logger="config_service"):
        store.open()
    try:
        backup = tmp_path / "config.db.v1.backup"
        assert backup.is_file() and backup.stat().st_mode & 0o777 == 0o600
        assert f"copied it to {backup}" in caplog.text
        old = sqlite3.connect(str(backup))
        assert old.execute("SELECT COUNT(*) FROM versions").fetchone() == (len(OLD_VERSIONS),)
        assert old.execute("PRAGMA user_version").fetchone() == (0,)
        assert "documents" not in {row[0] for row in old.execute("SELECT name FROM sqlite_master")}
        old.close()
        assert _user_version(path) == LATEST

        # Every row kept, with its sequence; the current versions are the highest numbers.
        kept = store.versions_after(0, 100)
        assert [(r.sequence, r.service, r.environment, r.version, r.kind) for r in kept] == [
            (index + 1, row[0], row[1], row[2], row[4]) for index, row in enumerate(OLD_VERSIONS)
        ]
        staging = store.current_version("user-service", "staging")
        assert staging is not None and staging.metadata()["promoted_from"] == {
            "environment": "development", "version": 1,
        }
        assert staging.kept_local is None and staging.metadata()["kept_local"] is None
        development = store.current_version("user-service", "development")
        assert development is not None and (development.version, development.rolled_back_to) == (3, 1)
        assert development.source == "a: 1\n" and development.hash == "h-a: 1\n"
        assert [(r.service, r.environment, r.version) for r in store.current_versions()] == [
            ("billing", "production", 2), ("user-service", "development", 3),
            ("user-service", "staging", 1),
        ]

        # The sync state comes from the last version synced from a file.
        assert store.documents() == [
            DocumentState("billing", "production", 2, "production/billing.tsk", 2),
            DocumentState("user-service", "development", 3, "development/user-service.tsk", 1),
            DocumentState("user-service", "staging", 1),
        ]
        # Services: from versions and schemas, each with its earliest origin.
        assert store.list_services() == [
            ServiceRecord("billing", "2026-01-01T00:00:05.000Z", "file", "file:production/billing.tsk"),
            ServiceRecord("database", "2026-01-01T00:00:00.500Z", "schema", "admin"),
            ServiceRecord("payments", "2026-01-03T00:00:00.000Z", "schema", "admin"),
            ServiceRecord("user-service", "2025-12-31T00:00:00.000Z", "schema", "admin"),
        ]
        # Schemas, tokens, instances and audit untouched.
        current = store.current_schema("user-service")
        assert current is not None and current.version == 2
        assert [token.name for token in store.list_tokens()] == ["ci"]
        assert [i.instance_id for i in store.list_instances("user-service", "development")] == ["i-1"]
        assert [entry.detail for entry in store.list_audit(10, None)] == [{"a": 1}]

        # Writes go on from where the old file was.
        new = NewVersion("user-service", "development", "a: 4\n", "{}", "h4", "ci", None, "")
        record, created = store.write(lambda t: t.append_version(new, 3, None))
        assert created and (record.sequence, record.version) == (len(OLD_VERSIONS) + 1, 4)
    finally:
        store.close()

    # Opening again neither migrates nor backs up a second time.
    again = SqliteStore(path)
    again.open()
    again.close()
    assert sorted(p.name for p in tmp_path.iterdir() if ".backup" in p.name) == ["config.db.v1.backup"]


def test_a_new_store_starts_at_the_latest_version_without_a_backup(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "config.db")
    store.open()
    store.close()
    assert _user_version(tmp_path / "data" / "config.db") == LATEST
    assert [p.name for p in (tmp_path / "data").iterdir() if "backup" in p.name] == []


def test_a_store_newer_than_the_server_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    _old_store(path)
    connection = sqlite3.connect(str(path))
    connection.execute(f"PRAGMA user_version = {LATEST + 1}")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StoreTooNew) as raised:
        SqliteStore(path).open()
    assert f"schema version {LATEST + 1}, newer than this server knows (up to {LATEST})" in str(
        raised.value
    )
    assert path.read_bytes() == before and not (tmp_path / "config.db.v1.backup").exists()

    # `tskcfg serve` says so in one line and does not start.
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--no-sync"])
    assert result.exit_code == 1, result.output
    assert "newer than this server knows" in result.stderr and "Traceback" not in result.output


def test_a_failed_step_leaves_the_file_at_its_version(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    _old_store(path)
    connection = sqlite3.connect(str(path))
    # A table the step is about to create makes it fail half-way.
    connection.execute("CREATE TABLE services (name TEXT)")
    connection.close()
    with pytest.raises(sqlite3.OperationalError):
        SqliteStore(path).open()
    assert _user_version(path) == 0
    connection = sqlite3.connect(str(path))
    columns = {row[1] for row in connection.execute("PRAGMA table_info(versions)")}
    connection.close()
    assert "kept_local" not in columns


def test_a_version_synced_from_a_file_records_the_sync_state(tmp_path: Path) -> None:
    from config_service.core.access import file_principal
    from config_service.core.wiring import Core
    from config_service.settings import Settings

    core = Core(Settings(data_dir=tmp_path, sync=False, access_log=False))
    core.start()
    try:
        author = "file:staging/api.tsk"
        core.documents.push(file_principal(author), "api", "staging", "a: 1\n", kind="sync")
        assert core.store.document("api", "staging") == DocumentState("api", "staging", 1, "staging/api.tsk", 1)
        core.documents.push(file_principal("admin"), "api", "staging", "a: 2\n")
        # The API moved on: the file still last gave version 1.
        assert core.store.document("api", "staging") == DocumentState("api", "staging", 2, "staging/api.tsk", 1)
    finally:
        core.stop()
