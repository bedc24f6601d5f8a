"""The SQLite store's tables and their upgrades: a schema version, and the ordered steps to it.

The file carries its schema version in `PRAGMA user_version`. A file without one (0) that
has tables was made before versioning: it is version 1, and it is copied beside itself
(`config.db.v1.backup`) before the first step runs. A new file gets version 1's tables and
then every step, so the steps are the one way the tables come to be. Each step runs in one
transaction with the new version number, so a step that fails leaves the file as it was.
A file newer than this server is refused (StoreTooNew) rather than opened.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from config_service.store.data_folder import create_private_file
from config_service.store.records import StoreNewerThanServer

logger = logging.getLogger("config_service")

# The tables as the first release made them (schema version 1). Never changed: later
# versions are steps below.
SCHEMA_V1 = """
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

# Columns version 1 files gained while they had no schema version: a file made before them
# lacks them (ALTER TABLE ... ADD COLUMN keeps every row, the new columns NULL).
V1_ADDED_COLUMNS = {
    "instances": (("failed_version", "INTEGER"), ("failed_hash", "TEXT"), ("cohort", "TEXT")),
}

# Version 2: a retire version has no config or hash (nullable), versions record the paths a
# promotion kept (`kept_local`, a JSON list), and beside the immutable rows: each document's
# current version and sync state, and the services that exist.
_VERSIONS_V2 = """
CREATE TABLE versions_v2 (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    config TEXT,
    hash TEXT,
    author TEXT NOT NULL,
    token_id TEXT,
    message TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    promoted_from_environment TEXT,
    promoted_from_version INTEGER,
    rolled_back_to INTEGER,
    kept_local TEXT,
    UNIQUE (service, environment, version)
);
INSERT INTO versions_v2 (sequence, service, environment, version, source, config, hash, author,
    token_id, message, created_at, kind, promoted_from_environment, promoted_from_version,
    rolled_back_to)
SELECT sequence, service, environment, version, source, config, hash, author, token_id, message,
    created_at, kind, promoted_from_environment, promoted_from_version, rolled_back_to
FROM versions;
DROP TABLE versions;
ALTER TABLE versions_v2 RENAME TO versions;
CREATE INDEX versions_kind ON versions (service, environment, kind, version);
CREATE TABLE documents (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    file TEXT,
    file_version INTEGER,
    sync_conflict INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service, environment)
);
INSERT INTO documents (service, environment, current_version)
SELECT service, environment, MAX(version) FROM versions GROUP BY service, environment;
UPDATE documents SET
    file_version = (SELECT MAX(version) FROM versions AS v WHERE v.service = documents.service
        AND v.environment = documents.environment AND v.kind = 'sync' AND v.author LIKE 'file:%');
UPDATE documents SET
    file = (SELECT substr(author, 6) FROM versions AS v WHERE v.service = documents.service
        AND v.environment = documents.environment AND v.version = documents.file_version)
WHERE file_version IS NOT NULL;
CREATE TABLE services (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_by TEXT
);
INSERT INTO services (name, created_at, origin, created_by)
SELECT v.service, v.created_at, CASE v.kind WHEN 'sync' THEN 'file' ELSE 'push' END, v.author
FROM versions AS v WHERE v.sequence = (SELECT MIN(sequence) FROM versions WHERE service = v.service);
INSERT INTO services (name, created_at, origin, created_by)
SELECT s.name, s.created_at, 'schema', s.author FROM schemas AS s WHERE s.version = 1
ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at, origin = excluded.origin,
    created_by = excluded.created_by WHERE excluded.created_at < services.created_at;
"""


def _statements(connection: sqlite3.Connection, script: str) -> None:
    # One statement at a time: `executescript` would commit the step's transaction.
    for statement in script.split(";\n"):
        if statement.strip():
            connection.execute(statement)


def _to_v2(connection: sqlite3.Connection) -> None:
    _statements(connection, SCHEMA_V1)
    for table, columns in V1_ADDED_COLUMNS.items():
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    _statements(connection, _VERSIONS_V2)


