"""The store on PostgreSQL (psycopg 3): the same tables and rules as the SQLite store, shared by
any number of server replicas (docs/replicas.md).

Consistency rules:

- Every write transaction starts by taking one transaction-level advisory lock
  (`pg_advisory_xact_lock(WRITE_LOCK)`), held until it commits. So writes are serialised across
  every replica: a document's next version number is read and written without a race, and the
  global `sequence` (the SSE event id, taken by versions and rollout changes alike) comes from
  the one-row table `sequence_counter`, so it is allocated in commit order. The
  lock is released only once the commit is visible, so no replica can ever see a sequence
  number after a larger one was visible.
- A commit that created versions sends `NOTIFY tskcfg, '<its last sequence>'` (channel
  `CHANNEL`), delivered to every listener when, and only if, the transaction commits. A
  replica follows with `PostgresStore.listen`, reading `versions_after(the last sequence it saw)`;
  it may skip its own commits' notifications (`own_commits=False`) when it hands those on
  from its commit listener.
  A commit that changed tokens, schemas or services also sends `NOTIFY tskcfg, '<kind>'`
  (CHANGE_KINDS), so replicas read those again.
- Writes are operations handed to one writer thread per store, as in the SQLite store: the
  operations waiting together share one transaction and one commit (group commit). They run
  without savepoints first; when one raises, that transaction is rolled back and they run
  again each in its own savepoint, so one that raises undoes only its own changes. In
  pipeline mode: BEGIN, the lock and the read of the active rollouts (`_ACTIVE_SNAPSHOT`) go
  with the first statement whose answer the batch waits for, so a batch of pushes takes one
  round trip per push and one for the notifications and COMMIT.
- When PostgreSQL cannot be reached, reads and writes raise `StoreUnavailable` (the server
  answers 503 `store_unavailable`); the store reconnects by itself once it is back.
- The tables carry a schema version (table `schema_version`); `open` migrates them under a
  session advisory lock, so replicas starting together migrate once, and refuses tables made by
  a newer server (`StoreNewerThanServer`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from config_service.store.group_commit import GroupCommit, Write
from config_service.store.interface import CommitListener, Store, Transaction
from config_service.store.records import (
    MAX_INSTANCES_PER_DOCUMENT,
    AuditEntry,
    DocumentState,
    IfMatch,
    InstanceReport,
    NewRollout,
    NewVersion,
    PreconditionFailed,
    RolloutRecord,
    SchemaRecord,
    ServiceRecord,
    SessionRecord,
    StoreNewerThanServer,
    StoreUnavailable,
    TokenRecord,
    TooManyInstances,
    VersionRecord,
    utc_now,
)
from config_service.store.sql_reads import ACTIVE as _ACTIVE
from config_service.store.sql_reads import CURRENT_VERSIONS as _CURRENT_VERSIONS
from config_service.store.sql_reads import DOCUMENT_COLUMNS as _DOCUMENT_COLUMNS
from config_service.store.sql_reads import INSTANCE_COLUMNS as _INSTANCE_COLUMNS
from config_service.store.sql_reads import LISTED_VERSION_COLUMNS as _LISTED_VERSION_COLUMNS
from config_service.store.sql_reads import ROLLOUT_CANDIDATES as _ROLLOUT_CANDIDATES
from config_service.store.sql_reads import ROLLOUT_COLUMNS as _ROLLOUT_COLUMNS
from config_service.store.sql_reads import SCHEMA_COLUMNS as _SCHEMA_COLUMNS
from config_service.store.sql_reads import SERVICE_COLUMNS as _SERVICE_COLUMNS
from config_service.store.sql_reads import VERSION_COLUMNS as _VERSION_COLUMNS
from config_service.store.sql_reads import SqlReads
from config_service.store.sql_reads import document_state as _document
from config_service.store.sql_reads import rollout_record as _rollout
from config_service.store.sql_reads import schema_record as _schema
from config_service.store.sql_reads import service_record as _service
from config_service.store.sql_reads import token_record as _token
from config_service.store.sql_reads import version_record as _version
from config_service.store.urls import redact

T = TypeVar("T")

logger = logging.getLogger("config_service")

# The channel every commit that created versions notifies, with its last sequence as payload.
CHANNEL = "tskcfg"
# The other payloads on CHANNEL: a commit changed tokens (created, revoked), schemas, services
# or rollouts.
CHANGE_KINDS = ("tokens", "schemas", "services", "rollouts")
# Advisory lock keys ("tskc" and the next): every write transaction, and migrations at start.
WRITE_LOCK = 0x74736B63
MIGRATION_LOCK = WRITE_LOCK + 1
# Held (session-level, on a connection of its own) by the one process that runs what must run
# once (file sync): PostgreSQL frees it when that connection ends, however the process ends.
LEADER_LOCK = WRITE_LOCK + 2
# Seconds a read waits for a pooled connection before checking whether PostgreSQL is away.
QUICK_POOL_WAIT = 0.25
# Services whose rows a store remembers (`PostgresStore.service`); past it, it reads again.
MAX_REMEMBERED_SERVICES = 10_000
# Sequences of this store's own notifications remembered at most (see `PostgresStore.listen`).
MAX_OWN_NOTIFIED = 4096
_MISSING = object()
# Seconds to wait for a connection before a read or write is StoreUnavailable.
CONNECT_TIMEOUT = 5

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

# The writer's transaction reads its current version with named parameters (the store's own
# reads, with positional ones, are SqlReads').
_CURRENT_VERSION = (
    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE service = %(service)s AND "
    "environment = %(environment)s AND version = (SELECT current_version FROM documents WHERE "
    "service = %(service)s AND environment = %(environment)s)"
)
_ROLLOUT_NAMES = tuple(_ROLLOUT_COLUMNS.split(", "))
# The database's clock as the store writes times (records.utc_timestamp: milliseconds, `Z`).
_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

# Running or paused rollouts a write batch reads with its BEGIN (so a push asks for its
# document's without a round trip); past it, each operation asks.
MAX_ACTIVE_SNAPSHOT = 64
# What a write batch sends first, without waiting: open the transaction, take the write lock,
# then read the active rollouts (oldest first: a document's latest one wins). They go with the
# batch's first statement whose answer it waits for: one round trip.
_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
_ACTIVE_SNAPSHOT = (
    f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE {_ACTIVE} ORDER BY id "
    f"LIMIT {MAX_ACTIVE_SNAPSHOT + 1}"
)

# The errors that mean "PostgreSQL is away" (a lost or refused connection, a pool timeout).
_UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)


class _StaleConnection(Exception):
    """A pooled connection that broke before this use; another may work."""


def _unavailable(error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"the PostgreSQL store cannot be reached ({str(error).strip() or type(error).__name__})")


# The audit entry of a version written in the same statement: its number comes from `added`.
_AUDIT_INSERT_RETURNED = (
    "INSERT INTO audit (id, at, actor, token_id, action, service, environment, version, "
    "request_id, detail) SELECT (SELECT COALESCE(MAX(id), 0) + 1 FROM audit), %(audit_at)s, "
    "%(audit_actor)s, %(audit_token_id)s, %(audit_action)s, %(audit_service)s, "
    "%(audit_environment)s, COALESCE(%(audit_version)s, added.version), %(audit_request_id)s, "
    "%(audit_detail)s FROM added"
)
_AUDIT_INSERT = (
    "INSERT INTO audit (id, at, actor, token_id, action, service, environment, version, "
    "request_id, detail) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM audit), %(audit_at)s, "
    "%(audit_actor)s, %(audit_token_id)s, %(audit_action)s, %(audit_service)s, "
    "%(audit_environment)s, %(audit_version)s, %(audit_request_id)s, %(audit_detail)s)"
)


def _audit_params(entry: AuditEntry, version: int | None, at: str | None) -> dict[str, Any]:
    return {
        "audit_at": at or utc_now(),
        "audit_actor": entry.actor,
        "audit_token_id": entry.token_id,
        "audit_action": entry.action,
        "audit_service": entry.service,
        "audit_environment": entry.environment,
        "audit_version": entry.version if entry.version is not None else version,
        "audit_request_id": entry.request_id,
        "audit_detail": json.dumps(entry.detail, ensure_ascii=False),
    }


def _rows(connection: psycopg.Connection[Any], sql: str, params: Any = ()) -> list[dict[str, Any]]:
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


class PostgresTransaction(Transaction):
    """`Transaction` on the writer's connection, inside the batch's transaction (which holds
    the write lock), in pipeline mode."""

    def __init__(
        self, connection: psycopg.Connection[Any], snapshot: psycopg.Cursor[Any] | None = None
    ) -> None:
        self.connection = connection
        # The running and paused rollouts as the batch began (`_ACTIVE_SNAPSHOT`, sent after
        # the write lock with BEGIN; its rows come back with the first answer the batch
        # waits for), by document: `active_rollout` answers from them, so a push needs no
        # round trip of its own for it, until an operation of this batch writes a rollout
        # (then it reads). None once read: there were too many to keep, always read.
        self._snapshot = snapshot
        self._active: dict[tuple[str, str], RolloutRecord] | None = None
        # Whether an answer of this batch came back (the connection worked for it).
        self.reached = False
        self.created: list[VersionRecord] = []
        self.callbacks: list[Callable[[], None]] = []
        # What else this batch changed, for other replicas (CHANGE_KINDS), per operation.
        self.changed: list[str] = []
        self.pipeline: psycopg.Pipeline | None = None

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self.connection.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, params)
            self._sync()
            return cursor.fetchall() if cursor.description is not None else []

    def values(self, sql: str, params: Any = ()) -> tuple[Any, ...]:
        """The one row of a statement that answers exactly one, as a tuple."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            self._sync()
            (row,) = cursor.fetchall()
            return row

    def execute(self, sql: str, params: Any = ()) -> int:
        """Run a statement; the number of rows it changed."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            self._sync()
            return cursor.rowcount

    def _sync(self) -> None:
        # In pipeline mode, send what is queued (savepoints too) and wait for the results.
        if self.pipeline is not None:
            self.pipeline.sync()
        self.reached = True

    def _forget_snapshot(self) -> None:
        """What the batch began with is no longer what the table holds."""
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
        self._active = None

    # -- versions --------------------------------------------------------------------

    def current_version(self, service: str, environment: str) -> VersionRecord | None:
        rows = self.rows(_CURRENT_VERSION, {"service": service, "environment": environment})
        return _version(rows[0]) if rows else None

    def current_versions(self) -> list[VersionRecord]:
        return [_version(row) for row in self.rows(_CURRENT_VERSIONS)]

    def document(self, service: str, environment: str) -> DocumentState | None:
        rows = self.rows(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE service = %s AND environment = %s",
            (service, environment),
        )
        return _document(rows[0]) if rows else None

    def set_sync_state(
        self, service: str, environment: str, file: str | None, file_version: int | None, conflict: bool
    ) -> None:
        changed = self.execute(
            "UPDATE documents SET file = %s, file_version = %s, sync_conflict = %s "
            "WHERE service = %s AND environment = %s",
            (file, file_version, int(conflict), service, environment),
        )
        if changed != 1:
            raise ValueError(f"{service}/{environment} has no version to sync")

    def set_current_version(self, service: str, environment: str, version: int) -> None:
        self.execute(
            "INSERT INTO documents (service, environment, current_version) VALUES (%s, %s, %s) "
            "ON CONFLICT (service, environment) DO UPDATE SET current_version = excluded.current_version",
            (service, environment, version),
        )

    # -- rollouts --------------------------------------------------------------------

    def now(self) -> str:
        # The database's clock: one clock for every replica's bake timers.
        (row,) = self.rows(f"SELECT {_NOW} AS now")
        return str(row["now"])

    def next_sequence(self) -> int:
        """Take the next global sequence for a change that is not a version row."""
        (row,) = self.rows("UPDATE sequence_counter SET last = last + 1 RETURNING last")
        return int(row["last"])

    def active_rollout(self, service: str, environment: str) -> RolloutRecord | None:
        if self._snapshot is not None:
            rows = self._snapshot.fetchall()  # waits for them if they are not back yet
            self.reached = True
            self._snapshot.close()
            self._snapshot = None
            if len(rows) <= MAX_ACTIVE_SNAPSHOT:
                active = [_rollout(dict(zip(_ROLLOUT_NAMES, row, strict=True))) for row in rows]
                self._active = {(rollout.service, rollout.environment): rollout for rollout in active}
        if self._active is not None:
            return self._active.get((service, environment))
        rows = self.rows(
            f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE service = %s AND environment = %s "
            f"AND {_ACTIVE} ORDER BY id DESC LIMIT 1",
            (service, environment),
        )
        return _rollout(rows[0]) if rows else None

    def insert_rollout(self, new: NewRollout, audit: AuditEntry | None) -> RolloutRecord:
        self._forget_snapshot()
        now = self.now()
        values: dict[str, Any] = {
            "service": new.service,
            "environment": new.environment,
            "candidate_version": new.candidate_version,
            "stable_version": new.stable_version,
            "steps": json.dumps(list(new.steps)),
            "step": 0,
            "bake_seconds": float(new.bake_seconds),
            "max_failed": new.max_failed,
            "state": "running",
            "started_at": now,
            "updated_at": now,
            "step_started_at": now,
            "baked_seconds": 0.0,
            "reason": "",
            "author": new.author,
            "sequence": self.next_sequence(),
        }
        (row,) = self.rows(
            f"INSERT INTO rollouts ({_ROLLOUT_COLUMNS}) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 "
            "FROM rollouts), %(service)s, %(environment)s, %(candidate_version)s, "
            "%(stable_version)s, %(steps)s, %(step)s, %(bake_seconds)s, %(max_failed)s, %(state)s, "
            "%(started_at)s, %(updated_at)s, %(step_started_at)s, %(baked_seconds)s, %(reason)s, "
            "%(author)s, %(sequence)s) RETURNING id",
            values,
        )
        self.changed.append("rollouts")
        record = _rollout({"id": int(row["id"]), **values})
        if audit is not None:
            self.append_audit(audit, version=record.candidate_version, at=now)
        return record

    def update_rollout(
        self, rollout: RolloutRecord, expected_sequence: int, audit: AuditEntry | None
    ) -> RolloutRecord | None:
        self._forget_snapshot()
        now = self.now()
        # The sequence is taken only when the row still has the expected one: a lost
        # compare-and-set takes none, so it makes no event.
        rows = self.rows(
            "WITH matched AS (SELECT id FROM rollouts WHERE id = %(id)s AND sequence = %(expected)s), "
            "taken AS (UPDATE sequence_counter SET last = last + 1 "
            "WHERE EXISTS (SELECT 1 FROM matched) RETURNING last) "
            "UPDATE rollouts SET step = %(step)s, state = %(state)s, "
            "step_started_at = %(step_started_at)s, baked_seconds = %(baked_seconds)s, "
            "reason = %(reason)s, updated_at = %(now)s, sequence = (SELECT last FROM taken) "
            f"WHERE id IN (SELECT id FROM matched) RETURNING {_ROLLOUT_COLUMNS}",
            {
                "id": rollout.id,
                "expected": expected_sequence,
                "step": rollout.step,
                "state": rollout.state,
                "step_started_at": rollout.step_started_at,
                "baked_seconds": float(rollout.baked_seconds),
                "reason": rollout.reason,
                "now": now,
            },
        )
        if not rows:
            return None
        self.changed.append("rollouts")
        if audit is not None:
            self.append_audit(audit, version=rollout.candidate_version, at=now)
        return _rollout(rows[0])

    def rollout_candidates(self) -> list[VersionRecord]:
        return [_version(row) for row in self.rows(_ROLLOUT_CANDIDATES)]

    def record_rollout_failure(self, rollout_id: int, instance_id: str, error: str | None) -> int:
        self.execute(
            "INSERT INTO rollout_failures (rollout_id, instance_id, at, error) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (rollout_id, instance_id) DO NOTHING",
            (rollout_id, instance_id, self.now(), error),
        )
        (row,) = self.rows(
            "SELECT COUNT(*) AS count FROM rollout_failures WHERE rollout_id = %s", (rollout_id,)
        )
        return int(row["count"])

    # -- services --------------------------------------------------------------------

    def service(self, name: str) -> ServiceRecord | None:
        rows = self.rows(f"SELECT {_SERVICE_COLUMNS} FROM services WHERE name = %s", (name,))
        return _service(rows[0]) if rows else None

    def create_service(
        self, name: str, origin: str, created_by: str | None, audit: AuditEntry | None
    ) -> tuple[ServiceRecord, bool]:
        known = self.service(name)
        if known is not None:
            return known, False
        self.changed.append("services")
        record = ServiceRecord(name=name, created_at=utc_now(), origin=origin, created_by=created_by)
        self.execute(
            "INSERT INTO services (name, created_at, origin, created_by) VALUES (%s, %s, %s, %s)",
            (record.name, record.created_at, record.origin, record.created_by),
        )
        if audit is not None:
            self.append_audit(audit, at=record.created_at)
        return record, True

    def append_version(
        self, new: NewVersion, if_match: IfMatch, audit: AuditEntry | None
    ) -> tuple[VersionRecord, bool]:
        retire = new.kind == "retire"
        # The checks run in the statement that writes (one round trip): the version is written
        # only when `guard` holds, and when it is not, what the statement read of the current
        # version says why. A retire is checked first, in Python.
        guard = "TRUE"
        if retire:
            current = self.current_version(new.service, new.environment)
            self._check(if_match, current.version if current else None, current.retired if current else False)
            if current is None:
                raise ValueError(f"{new.service}/{new.environment} has no version to retire")
            if current.retired:
                return current, False
        else:
            # A rollout's candidate is a new version even with the current source.
            candidate = new.kind == "rollout"
            guard = "TRUE" if candidate else "NOT EXISTS (SELECT 1 FROM cur WHERE kind <> 'retire' AND same)"
            if if_match == "*":
                guard += " AND EXISTS (SELECT 1 FROM cur WHERE kind <> 'retire')"
            elif isinstance(if_match, int):
                guard += " AND COALESCE((SELECT version FROM cur), 0) = %(if_match)s"
        values: dict[str, Any] = {
            "service": new.service,
            "environment": new.environment,
            "source": "" if retire else new.source,
            "config": None if retire else new.config,
            "hash": None if retire else new.hash,
            "author": new.author,
            "token_id": new.token_id,
            "message": new.message,
            "created_at": utc_now(),
            "kind": new.kind,
            "promoted_from_environment": new.promoted_from_environment,
            "promoted_from_version": new.promoted_from_version,
            "rolled_back_to": new.rolled_back_to,
            "kept_local": json.dumps(list(new.kept_local)) if new.kept_local is not None else None,
        }
        # The write lock is held: the counter's next value is the next sequence in commit
        # order, and the number is one past the highest the document ever had (a revived
        # document goes on from its retire). The pointer (not for a rollout's candidate, which
        # is current only for its cohort), the service (a first version of one without a row:
        # origin "file" for sync, else "push") and the audit entry go in the same statement.
        insert = (
            # The current version: the highest up to the pointer, which only the unique index
            # (service, environment, version) serves, in one step (a join on the pointer, or
            # an equality PostgreSQL may answer with versions_kind, scans every version of the
            # document). The sources are compared only when the hashes match (equal sources
            # have equal hashes), which spares decompressing the stored one.
            "WITH cur AS (SELECT version, kind, hash = %(hash)s::text AND source = %(source)s AS same "
            "FROM versions WHERE service = %(service)s AND environment = %(environment)s "
            "AND version <= (SELECT current_version FROM documents WHERE service = %(service)s "
            "AND environment = %(environment)s) ORDER BY version DESC LIMIT 1), "
            f"go AS (SELECT 1 AS go WHERE {guard}), "
            "taken AS (UPDATE sequence_counter SET last = last + 1 WHERE EXISTS (SELECT 1 FROM go) "
            "RETURNING last), "
            "added AS (INSERT INTO versions (sequence, service, environment, version, source, "
            "config, hash, author, token_id, message, created_at, kind, promoted_from_environment, "
            "promoted_from_version, rolled_back_to, kept_local) SELECT "
            "(SELECT last FROM taken), %(service)s::text, "
            "%(environment)s::text, (SELECT COALESCE(MAX(version), 0) + 1 FROM versions "
            "WHERE service = %(service)s AND environment = %(environment)s), %(source)s::text, "
            "%(config)s::text, %(hash)s::text, %(author)s::text, %(token_id)s::text, "
            "%(message)s::text, %(created_at)s::text, %(kind)s::text, "
            "%(promoted_from_environment)s::text, %(promoted_from_version)s::integer, "
            "%(rolled_back_to)s::integer, %(kept_local)s::text FROM go "
            "RETURNING sequence, version), "
            + ("" if new.kind == "rollout" else
               "pointed AS (INSERT INTO documents (service, environment, current_version) "
               "SELECT %(service)s, %(environment)s, version FROM added ON CONFLICT (service, "
               "environment) DO UPDATE SET current_version = excluded.current_version), ")
            + "known AS (INSERT INTO services (name, created_at, origin, created_by) "
            "SELECT %(service)s, %(created_at)s, %(origin)s, %(author)s FROM added "
            "ON CONFLICT (name) DO NOTHING)"
        )
        params = {**values, "origin": "file" if new.kind == "sync" else "push", "if_match": if_match}
        if audit is not None:
            insert += f", audited AS ({_AUDIT_INSERT_RETURNED})"
            params.update(_audit_params(audit, None, values["created_at"]))
        insert += (
            " SELECT (SELECT sequence FROM added) AS sequence, (SELECT version FROM added) AS version, "
            "(SELECT version FROM cur) AS current, (SELECT kind FROM cur) AS current_kind"
        )
        # Plain tuples: a push is this statement, and dict rows cost more than it does.
        sequence, version, current_number, current_kind = self.values(insert, params)
        if sequence is None:
            # Not written: the precondition failed, or the source is the current version's.
            self._check(if_match, current_number, current_kind == "retire")
            current = self.current_version(new.service, new.environment)
            assert current is not None and not current.retired
            return current, False
        record = _version({"sequence": int(sequence), "version": int(version), **values})
        self.created.append(record)
        return record, True

    @staticmethod
    def _check(if_match: IfMatch, current: int | None, retired: bool) -> None:
        """PreconditionFailed unless `if_match` holds for the current version `current`."""
        if if_match == "*" and (current is None or retired):
            raise PreconditionFailed(current)
        if isinstance(if_match, int) and if_match != (current or 0):
            raise PreconditionFailed(current)

    # -- schemas ---------------------------------------------------------------------

    def current_schema(self, name: str) -> SchemaRecord | None:
        rows = self.rows(
            f"SELECT {_SCHEMA_COLUMNS} FROM schemas WHERE name = %s ORDER BY version DESC LIMIT 1",
            (name,),
        )
        return _schema(rows[0]) if rows else None

    def append_schema(
        self,
        name: str,
        schema: str,
        hash: str,
        author: str,
        token_id: str | None,
        audit: AuditEntry | None,
    ) -> tuple[SchemaRecord, bool]:
        current = self.current_schema(name)
        if current is not None and current.hash == hash:
            return current, False
        self.changed.append("schemas")
        values: dict[str, Any] = {
            "name": name,
            "version": (current.version if current else 0) + 1,
            "schema": schema,
            "hash": hash,
            "author": author,
            "token_id": token_id,
            "created_at": utc_now(),
        }
        (row,) = self.rows(
            "INSERT INTO schemas (sequence, name, version, schema, hash, author, token_id, created_at) "
            "VALUES ((SELECT COALESCE(MAX(sequence), 0) + 1 FROM schemas), %(name)s, %(version)s, "
            "%(schema)s, %(hash)s, %(author)s, %(token_id)s, %(created_at)s) RETURNING sequence",
            values,
        )
        if audit is not None:
            self.append_audit(audit, version=values["version"], at=values["created_at"])
        return SchemaRecord(sequence=int(row["sequence"]), **values), True

    # -- tokens, instances, audit ----------------------------------------------------

    def has_tokens(self) -> bool:
        return bool(self.rows("SELECT 1 AS found FROM tokens LIMIT 1"))

    def insert_token(self, token: TokenRecord, audit: AuditEntry | None) -> None:
        self.changed.append("tokens")
        self.execute(
            "INSERT INTO tokens (id, name, role, services, environments, secret_hash, created_at, "
            "created_by, revoked_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                token.id,
                token.name,
                token.role,
                json.dumps(list(token.services)),
                json.dumps(list(token.environments)),
                token.secret_hash,
                token.created_at,
                token.created_by,
                token.revoked_at,
            ),
        )
        if audit is not None:
            self.append_audit(audit, at=token.created_at)

    def revoke_token(self, token_id: str, audit: AuditEntry | None) -> TokenRecord | None:
        rows = self.rows("SELECT * FROM tokens WHERE id = %s", (token_id,))
        if not rows:
            return None
        token = _token(rows[0])
        if token.revoked_at is None:
            self.changed.append("tokens")
            at = utc_now()
            self.execute("UPDATE tokens SET revoked_at = %s WHERE id = %s", (at, token_id))
            token = _token({**rows[0], "revoked_at": at})
            if audit is not None:
                self.append_audit(audit, at=at)
        return token

    def record_instance(
        self,
        report: InstanceReport,
        limit: int = MAX_INSTANCES_PER_DOCUMENT,
        forget_before: str | None = None,
    ) -> None:
        document = (report.service, report.environment)
        known = self.rows(
            "SELECT version, hash FROM instances WHERE service = %s AND environment = %s "
            "AND instance_id = %s",
            (*document, report.instance_id),
        )
        version, digest = report.version, report.hash
        failed_version, failed_hash = report.failed_version, report.failed_hash
        if report.status != "failed":
            failed_version = failed_hash = None
        elif failed_version is None:
            failed_version, failed_hash = version, digest
            version, digest = (known[0]["version"], known[0]["hash"]) if known else (None, None)
        if not known:
            self._make_room(report.service, report.environment, limit, forget_before)
        now = utc_now()
        self.execute(
            f"INSERT INTO instances ({_INSTANCE_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (service, environment, instance_id) DO UPDATE SET version = excluded.version, "
            "hash = excluded.hash, status = excluded.status, error = excluded.error, "
            "last_seen = excluded.last_seen, failed_version = excluded.failed_version, "
            "failed_hash = excluded.failed_hash, cohort = excluded.cohort",
            (
                *document,
                report.instance_id,
                version,
                digest,
                report.status,
                report.error,
                now,
                now,
                failed_version,
                failed_hash,
                report.cohort,
            ),
        )

    def _make_room(
        self, service: str, environment: str, limit: int, forget_before: str | None
    ) -> None:
        (row,) = self.rows(
            "SELECT COUNT(*) AS count FROM instances WHERE service = %s AND environment = %s",
            (service, environment),
        )
        count = int(row["count"])
        if count < limit:
            return
        if forget_before is not None:
            count -= self.execute(
                "DELETE FROM instances WHERE service = %s AND environment = %s AND instance_id IN "
                "(SELECT instance_id FROM instances WHERE service = %s AND environment = %s "
                "AND last_seen < %s ORDER BY last_seen, instance_id LIMIT %s)",
                (service, environment, service, environment, forget_before, count - limit + 1),
            )
        if count >= limit:
            raise TooManyInstances(limit)

    def append_audit(self, entry: AuditEntry, version: int | None = None, at: str | None = None) -> None:
        self.execute(_AUDIT_INSERT, _audit_params(entry, version, at))

    # -- console sessions (docs/console.md, "Sessions") ----------------------------------

    def insert_session(self, session: SessionRecord) -> None:
        self.execute(
            "INSERT INTO sessions (id_hash, token_id, csrf, created_at, last_seen) "
            "VALUES (%s, %s, %s, %s, %s)",
            (session.id_hash, session.token_id, session.csrf, session.created_at, session.last_seen),
        )

    def touch_session(self, id_hash: str, last_seen: str) -> None:
        self.execute(
            "UPDATE sessions SET last_seen = %s WHERE id_hash = %s AND last_seen < %s",
            (last_seen, id_hash, last_seen),
        )

    def delete_session(self, id_hash: str) -> None:
        self.execute("DELETE FROM sessions WHERE id_hash = %s", (id_hash,))

    def delete_sessions(self, token_id: str | None = None, idle_before: str | None = None) -> int:
        removed = 0
        if token_id is not None:
            removed += self.execute("DELETE FROM sessions WHERE token_id = %s", (token_id,))
        if idle_before is not None:
            removed += self.execute("DELETE FROM sessions WHERE last_seen < %s", (idle_before,))
        return removed



class Listening:
    """A running `PostgresStore.listen`: `stop()` ends it."""

    def __init__(self, thread: threading.Thread, stopping: threading.Event) -> None:
        self._thread = thread
        self._stopping = stopping

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)


class PostgresChanges:
    """Commits by any process on the store, heard through LISTEN (`PostgresStore.listen`):
    `start(poke, missed)` calls `poke()` at each notification; when the listening connection
    is lost and each time it is made (again) it calls `missed()` then `poke()` (the catch-up
    that covers what went unheard; it fails while PostgreSQL is away, which keeps the process
    counted as possibly behind). `changed()` says whether one came since the last call, and
    says so at every call while the connection is down: the process then reads the store at
    every check instead of waiting for a notification that cannot come."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._flag = threading.Event()
        self._connected = False
        self._listening: Listening | None = None

    def start(
        self,
        poke: Callable[[], None],
        missed: Callable[[], None] | None = None,
        *,
        own_commits: bool = True,
    ) -> None:
        def heard(*_: object) -> None:
            self._flag.set()
            poke()

        def connected(now: bool) -> None:
            self._connected = now
            if missed is not None:
                missed()
            heard()

        self._listening = self._store.listen(
            heard,
            lambda: connected(True),
            on_change=heard,
            on_lost=lambda: connected(False),
            own_commits=own_commits,
        )

    def changed(self) -> bool:
        if self._flag.is_set():
            self._flag.clear()
            return True
        return not self._connected

    def close(self) -> None:
        if self._listening is not None:
            self._listening.stop()
            self._listening = None


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


