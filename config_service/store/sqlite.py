"""The store on one SQLite file: the group-commit writer thread, the writes, and the reads
(the tables and their upgrades are in `sqlite_schema`).

Durability: WAL with `synchronous=FULL`, so a commit is on disk (WAL fsynced) before the
method returns and the server answers. Writes are operations run by one writer thread on one
connection, so version numbers are allocated without races, and the operations waiting at
the same moment share one transaction and one fsync (group commit); reads use one connection
per thread and never wait for writers (WAL).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from config_service.store.data_folder import (
    DataFolderLock,
    create_private_file,
    make_private_folder,
    try_lock_file,
)
from config_service.store.group_commit import GroupCommit, Write
from config_service.store.interface import ChangeSignal, CommitListener, Store, Transaction
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
    TokenRecord,
    TooManyInstances,
    VersionRecord,
    utc_now,
)
from config_service.store.sql_reads import (
    ACTIVE_ROLLOUT,
    CURRENT_SCHEMA,
    CURRENT_VERSION,
    DOCUMENT,
    SERVICE,
    SqlReads,
    document_state,
    schema_record,
    service_record,
)
from config_service.store.sql_reads import CURRENT_VERSIONS as _CURRENT_VERSIONS
from config_service.store.sql_reads import ROLLOUT_CANDIDATES as _ROLLOUT_CANDIDATES
from config_service.store.sql_reads import ROLLOUT_COLUMNS as _ROLLOUT_COLUMNS
from config_service.store.sql_reads import rollout_record as _rollout
from config_service.store.sql_reads import token_record as _token
from config_service.store.sql_reads import version_record as _version
from config_service.store.sqlite_schema import upgrade

T = TypeVar("T")
R = TypeVar("R")

# Beside the database: held by the one worker that runs what must run once (file sync).
LEADER_LOCK = "leader.lock"
# Beside the database: held while a process opens (and perhaps upgrades) it.
OPEN_LOCK = "open.lock"

def _rows(
    connection: sqlite3.Connection, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
) -> list[dict[str, Any]]:
    cursor = connection.execute(sql, params)
    columns = [description[0] for description in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _one(
    connection: sqlite3.Connection, convert: Callable[[dict[str, Any]], R], sql: str, *params: Any
) -> R | None:
    rows = _rows(connection, sql, params)
    return convert(rows[0]) if rows else None


# Versions take sequences by AUTOINCREMENT; rollout changes take them from the same counter
# (`SqliteTransaction.next_sequence`), so both share one order.
_LAST_SEQUENCE = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'versions'), 0) AS bound"


def _last_sequence(connection: sqlite3.Connection) -> int:
    (last,) = connection.execute(_LAST_SEQUENCE).fetchone()
    return int(last)


# The reads the writer's transaction makes on its own connection (the store's own reads are
# `SqlReads`, on the reading connections).


def _active_rollout(
    connection: sqlite3.Connection, service: str, environment: str
) -> RolloutRecord | None:
    return _one(connection, _rollout, ACTIVE_ROLLOUT, service, environment)


def _current_version(
    connection: sqlite3.Connection, service: str, environment: str
) -> VersionRecord | None:
    return _one(connection, _version, CURRENT_VERSION, service, environment, service, environment)


def _document_state(
    connection: sqlite3.Connection, service: str, environment: str
) -> DocumentState | None:
    return _one(connection, document_state, DOCUMENT, service, environment)


def _get_service(connection: sqlite3.Connection, name: str) -> ServiceRecord | None:
    return _one(connection, service_record, SERVICE, name)


def _current_schema(connection: sqlite3.Connection, name: str) -> SchemaRecord | None:
    return _one(connection, schema_record, CURRENT_SCHEMA, name)


class SqliteTransaction(Transaction):
    """`Transaction` on the writer thread's connection, inside the batch's transaction.

    Each operation runs in its own savepoint, so one that raises (a failed precondition, a
    refused schema) undoes only its own changes; the others in the batch still commit.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.created: list[VersionRecord] = []
        self.callbacks: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        # On the writer thread, once the whole batch is durable.
        self.callbacks.append(callback)

    def rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return _rows(self.connection, sql, params)

    # -- versions --------------------------------------------------------------------

    def current_version(self, service: str, environment: str) -> VersionRecord | None:
        return _current_version(self.connection, service, environment)

    def current_versions(self) -> list[VersionRecord]:
        return [_version(row) for row in self.rows(_CURRENT_VERSIONS)]

    def append_version(
        self, new: NewVersion, if_match: IfMatch, audit: AuditEntry | None
    ) -> tuple[VersionRecord, bool]:
        current = self.current_version(new.service, new.environment)
        current_number = current.version if current else 0
        if if_match == "*" and (current is None or current.retired):
            raise PreconditionFailed(current.version if current else None)
        if isinstance(if_match, int) and if_match != current_number:
            raise PreconditionFailed(current.version if current else None)
        if new.kind == "retire":
            if current is None:
                raise ValueError(f"{new.service}/{new.environment} has no version to retire")
            if current.retired:
                return current, False
        elif (
            new.kind != "rollout"
            and current is not None
            and not current.retired
            and current.source == new.source
        ):
            return current, False
        (last,) = self.connection.execute(
            "SELECT COALESCE(MAX(version), 0) FROM versions WHERE service = ? AND environment = ?",
            (new.service, new.environment),
        ).fetchone()
        retire = new.kind == "retire"
        values: dict[str, Any] = {
            "service": new.service,
            "environment": new.environment,
            "version": int(last) + 1,
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
        cursor = self.connection.execute(
            "INSERT INTO versions (service, environment, version, source, config, hash, author, "
            "token_id, message, created_at, kind, promoted_from_environment, "
            "promoted_from_version, rolled_back_to, kept_local) VALUES (:service, :environment, "
            ":version, :source, :config, :hash, :author, :token_id, :message, :created_at, :kind, "
            ":promoted_from_environment, :promoted_from_version, :rolled_back_to, :kept_local)",
            values,
        )
        if new.kind != "rollout":  # a candidate is current only for its cohort
            self.set_current_version(new.service, new.environment, values["version"])
        # A service with a version exists; one that did not yet came from this write.
        self.connection.execute(
            "INSERT INTO services (name, created_at, origin, created_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (new.service, values["created_at"], "file" if new.kind == "sync" else "push", new.author),
        )
        record = _version({"sequence": int(cursor.lastrowid or 0), **values})
        if audit is not None:
            self.append_audit(audit, version=record.version, at=record.created_at)
        self.created.append(record)
        return record, True

    def set_current_version(self, service: str, environment: str, version: int) -> None:
        self.connection.execute(
            "INSERT INTO documents (service, environment, current_version) VALUES (?, ?, ?) "
            "ON CONFLICT (service, environment) DO UPDATE SET current_version = excluded.current_version",
            (service, environment, version),
        )

    def document(self, service: str, environment: str) -> DocumentState | None:
        return _document_state(self.connection, service, environment)

    # -- rollouts --------------------------------------------------------------------

    def now(self) -> str:
        return utc_now()

    def next_sequence(self) -> int:
        """Take the next global sequence for a change that is not a version row."""
        self.connection.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'versions', 0 "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'versions')"
        )
        (taken,) = self.connection.execute(
            "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'versions' RETURNING seq"
        ).fetchone()
        return int(taken)

    def active_rollout(self, service: str, environment: str) -> RolloutRecord | None:
        return _active_rollout(self.connection, service, environment)

    def insert_rollout(self, new: NewRollout, audit: AuditEntry | None) -> RolloutRecord:
        now = self.now()
        values: dict[str, Any] = {
            "service": new.service,
            "environment": new.environment,
            "candidate_version": new.candidate_version,
            "stable_version": new.stable_version,
            "steps": json.dumps(list(new.steps)),
            "step": 0,
            "bake_seconds": new.bake_seconds,
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
        cursor = self.connection.execute(
            f"INSERT INTO rollouts ({_ROLLOUT_COLUMNS.removeprefix('id, ')}) VALUES "
            "(:service, :environment, :candidate_version, :stable_version, :steps, :step, "
            ":bake_seconds, :max_failed, :state, :started_at, :updated_at, :step_started_at, "
            ":baked_seconds, :reason, :author, :sequence)",
            values,
        )
        record = _rollout({"id": int(cursor.lastrowid or 0), **values})
        if audit is not None:
            self.append_audit(audit, version=record.candidate_version, at=now)
        return record

    def update_rollout(
        self, rollout: RolloutRecord, expected_sequence: int, audit: AuditEntry | None
    ) -> RolloutRecord | None:
        now = self.now()
        sequence = self.next_sequence()
        cursor = self.connection.execute(
            "UPDATE rollouts SET step = ?, state = ?, step_started_at = ?, baked_seconds = ?, "
            "reason = ?, updated_at = ?, sequence = ? WHERE id = ? AND sequence = ?",
            (
                rollout.step,
                rollout.state,
                rollout.step_started_at,
                rollout.baked_seconds,
                rollout.reason,
                now,
                sequence,
                rollout.id,
                expected_sequence,
            ),
        )
        if cursor.rowcount != 1:
            # Undo the sequence taken: nothing changed, so no event.
            self.connection.execute(
                "UPDATE sqlite_sequence SET seq = seq - 1 WHERE name = 'versions' AND seq = ?",
                (sequence,),
            )
            return None
        if audit is not None:
            self.append_audit(audit, version=rollout.candidate_version, at=now)
        rows = self.rows(f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE id = ?", (rollout.id,))
        return _rollout(rows[0])

    def rollout_candidates(self) -> list[VersionRecord]:
        return [_version(row) for row in self.rows(_ROLLOUT_CANDIDATES)]

    def record_rollout_failure(self, rollout_id: int, instance_id: str, error: str | None) -> int:
        self.connection.execute(
            "INSERT INTO rollout_failures (rollout_id, instance_id, at, error) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (rollout_id, instance_id) DO NOTHING",
            (rollout_id, instance_id, self.now(), error),
        )
        (count,) = self.connection.execute(
            "SELECT COUNT(*) FROM rollout_failures WHERE rollout_id = ?", (rollout_id,)
        ).fetchone()
        return int(count)

    def set_sync_state(
        self, service: str, environment: str, file: str | None, file_version: int | None, conflict: bool
    ) -> None:
        cursor = self.connection.execute(
            "UPDATE documents SET file = ?, file_version = ?, sync_conflict = ? "
            "WHERE service = ? AND environment = ?",
            (file, file_version, int(conflict), service, environment),
        )
        if cursor.rowcount != 1:
            raise ValueError(f"{service}/{environment} has no version to sync")

    # -- services --------------------------------------------------------------------

    def service(self, name: str) -> ServiceRecord | None:
        return _get_service(self.connection, name)

    def create_service(
        self, name: str, origin: str, created_by: str | None, audit: AuditEntry | None
    ) -> tuple[ServiceRecord, bool]:
        known = self.service(name)
        if known is not None:
            return known, False
        record = ServiceRecord(name=name, created_at=utc_now(), origin=origin, created_by=created_by)
        self.connection.execute(
            "INSERT INTO services (name, created_at, origin, created_by) VALUES (?, ?, ?, ?)",
            (record.name, record.created_at, record.origin, record.created_by),
        )
        if audit is not None:
            self.append_audit(audit, at=record.created_at)
        return record, True

    # -- schemas ---------------------------------------------------------------------

    def current_schema(self, name: str) -> SchemaRecord | None:
        return _current_schema(self.connection, name)

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
        values: dict[str, Any] = {
            "name": name,
            "version": (current.version if current else 0) + 1,
            "schema": schema,
            "hash": hash,
            "author": author,
            "token_id": token_id,
            "created_at": utc_now(),
        }
        cursor = self.connection.execute(
            "INSERT INTO schemas (name, version, schema, hash, author, token_id, created_at) "
            "VALUES (:name, :version, :schema, :hash, :author, :token_id, :created_at)",
            values,
        )
        if audit is not None:
            self.append_audit(audit, version=values["version"], at=values["created_at"])
        return SchemaRecord(sequence=int(cursor.lastrowid or 0), **values), True

    # -- tokens, instances, audit ----------------------------------------------------

    def has_tokens(self) -> bool:
        return bool(self.rows("SELECT 1 AS found FROM tokens LIMIT 1"))

    def insert_token(self, token: TokenRecord, audit: AuditEntry | None) -> None:
        self.connection.execute(
            "INSERT INTO tokens (id, name, role, services, environments, secret_hash, created_at, "
            "created_by, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        rows = self.rows("SELECT * FROM tokens WHERE id = ?", (token_id,))
        if not rows:
            return None
        token = _token(rows[0])
        if token.revoked_at is None:
            at = utc_now()
            self.connection.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (at, token_id))
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
            "SELECT version, hash FROM instances WHERE service = ? AND environment = ? "
            "AND instance_id = ?",
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
        self.connection.execute(
            "INSERT INTO instances (service, environment, instance_id, version, hash, status, error, "
            "first_seen, last_seen, failed_version, failed_hash, cohort) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
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
        (count,) = self.connection.execute(
            "SELECT COUNT(*) FROM instances WHERE service = ? AND environment = ?",
            (service, environment),
        ).fetchone()
        if count < limit:
            return
        if forget_before is not None:
            cursor = self.connection.execute(
                "DELETE FROM instances WHERE service = ? AND environment = ? AND instance_id IN "
                "(SELECT instance_id FROM instances WHERE service = ? AND environment = ? "
                "AND last_seen < ? ORDER BY last_seen, instance_id LIMIT ?)",
                (service, environment, service, environment, forget_before, count - limit + 1),
            )
            count -= cursor.rowcount
        if count >= limit:
            raise TooManyInstances(limit)

    def append_audit(self, entry: AuditEntry, version: int | None = None, at: str | None = None) -> None:
        self.connection.execute(
            "INSERT INTO audit (at, actor, token_id, action, service, environment, version, request_id, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at or utc_now(),
                entry.actor,
                entry.token_id,
                entry.action,
                entry.service,
                entry.environment,
                entry.version if entry.version is not None else version,
                entry.request_id,
                json.dumps(entry.detail, ensure_ascii=False),
            ),
        )

    # -- console sessions (docs/console.md, "Sessions") ----------------------------------

    def insert_session(self, session: SessionRecord) -> None:
        self.connection.execute(
            "INSERT INTO sessions (id_hash, token_id, csrf, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
            (session.id_hash, session.token_id, session.csrf, session.created_at, session.last_seen),
        )

    def touch_session(self, id_hash: str, last_seen: str) -> None:
        self.connection.execute(
            "UPDATE sessions SET last_seen = ? WHERE id_hash = ? AND last_seen < ?",
            (last_seen, id_hash, last_seen),
        )

    def delete_session(self, id_hash: str) -> None:
        self.connection.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    def delete_sessions(self, token_id: str | None = None, idle_before: str | None = None) -> int:
        removed = 0
        if token_id is not None:
            removed += self.connection.execute(
                "DELETE FROM sessions WHERE token_id = ?", (token_id,)
            ).rowcount
        if idle_before is not None:
            removed += self.connection.execute(
                "DELETE FROM sessions WHERE last_seen < ?", (idle_before,)
            ).rowcount
        return removed


class SqliteChanges(ChangeSignal):
    """Commits to one SQLite file by any connection, seen through `PRAGMA data_version`.

    The pragma reads a counter in the file's shared memory (WAL index): it changes whenever
    another connection, in this process or another, committed. Checking it costs no disk
    read, so a worker may check it every few tens of milliseconds.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._lock = threading.Lock()
        self._seen = self._data_version()

    def _data_version(self) -> int:
        connection = self._connection
        if connection is None:
            return 0
        return int(connection.execute("PRAGMA data_version").fetchone()[0])

    def start(
        self,
        poke: Callable[[], None],
        missed: Callable[[], None] | None = None,
        *,
        own_commits: bool = True,
    ) -> None:
        """Nothing to listen to (and no connection to lose): `changed` is asked."""

    def changed(self) -> bool:
        with self._lock:
            if self._connection is None:
                return False
            try:
                now = self._data_version()
            except sqlite3.Error:
                return True  # could not tell: read the store, which says what it can
            changed = now != self._seen
            self._seen = now
            return changed

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None



class SqliteStore(SqlReads, Store):
    """The store on one SQLite file (WAL, synchronous=FULL).

    Every write is an operation handed to one writer thread (`group_commit.GroupCommit`). The
    thread takes all the operations waiting, runs each in its own savepoint inside one
    transaction, commits once
    (one fsync for the batch: group commit), then tells the commit listeners and answers
    each caller. So writes are serialised (version numbers cannot collide), a caller is
    answered only once its write is on disk, and concurrent writers share the cost of fsync.
    """

    LAST_SEQUENCE = _LAST_SEQUENCE

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        self._writes = GroupCommit(self._commit)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._listeners: list[CommitListener] = []
        self._closed = True
        self._leader: DataFolderLock | None = None

    # -- connections -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        connection.execute("PRAGMA busy_timeout = 30000")
        # FULL: the WAL is fsynced at every commit, so an answered write survives power
        # loss too, not only kill -9 (NORMAL would only guarantee the latter).
        connection.execute("PRAGMA synchronous = FULL")
        return connection

    def open(self) -> None:
        # The file holds every document and token hash: 0600 in a 0700 folder. SQLite makes
        # its -wal and -shm files with the database file's mode.
        make_private_folder(self.path.parent)
        create_private_file(self.path)
        # Workers of one server open the file together: one at a time, so one upgrades it.
        opening = try_lock_file(self.path.parent / OPEN_LOCK, wait=True)
        try:
            connection = self._connect()
            connection.execute("PRAGMA journal_mode = WAL")
            try:
                upgrade(connection, self.path)
            except BaseException:
                connection.close()
                raise
        finally:
            if opening is not None:
                opening.release()
        self._writer = connection
        self._closed = False
        self._writes.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writes.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with self._readers_lock:
            for connection in self._readers:
                try:
                    connection.close()
                except sqlite3.Error:
                    pass
            self._readers.clear()
        self._local = threading.local()
        if self._leader is not None:
            self._leader.release()
            self._leader = None

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the store is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            connection.execute("PRAGMA query_only = ON")
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    def _query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return _rows(self._reader(), sql, params)

    def check(self) -> None:
        self._query("SELECT 1 AS ok")
        if not self._writes.running():
            raise RuntimeError("the store's writer is not running")

    def integrity_check(self) -> str:
        rows = self._query("PRAGMA integrity_check")
        return str(next(iter(rows[0].values()))) if rows else "no answer"

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def lead(self) -> bool:
        # A lock file beside the database: the kernel frees it when its holder ends.
        if self._leader is None and not self._closed:
            self._leader = try_lock_file(self.path.parent / LEADER_LOCK)
        return self._leader is not None

    def change_signal(self) -> SqliteChanges:
        if self._closed:
            raise RuntimeError("the store is closed")
        connection = self._connect()
        connection.execute("PRAGMA query_only = ON")
        return SqliteChanges(connection)

    # -- the writer ------------------------------------------------------------------

    def write(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> T:
        # On the writer thread: see the class docstring.
        return self.submit(operation, exclusive).result()

    def submit(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> Future[T]:
        if self._closed:
            raise RuntimeError("the store is closed")
        return self._writes.submit(operation, exclusive)

    def _commit(self, batch: list[Write]) -> None:
        connection = self._writer
        assert connection is not None
        transaction = SqliteTransaction(connection)
        outcomes: list[tuple[bool, Any]] = []
        try:
            # IMMEDIATE takes the write lock at once, so another process on the same file
            # waits here (busy timeout) instead of failing half-way through.
            connection.execute("BEGIN IMMEDIATE")
            for item in batch:
                created, callbacks = len(transaction.created), len(transaction.callbacks)
                connection.execute("SAVEPOINT operation")
                try:
                    result = item.operation(transaction)
                except BaseException as error:  # the caller gets it; the batch goes on
                    connection.execute("ROLLBACK TO operation")
                    connection.execute("RELEASE operation")
                    del transaction.created[created:]
                    del transaction.callbacks[callbacks:]
                    outcomes.append((False, error))
                else:
                    connection.execute("RELEASE operation")
                    outcomes.append((True, result))
            connection.execute("COMMIT")
        except BaseException as error:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            for item in batch:
                item.future.set_exception(error)
            return
        for callback in transaction.callbacks:
            try:
                callback()
            except Exception:  # the write is durable; a failing callback must not undo that
                logging.getLogger("config_service").exception("after-commit callback failed")
        if transaction.created:
            for listener in self._listeners:
                try:
                    listener(transaction.created)
                except Exception:
                    logging.getLogger("config_service").exception("commit listener failed")
        for item, (succeeded, value) in zip(batch, outcomes, strict=True):
            if succeeded:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    # -- versions (the other reads are SqlReads') ---------------------------------------

    def last_sequence(self) -> int:
        # SQLite's own counter (sqlite_sequence), where PostgreSQL has the table sequence_counter.
        return _last_sequence(self._reader())