# Version 3: console sessions (docs/console.md, "Sessions"): the SHA-256 of each session's
# cookie secret, the token it acts for, its CSRF token and when it was last used.
_SESSIONS_V3 = """
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_last_seen ON sessions (last_seen)
"""


def _to_v3(connection: sqlite3.Connection) -> None:
    _statements(connection, _SESSIONS_V3)


# Version 4: rollouts (docs/rollouts.md), each with the instances that failed its candidate.
_ROLLOUTS_V4 = """
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    candidate_version INTEGER NOT NULL,
    stable_version INTEGER NOT NULL,
    steps TEXT NOT NULL,
    step INTEGER NOT NULL,
    bake_seconds REAL NOT NULL,
    max_failed INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    step_started_at TEXT,
    baked_seconds REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    sequence INTEGER NOT NULL
);
CREATE INDEX rollouts_document ON rollouts (service, environment, candidate_version);
CREATE TABLE rollout_failures (
    rollout_id INTEGER NOT NULL,
    instance_id TEXT NOT NULL,
    at TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (rollout_id, instance_id)
);
"""


def _to_v4(connection: sqlite3.Connection) -> None:
    _statements(connection, _ROLLOUTS_V4)


# MIGRATIONS[n - 1] takes a file from schema version n to n + 1, in order.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_to_v2, _to_v3, _to_v4]
LATEST = len(MIGRATIONS) + 1


class StoreTooNew(StoreNewerThanServer):
    """The SQLite file was made by a newer server: opening it could lose what that server keeps
    (the same refusal as for PostgreSQL tables, naming the file)."""

    def __init__(self, path: Path, found: int) -> None:
        Exception.__init__(
            self,
            f"the store {path} has schema version {found}, newer than this server knows "
            f"(up to {LATEST}): run the tskcfg that wrote it, or restore a backup made before "
            "that upgrade",
        )
        self.path = path
        self.found = found
        self.known = LATEST


def schema_version(connection: sqlite3.Connection) -> int:
    """The file's schema version: `user_version`, or 1 for a file with tables but none."""
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if found:
        return int(found)
    tables = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'versions'"
    ).fetchone()
    return 1 if tables else 0


def refuse_newer(path: Path) -> None:
    """Raise StoreTooNew when the file at `path` (if any) is newer than this server; changes
    nothing (the server checks before it starts serving, to say so plainly)."""
    if not path.is_file():
        return
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = schema_version(connection)
    finally:
        connection.close()
    if found > LATEST:
        raise StoreTooNew(path, found)


def backup_path(path: Path, version: int) -> Path:
    """A free name beside `path` for its copy before upgrading from `version`."""
    candidate = path.with_name(f"{path.name}.v{version}.backup")
    number = 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.v{version}.backup.{number}")
    return candidate


def upgrade(connection: sqlite3.Connection, path: Path) -> int:
    """Bring the file to LATEST, backing up a version 1 file first; returns the version found
    (0 for a new file). Raises StoreTooNew for a file newer than LATEST."""
    found = schema_version(connection)
    if found > LATEST:
        raise StoreTooNew(path, found)
    if found == LATEST:
        return found
    if found == 0:
        # A new file: version 1's tables, then the steps like any other file.
        connection.execute("BEGIN IMMEDIATE")
        _statements(connection, SCHEMA_V1)
        connection.execute("PRAGMA user_version = 1")
        connection.execute("COMMIT")
    else:
        copy = backup_path(path, found)
        create_private_file(copy)
        target = sqlite3.connect(str(copy))
        try:
            connection.backup(target)
        finally:
            target.close()
        logger.warning(
            "the store %s has schema version %d; copied it to %s before upgrading it to version %d",
            path, found, copy, LATEST,
        )
    for number in range(max(found, 1), LATEST):
        connection.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[number - 1](connection)
            connection.execute(f"PRAGMA user_version = {number + 1}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        if found:
            logger.info("the store %s is now at schema version %d", path, number + 1)
    return found