class PostgresStore(SqlReads, Store):
    """The store on a PostgreSQL database, shared by any number of server replicas.

    `dsn` is a libpq URL (`postgresql://user@host:5432/db`). Reads use a small connection pool
    (autocommit: each sees every committed write); writes go through one writer thread and
    its own connection (see the module's docstring for the consistency rules).
    """


    PARAMETER = "%s"
    def __init__(self, dsn: str, *, pool_size: int = 8, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._writer: psycopg.Connection[Any] | None = None
        self._writes = GroupCommit(self._commit)
        self._listeners: list[CommitListener] = []
        self._closed = True
        # Set when a read found PostgreSQL away, cleared by the next one that reaches it.
        self._away = False
        self._leader: psycopg.Connection[Any] | None = None
        self._services: dict[str, ServiceRecord] = {}
        self._leader_lock = threading.Lock()
        # The sequences this store's writer notified, while a listener skips its own commits
        # (`listen(own_commits=False)`): taken off as their notifications arrive. Committed
        # sequences are never reused, so one whose notification never came (the listening
        # connection was lost) is only memory, bounded by MAX_OWN_NOTIFIED.
        self._own_notified: dict[int, None] = {}
        self._own_lock = threading.Lock()
        self._skipping = 0

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r})"

    def _notifying(self, sequence: int) -> bool:
        """Remember that this writer is about to notify `sequence` (when a listener skips
        its own commits); True when it was remembered."""
        with self._own_lock:
            if not self._skipping:
                return False
            self._own_notified[sequence] = None
            while len(self._own_notified) > MAX_OWN_NOTIFIED:
                del self._own_notified[next(iter(self._own_notified))]
            return True

    def _not_notified(self, sequence: int) -> None:
        """The commit that was to notify `sequence` failed: another replica may take it."""
        with self._own_lock:
            self._own_notified.pop(sequence, None)

    def _was_own(self, sequence: int) -> bool:
        """Whether `sequence` was notified by this store's own writer (forgotten once asked)."""
        with self._own_lock:
            return self._own_notified.pop(sequence, _MISSING) is not _MISSING

    # -- connections -----------------------------------------------------------------

    def _options(self, name: str) -> dict[str, Any]:
        """libpq options for every connection, unless the DSN sets them: a connect timeout,
        and TCP keepalives, so a connection to a PostgreSQL that vanished (a network cut, a
        powered-off machine) fails within about half a minute instead of hanging a write."""
        options: dict[str, Any] = {
            "application_name": name,
            "connect_timeout": max(1, int(self.connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        given = conninfo_to_dict(self.dsn)
        return {key: value for key, value in options.items() if key not in given}

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to the store's database (StoreUnavailable when away)."""
        try:
            return psycopg.connect(self.dsn, autocommit=True, **self._options("tskcfg"))
        except _UNREACHABLE as error:
            raise _unavailable(error) from error

    def open(self) -> None:
        with self.connect() as connection:
            try:
                migrate(connection)
            except _UNREACHABLE as error:
                raise _unavailable(error) from error
        self._pool = ConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, **self._options("tskcfg")},
            timeout=self.connect_timeout,
            reconnect_timeout=0,
            open=False,
            name="tskcfg-store",
        )
        try:
            self._pool.open(wait=True, timeout=self.connect_timeout)
        except _UNREACHABLE as error:
            self._pool.close()
            self._pool = None
            raise _unavailable(error) from error
        self._writer = self.connect()
        self._closed = False
        self._writes.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._leader_lock:
            if self._leader is not None:
                self._leader.close()
                self._leader = None
        self._writes.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self._pool
        if self._closed or pool is None:
            raise RuntimeError("the store is closed")
        if self._away:
            # Known to be away: one direct attempt fails at once (connection refused) where
            # the pool would wait its whole timeout for a connection.
            self.connect().close()
            self._away = False
        try:
            try:
                connection = pool.getconn(timeout=QUICK_POOL_WAIT)
            except PoolTimeout:
                # Busy, or PostgreSQL away: a direct attempt tells which, at once.
                self.connect().close()
                connection = pool.getconn()
        except StoreUnavailable:
            self._away = True
            raise
        except _UNREACHABLE as error:
            self._away = True
            raise _unavailable(error) from error
        try:
            yield connection
        except _UNREACHABLE as error:
            if connection.broken and not self._closed:
                # The connection broke (PostgreSQL restarted since it was made, or went away):
                # the pool drops it when it comes back; the caller may try another.
                raise _StaleConnection(error) from error
            self._away = True
            raise _unavailable(error) from error
        finally:
            pool.putconn(connection)

    def _query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        # Pooled connections are not checked before use (a round trip per read): one that a
        # restart of PostgreSQL broke fails, is dropped, and the read tries the next one.
        for _ in range(self.pool_size + 1):
            try:
                with self._connection() as connection:
                    return _rows(connection, sql, params)
            except _StaleConnection:
                continue
        self._away = True
        raise StoreUnavailable("the PostgreSQL store cannot be reached (every connection failed)")

    def check(self) -> None:
        self._query("SELECT 1 AS ok")
        if not self._writes.running():
            raise RuntimeError("the store's writer is not running")

    def lead(self) -> bool:
        """True while this process holds the store's lease on work that must run in one
        process (LEADER_LOCK, on a connection of its own); takes it when it is free. Lost
        with that connection (PostgreSQL restarted, this process ended): then another
        process, or this one again, takes it."""
        with self._leader_lock:
            if self._closed:
                return False
            held = self._leader
            if held is not None:
                try:
                    held.execute("SELECT 1")
                    return True
                except _UNREACHABLE:
                    held.close()
                    self._leader = None
            try:
                connection = self.connect()
            except StoreUnavailable:
                return False
            try:
                row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            except _UNREACHABLE:
                connection.close()
                return False
            if row is not None and row[0]:
                self._leader = connection
                return True
            connection.close()
            return False

    def change_signal(self) -> PostgresChanges:
        """A new signal of the commits of every process sharing this store."""
        if self._closed:
            raise RuntimeError("the store is closed")
        return PostgresChanges(self)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """`listener(created)` after each of this store's commits that created versions, in
        commit order, on the writer thread. Other replicas' commits: see `listen`."""
        self._listeners.append(listener)

    def listen(
        self,
        on_sequence: Callable[[int], None],
        on_connected: Callable[[], None],
        retry_every: float = 0.5,
        on_change: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        own_commits: bool = True,
    ) -> Listening:
        """Follow every replica's commits: LISTEN on `CHANNEL` on a connection of its own.

        `on_sequence(s)` runs (on the listening thread) for each commit that created versions,
        `s` its last sequence; read `versions_after(last seen)` to catch up. `on_change(kind)`
        runs for each commit that changed tokens, schemas or services (`kind`: one of
        CHANGE_KINDS): read them again. `on_connected()`
        runs each time the connection is made (again), after LISTEN: notifications may have
        been missed while it was down, so catch up from the last sequence seen. `on_lost()` runs
        as soon as the connection is lost (notifications may be missed from then on). While
        PostgreSQL is away it tries again every `retry_every` seconds. Returns a handle whose
        `stop()` ends it.

        `own_commits=False`: `on_sequence` is not called for the commits of this store object's
        own writer (its caller hands those on from a commit listener, so reading them back
        would be wasted work).
        """
        stopping = threading.Event()

        def lost() -> None:
            if on_lost is not None:
                try:
                    on_lost()
                except Exception:
                    logger.exception("PostgreSQL store: on_lost failed")

        def run() -> None:
            if not own_commits:
                with self._own_lock:
                    self._skipping += 1
            try:
                follow()
            finally:
                if not own_commits:
                    with self._own_lock:
                        self._skipping -= 1

        def follow() -> None:
            while not stopping.is_set():
                try:
                    with psycopg.connect(
                        self.dsn, autocommit=True, **self._options("tskcfg-listen")
                    ) as connection:
                        connection.execute(f"LISTEN {CHANNEL}")
                        on_connected()
                        while not stopping.is_set():
                            for notify in connection.notifies(timeout=0.5):
                                if notify.payload.isdigit():
                                    sequence = int(notify.payload)
                                    if own_commits or not self._was_own(sequence):
                                        on_sequence(sequence)
                                elif on_change is not None and notify.payload in CHANGE_KINDS:
                                    on_change(notify.payload)
                except _UNREACHABLE as error:
                    if not stopping.is_set():
                        logger.warning(
                            "PostgreSQL store: listening for changes failed (%s); retrying", error
                        )
                        lost()
                    stopping.wait(retry_every)
                except Exception:
                    logger.exception("PostgreSQL store: a change listener failed; retrying")
                    lost()
                    stopping.wait(retry_every)

        thread = threading.Thread(target=run, name="tskcfg-store-listen", daemon=True)
        thread.start()
        return Listening(thread, stopping)

    # -- the writer ------------------------------------------------------------------

    def write(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> T:
        return self.submit(operation, exclusive).result()

    def submit(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> Future[T]:
        if self._closed:
            raise RuntimeError("the store is closed")
        return self._writes.submit(operation, exclusive)

    def _writer_connection(self) -> psycopg.Connection[Any]:
        """The writer's connection, made (again) when there is none or it broke."""
        connection = self._writer
        if connection is None or connection.closed or connection.broken:
            if connection is not None:
                connection.close()
            self._writer = None
            connection = self._writer = self.connect()
        return connection

    def _commit(self, batch: list[Write]) -> None:
        # Several operations first run without savepoints (a savepoint each is two more
        # statements, and a subtransaction, per operation): almost always none raises. When
        # one does, that transaction is rolled back and the batch runs again, each operation
        # in its own savepoint, so the one that raises undoes only its own changes.
        if len(batch) > 1 and self._run(batch, careful=False):
            return
        self._run(batch, careful=True)

    def _run(self, batch: list[Write], careful: bool, reconnected: bool = False) -> bool:
        """Run and commit `batch`, then answer its writers; True when done. Not `careful`:
        without savepoints, and False (nothing written, nobody answered) as soon as an
        operation raises. A connection found lost before any answer came back (PostgreSQL
        restarted since it was made) is made again, once, and the batch run again."""
        outcomes: list[tuple[bool, Any]] = []
        transaction: PostgresTransaction | None = None
        own: int | None = None  # the sequence notified, remembered as this writer's own
        committing = False
        try:
            connection = self._writer_connection()
            # Pipeline mode: statements whose results are not needed yet (BEGIN, the lock,
            # savepoints) are sent with the next one whose result is, in one round trip.
            with connection.pipeline() as pipeline:
                connection.execute("BEGIN")
                connection.execute(_LOCK)
                snapshot = connection.cursor()
                snapshot.execute(_ACTIVE_SNAPSHOT)
                transaction = PostgresTransaction(connection, snapshot)
                transaction.pipeline = pipeline
                # An operation alone in its transaction needs no savepoint: if it fails, the
                # whole transaction is rolled back instead.
                savepoints = careful and len(batch) > 1
                for item in batch:
                    created, callbacks = len(transaction.created), len(transaction.callbacks)
                    changed = len(transaction.changed)
                    if savepoints:
                        connection.execute("SAVEPOINT operation")
                    try:
                        result = item.operation(transaction)
                    except _UNREACHABLE:
                        raise  # the connection is gone: the whole batch fails below
                    except BaseException as error:  # the caller gets it; the batch goes on
                        if not careful:
                            break
                        if savepoints:
                            connection.execute("ROLLBACK TO SAVEPOINT operation")
                            connection.execute("RELEASE SAVEPOINT operation")
                        del transaction.created[created:]
                        del transaction.callbacks[callbacks:]
                        del transaction.changed[changed:]
                        outcomes.append((False, error))
                    else:
                        if savepoints:
                            connection.execute("RELEASE SAVEPOINT operation")
                        outcomes.append((True, result))
                if len(outcomes) < len(batch) or not any(succeeded for succeeded, _ in outcomes):
                    # One raised before the others ran (run again, carefully), or none
                    # succeeded: nothing of it is kept; nothing to tell.
                    connection.execute("ROLLBACK")
                else:
                    # Delivered to every listener when (and only if) this transaction commits.
                    if transaction.created:
                        notified = transaction.created[-1].sequence
                        if self._notifying(notified):
                            own = notified
                        connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(notified)))
                    for kind in dict.fromkeys(transaction.changed):
                        connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, kind))
                    committing = True  # past here, a lost connection may have committed
                    connection.execute("COMMIT")
            if len(outcomes) < len(batch):
                return False
        except BaseException as error:
            if own is not None:
                self._not_notified(own)
            failure: BaseException = error
            if isinstance(error, _UNREACHABLE):
                failure = _unavailable(error)
            writer = self._writer
            if writer is not None:
                try:
                    if not writer.broken:
                        writer.execute("ROLLBACK")
                except _UNREACHABLE:
                    pass
                if writer.broken:
                    writer.close()
                    self._writer = None
            lost = isinstance(error, (StoreUnavailable, *_UNREACHABLE))
            if lost and not reconnected and not committing and (transaction is None or not transaction.reached):
                # Nothing of this batch reached PostgreSQL: a connection that broke while idle.
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                return self._run(batch, careful, reconnected=True)
            for item in batch:
                item.future.set_exception(failure)
            return True
        for callback in transaction.callbacks:
            try:
                callback()
            except Exception:
                logger.exception("after-commit callback failed")
        if transaction.created:
            for listener in self._listeners:
                try:
                    listener(transaction.created)
                except Exception:
                    logger.exception("commit listener failed")
        for item, (succeeded, value) in zip(batch, outcomes, strict=True):
            if succeeded:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
        return True

    # -- versions and services (the other reads are SqlReads') ------------------------

    def last_sequence(self) -> int:
        # The table sequence_counter, where SQLite has its own counter (sqlite_sequence).
        return int(self._query("SELECT last FROM sequence_counter")[0]["last"])

    def changes_after(self, sequence: int, limit: int) -> tuple[int, list[VersionRecord]]:
        # One statement, one snapshot: the counter and the versions committed with it.
        rows = self._query(
            f"SELECT c.last AS bound, v.* FROM sequence_counter AS c LEFT JOIN LATERAL (SELECT "
            f"{_LISTED_VERSION_COLUMNS} FROM versions WHERE sequence > %s ORDER BY sequence "
            "LIMIT %s) AS v ON TRUE ORDER BY v.sequence",
            (sequence, limit),
        )
        bound = int(rows[0]["bound"])
        records = [
            _version({key: value for key, value in row.items() if key != "bound"})
            for row in rows
            if row["sequence"] is not None  # none after `sequence`: only the counter's row
        ]
        return bound, records

    def service(self, name: str) -> ServiceRecord | None:
        # A service's row never changes and is never deleted (retiring a service retires its
        # documents), so one found is remembered: a push asks for its service every time.
        known = self._services.get(name)
        if known is not None:
            return known
        record = super().service(name)
        if record is not None and len(self._services) < MAX_REMEMBERED_SERVICES:
            self._services[name] = record
        return record
