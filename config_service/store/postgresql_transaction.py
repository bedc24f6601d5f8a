"""The PostgreSQL store's write transaction: `PostgresTransaction`, what one batch of write
operations sees and does, on the writer's connection, inside the batch's transaction (which
holds the write lock), in pipeline mode. The writer that opens, commits and retries that
transaction is config_service/store/postgresql_writer.py; the rules are the store's
(config_service/store/postgresql.py, docs/replicas.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from config_service.store import sql_reads
from config_service.store.interface import Transaction
from config_service.store.postgresql_schema import WRITE_LOCK
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
from config_service.store.sql_reads import ACTIVE as _ACTIVE
from config_service.store.sql_reads import CURRENT_VERSIONS as _CURRENT_VERSIONS
from config_service.store.sql_reads import INSTANCE_COLUMNS as _INSTANCE_COLUMNS
from config_service.store.sql_reads import ROLLOUT_CANDIDATES as _ROLLOUT_CANDIDATES
from config_service.store.sql_reads import ROLLOUT_COLUMNS as _ROLLOUT_COLUMNS
from config_service.store.sql_reads import document_state as _document
from config_service.store.sql_reads import rollout_record as _rollout
from config_service.store.sql_reads import schema_record as _schema
from config_service.store.sql_reads import service_record as _service
from config_service.store.sql_reads import token_record as _token
from config_service.store.sql_reads import version_record as _version


def _postgresql(sql: str) -> str:
    """A statement of store/sql_reads.py (placeholders `?`) as psycopg takes it."""
    return sql.replace("?", "%s")


# The reads a write makes, the same statements as the stores' own reads.
_CURRENT_VERSION = _postgresql(sql_reads.CURRENT_VERSION)
_DOCUMENT = _postgresql(sql_reads.DOCUMENT)
_SERVICE = _postgresql(sql_reads.SERVICE)
_CURRENT_SCHEMA = _postgresql(sql_reads.CURRENT_SCHEMA)
_ACTIVE_ROLLOUT = _postgresql(sql_reads.ACTIVE_ROLLOUT)
_ROLLOUT_NAMES = tuple(_ROLLOUT_COLUMNS.split(", "))
# The database's clock as the store writes times (records.utc_timestamp: milliseconds, `Z`).
_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

# Running or paused rollouts a write batch reads with its BEGIN (so a push asks for its
# document's without a round trip); past it, each operation asks.
MAX_ACTIVE_SNAPSHOT = 64
# What a write batch sends first, without waiting: open the transaction, take the write lock,
# then read the active rollouts (oldest first: a document's latest one wins). They go with the
# batch's first statement whose answer it waits for: one round trip.
LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
ACTIVE_SNAPSHOT = (
    f"SELECT {_ROLLOUT_COLUMNS} FROM rollouts WHERE {_ACTIVE} ORDER BY id "
    f"LIMIT {MAX_ACTIVE_SNAPSHOT + 1}"
)

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


def _append_guard(new: NewVersion, if_match: IfMatch) -> str:
    """When `append_version`'s statement writes a version that is not a retire: not the
    current source again (a rollout's candidate is a new version even with the current
    source), and `if_match` holds (on the current version `cur`)."""
    candidate = new.kind == "rollout"
    guard = "TRUE" if candidate else "NOT EXISTS (SELECT 1 FROM cur WHERE kind <> 'retire' AND same)"
    if if_match == "*":
        guard += " AND EXISTS (SELECT 1 FROM cur WHERE kind <> 'retire')"
    elif isinstance(if_match, int):
        guard += " AND COALESCE((SELECT version FROM cur), 0) = %(if_match)s"
    return guard


def _version_values(new: NewVersion) -> dict[str, Any]:
    """The columns of the version row `new` makes (a retire keeps no source)."""
    retire = new.kind == "retire"
    return {
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


def _append_statement(
    new: NewVersion, guard: str, values: dict[str, Any], if_match: IfMatch, audit: AuditEntry | None
) -> tuple[str, dict[str, Any]]:
    """`append_version`'s one statement and its parameters: it writes the version when
    `guard` holds, and answers its sequence and number (None when not written) and the
    current version's number and kind."""
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
    return insert, params


class PostgresTransaction(Transaction):
    """`Transaction` on the writer's connection, inside the batch's transaction (which holds
    the write lock), in pipeline mode."""

    def __init__(
        self, connection: psycopg.Connection[Any], snapshot: psycopg.Cursor[Any] | None = None
    ) -> None:
        self.connection = connection
        # The running and paused rollouts as the batch began (`ACTIVE_SNAPSHOT`, sent after
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
        rows = self.rows(_CURRENT_VERSION, (service, environment, service, environment))
        return _version(rows[0]) if rows else None

    def current_versions(self) -> list[VersionRecord]:
        return [_version(row) for row in self.rows(_CURRENT_VERSIONS)]

    def document(self, service: str, environment: str) -> DocumentState | None:
        rows = self.rows(_DOCUMENT, (service, environment))
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
        rows = self.rows(_ACTIVE_ROLLOUT, (service, environment))
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
        rows = self.rows(_SERVICE, (name,))
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
        # The checks run in the statement that writes (one round trip): the version is written
        # only when `guard` holds, and when it is not, what the statement read of the current
        # version says why. A retire is checked first, in Python.
        guard = "TRUE"
        if new.kind == "retire":
            current = self.current_version(new.service, new.environment)
            self._check(if_match, current.version if current else None, current.retired if current else False)
            if current is None:
                raise ValueError(f"{new.service}/{new.environment} has no version to retire")
            if current.retired:
                return current, False
        else:
            guard = _append_guard(new, if_match)
        values = _version_values(new)
        insert, params = _append_statement(new, guard, values, if_match, audit)
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
        rows = self.rows(_CURRENT_SCHEMA, (name,))
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
