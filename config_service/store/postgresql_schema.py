"""The PostgreSQL store's tables and their upgrades: a schema version, the ordered steps to
it, and the advisory lock keys every replica shares.

The database carries its schema version in the one-row table `schema_version`. `migrate`
brings the tables to `SCHEMA_VERSION` under a session advisory lock (`MIGRATION_LOCK`), so
replicas starting together migrate once; an empty database gets every step, so the steps are
the one way the tables come to be. Tables made by a newer server are refused
(`StoreNewerThanServer`) rather than used. The SQLite store's counterpart is
`config_service/store/sqlite_schema.py`; docs/replicas.md says how replicas share the tables.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from config_service.store.records import StoreNewerThanServer

logger = logging.getLogger("config_service")

# Advisory lock keys ("tskc" and the next): every write transaction, and migrations at start.
WRITE_LOCK = 0x74736B63
MIGRATION_LOCK = WRITE_LOCK + 1
# Held (session-level, on a connection of its own) by the one process that runs what must run
# once (file sync): PostgreSQL frees it when that connection ends, however the process ends.
LEADER_LOCK = WRITE_LOCK + 2

# Each step takes the tables from the version before it to its own number.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE versions (
    sequence BIGINT PRIMARY KEY,
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
CREATE TABLE services (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_by TEXT
);
CREATE TABLE schemas (
    sequence BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema TEXT NOT NULL,
    hash TEXT NOT NULL,
    author TEXT NOT NULL,
    token_id TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE tokens (
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
CREATE TABLE instances (
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
CREATE TABLE audit (
    id BIGINT PRIMARY KEY,
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
CREATE INDEX audit_service ON audit (service, environment, id);
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX sessions_token ON sessions (token_id);
CREATE INDEX sessions_last_seen ON sessions (last_seen);
CREATE TABLE sequence_counter (last BIGINT NOT NULL);
INSERT INTO sequence_counter (last) VALUES (0);
CREATE TABLE rollouts (
    id BIGINT PRIMARY KEY,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    candidate_version INTEGER NOT NULL,
    stable_version INTEGER NOT NULL,
    steps TEXT NOT NULL,
    step INTEGER NOT NULL,
    bake_seconds DOUBLE PRECISION NOT NULL,
    max_failed INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    step_started_at TEXT,
    baked_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    sequence BIGINT NOT NULL
);
CREATE INDEX rollouts_document ON rollouts (service, environment, candidate_version);
CREATE TABLE rollout_failures (
    rollout_id BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    at TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (rollout_id, instance_id)
);
""",
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(connection: psycopg.Connection[Any]) -> int:
    """Bring the tables to `SCHEMA_VERSION` (create them in an empty database); the version found.

    Runs under a session advisory lock, so replicas starting together migrate once; refuses
    tables newer than this server with `StoreNewerThanServer`.
    """
    connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        with connection.transaction():
            connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
            found = int(row[0]) if row is not None and row[0] is not None else 0
            if found > SCHEMA_VERSION:
                raise StoreNewerThanServer(found, SCHEMA_VERSION)
            for number, sql in MIGRATIONS:
                if number > found:
                    connection.execute(sql.encode())  # our own DDL, no parameters
                    connection.execute("DELETE FROM schema_version")
                    connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
                    logger.info("PostgreSQL store: tables migrated to schema version %d", number)
        return found
    finally:
        connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
