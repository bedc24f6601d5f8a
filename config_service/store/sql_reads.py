"""The reads both SQL stores share (SQLite and PostgreSQL keep the same tables): the columns
each read returns, the row converters, and `SqlReads`, the `Store` read methods written once.

Every statement here is written with `?` placeholders; a store whose driver wants another
style (psycopg's `%s`) sets `SqlReads.PARAMETER`, and each statement is restyled once, at its
first use. No statement here holds a `?` or a `%` other than its placeholders.
"""

from __future__ import annotations

import functools
import json
from typing import Any, ClassVar

from config_service.store.records import (
    ACTIVE_ROLLOUT_STATES,
    AuditRecord,
    DocumentState,
    InstanceRecord,
    RolloutRecord,
    SchemaRecord,
    ServiceRecord,
    SessionRecord,
    TokenRecord,
    VersionRecord,
)

VERSION_COLUMNS = (
    "sequence, service, environment, version, source, config, hash, author, token_id, message, "
    "created_at, kind, promoted_from_environment, promoted_from_version, rolled_back_to, kept_local"
)
# Listings (history, event replay) need no source or config; a page of 500 versions near the
# body limit would otherwise read a GiB into memory.
LISTED_VERSION_COLUMNS = VERSION_COLUMNS.replace("source, config,", "'' AS source, '' AS config,")
# The versions after a sequence (parameters: how many come whole, the sequence, the limit), in
# commit order: the first ones whole, with source and config, the rest metadata only (a page of
# 500 whole versions near the body limit would be a GiB). Column `whole` tells which. Only the
# page's sequence numbers are numbered, so no document outside the page is read.
CHANGED_VERSIONS = (
    "SELECT "
    + ", ".join(
        f"CASE WHEN p.whole THEN w.{column} ELSE '' END AS {column}"
        if column in ("source", "config")
        else f"w.{column}"
        for column in VERSION_COLUMNS.split(", ")
    )
    + ", p.whole AS whole FROM (SELECT sequence, ROW_NUMBER() OVER (ORDER BY sequence) <= ? "
    "AS whole FROM versions WHERE sequence > ? ORDER BY sequence LIMIT ?) AS p "
    "JOIN versions AS w ON w.sequence = p.sequence"
)
SCHEMA_COLUMNS = "sequence, name, version, schema, hash, author, token_id, created_at"
LISTED_SCHEMA_COLUMNS = SCHEMA_COLUMNS.replace("schema,", "'' AS schema,")
DOCUMENT_COLUMNS = "service, environment, current_version, file, file_version, sync_conflict"
SERVICE_COLUMNS = "name, created_at, origin, created_by"
ROLLOUT_COLUMNS = (
    "id, service, environment, candidate_version, stable_version, steps, step, bake_seconds, "
    "max_failed, state, started_at, updated_at, step_started_at, baked_seconds, reason, author, "
    "sequence"
)
INSTANCE_COLUMNS = (
    "service, environment, instance_id, version, hash, status, error, first_seen, last_seen, "
    "failed_version, failed_hash, cohort"
)
AUDIT_COLUMNS = "id, at, actor, token_id, action, service, environment, version, request_id, detail"
SESSION_COLUMNS = "id_hash, token_id, csrf, created_at, last_seen"
# A rollout that still moves (docs/rollouts.md): running or paused.
ACTIVE = f"state IN ({', '.join(repr(state) for state in ACTIVE_ROLLOUT_STATES)})"
# Below every real number: the first page of a newest-first listing.
_NO_BOUND = 2**62

# A document's current version is the one its pointer (table documents) names, not simply the
# highest number: a rollout's candidate is current only for its cohort.
CURRENT_VERSION = (
    f"SELECT {VERSION_COLUMNS} FROM versions WHERE service = ? AND environment = ? AND version = "
    "(SELECT current_version FROM documents WHERE service = ? AND environment = ?)"
)
# Row values: SQLite plans them as a join on the unique (service, environment, version) index,
# as fast as writing that join; PostgreSQL answers them faster than the join.
CURRENT_VERSIONS = (
    f"SELECT {VERSION_COLUMNS} FROM versions WHERE (service, environment, version) IN ("
    "SELECT service, environment, current_version FROM documents) ORDER BY service, environment"
)
CURRENT_VERSIONS_LISTED = CURRENT_VERSIONS.replace(VERSION_COLUMNS, LISTED_VERSION_COLUMNS, 1)
ROLLOUT_CANDIDATES = (
    f"SELECT {VERSION_COLUMNS} FROM versions WHERE (service, environment, version) IN ("
    f"SELECT service, environment, candidate_version FROM rollouts WHERE {ACTIVE}) "
    "ORDER BY service, environment"
)
DOCUMENT = f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE service = ? AND environment = ?"
SERVICE = f"SELECT {SERVICE_COLUMNS} FROM services WHERE name = ?"
CURRENT_SCHEMA = f"SELECT {SCHEMA_COLUMNS} FROM schemas WHERE name = ? ORDER BY version DESC LIMIT 1"
ACTIVE_ROLLOUT = (
    f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE service = ? AND environment = ? AND {ACTIVE} "
    "ORDER BY id DESC LIMIT 1"
)


# -- rows to records -------------------------------------------------------------------------


def version_record(row: dict[str, Any]) -> VersionRecord:
    values = dict(row)
    # A retire row has NULL config and hash; records carry "" (records.VersionRecord).
    values["config"] = values["config"] or ""
    values["hash"] = values["hash"] or ""
    kept = values["kept_local"]
    values["kept_local"] = tuple(json.loads(kept)) if kept is not None else None
    return VersionRecord(**values)


def counted_versions(rows: list[dict[str, Any]]) -> tuple[int, list[VersionRecord]]:
    """`changes_after`'s answer from its one statement's rows: the store's last sequence (column
    `bound`, on every row) and the versions after the sequence asked for. With none after it,
    the one row has only the counter."""
    bound = int(rows[0]["bound"])
    records = [
        version_record({key: value for key, value in row.items() if key not in ("bound", "whole")})
        for row in rows
        if row["sequence"] is not None
    ]
    return bound, records


def document_state(row: dict[str, Any]) -> DocumentState:
    return DocumentState(**{**row, "sync_conflict": bool(row["sync_conflict"])})


def service_record(row: dict[str, Any]) -> ServiceRecord:
    return ServiceRecord(**row)


def schema_record(row: dict[str, Any]) -> SchemaRecord:
    return SchemaRecord(**row)


def rollout_record(row: dict[str, Any]) -> RolloutRecord:
    return RolloutRecord(**{**row, "steps": tuple(json.loads(row["steps"]))})


def token_record(row: dict[str, Any]) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        services=tuple(json.loads(row["services"])),
        environments=tuple(json.loads(row["environments"])),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
    )


def audit_record(row: dict[str, Any]) -> AuditRecord:
    values = dict(row)
    values["detail"] = json.loads(values["detail"] or "{}")
    return AuditRecord(**values)


@functools.cache
def _restyled(sql: str, parameter: str) -> str:
    # Bounded: the statements of this module, and list_audit's 16 filter combinations.
    return sql.replace("?", parameter)


class SqlReads:
    """The `Store` read methods over the store's own `_query(sql, params)` (rows as dicts, read
    outside any write). A store lists it before `Store` among its bases; a read that really
    differs between the engines (`last_sequence`) stays in the store."""

    # The driver's placeholder: `?` (sqlite3) or `%s` (psycopg).
    PARAMETER: ClassVar[str] = "?"
    # A one-row query whose column `bound` is the store's last sequence (each engine keeps its
    # counter in its own place).
    LAST_SEQUENCE: ClassVar[str]

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """The rows of `sql`, written with `?` placeholders."""
        if self.PARAMETER != "?":
            sql = _restyled(sql, self.PARAMETER)
        return self._query(sql, params)

    # -- versions ------------------------------------------------------------------------

    def current_version(self, service: str, environment: str) -> VersionRecord | None:
        rows = self._read(CURRENT_VERSION, (service, environment, service, environment))
        return version_record(rows[0]) if rows else None

    def get_version(self, service: str, environment: str, version: int) -> VersionRecord | None:
        rows = self._read(
            f"SELECT {VERSION_COLUMNS} FROM versions WHERE service = ? AND environment = ? "
            "AND version = ?",
            (service, environment, version),
        )
        return version_record(rows[0]) if rows else None

    def list_versions(
        self, service: str, environment: str, limit: int, before: int | None
    ) -> list[VersionRecord]:
        rows = self._read(
            f"SELECT {LISTED_VERSION_COLUMNS} FROM versions WHERE service = ? AND environment = ? "
            "AND version < ? ORDER BY version DESC LIMIT ?",
            (service, environment, before if before is not None else _NO_BOUND, limit),
        )
        return [version_record(row) for row in rows]

    def current_versions(self) -> list[VersionRecord]:
        return [version_record(row) for row in self._read(CURRENT_VERSIONS_LISTED)]

    def current_documents(self) -> list[VersionRecord]:
        return [version_record(row) for row in self._read(CURRENT_VERSIONS)]

    def last_version_of_kind(self, service: str, environment: str, kind: str) -> VersionRecord | None:
        rows = self._read(
            f"SELECT {VERSION_COLUMNS} FROM versions WHERE service = ? AND environment = ? "
            "AND kind = ? ORDER BY version DESC LIMIT 1",
            (service, environment, kind),
        )
        return version_record(rows[0]) if rows else None

    def versions_after(self, sequence: int, limit: int) -> list[VersionRecord]:
        rows = self._read(
            f"SELECT {LISTED_VERSION_COLUMNS} FROM versions WHERE sequence > ? "
            "ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        return [version_record(row) for row in rows]

    def changes_after(self, sequence: int, limit: int, whole: int = 0) -> tuple[int, list[VersionRecord]]:
        # One statement, one snapshot: the counter and the versions committed with it.
        rows = self._read(
            f"SELECT c.bound AS bound, v.* FROM ({self.LAST_SEQUENCE}) AS c LEFT JOIN "
            f"({CHANGED_VERSIONS}) AS v ON 1 = 1 ORDER BY v.sequence",
            (whole, sequence, limit),
        )
        return counted_versions(rows)

    def has_versions(self, service: str) -> bool:
        return bool(self._read("SELECT 1 AS found FROM versions WHERE service = ? LIMIT 1", (service,)))

    def document(self, service: str, environment: str) -> DocumentState | None:
        rows = self._read(DOCUMENT, (service, environment))
        return document_state(rows[0]) if rows else None

    def documents(self) -> list[DocumentState]:
        rows = self._read(f"SELECT {DOCUMENT_COLUMNS} FROM documents ORDER BY service, environment")
        return [document_state(row) for row in rows]

    # -- services ------------------------------------------------------------------------

    def service(self, name: str) -> ServiceRecord | None:
        rows = self._read(SERVICE, (name,))
        return service_record(rows[0]) if rows else None

    def list_services(self) -> list[ServiceRecord]:
        rows = self._read(f"SELECT {SERVICE_COLUMNS} FROM services ORDER BY name")
        return [service_record(row) for row in rows]

    # -- schemas -------------------------------------------------------------------------

    def current_schema(self, name: str) -> SchemaRecord | None:
        rows = self._read(CURRENT_SCHEMA, (name,))
        return schema_record(rows[0]) if rows else None

    def get_schema(self, name: str, version: int) -> SchemaRecord | None:
        rows = self._read(
            f"SELECT {SCHEMA_COLUMNS} FROM schemas WHERE name = ? AND version = ?", (name, version)
        )
        return schema_record(rows[0]) if rows else None

    def last_schema_by_author(self, name: str, author: str) -> SchemaRecord | None:
        rows = self._read(
            f"SELECT {SCHEMA_COLUMNS} FROM schemas WHERE name = ? AND author = ? "
            "ORDER BY version DESC LIMIT 1",
            (name, author),
        )
        return schema_record(rows[0]) if rows else None

    def list_schemas(self, name: str, limit: int, before: int | None) -> list[SchemaRecord]:
        rows = self._read(
            f"SELECT {LISTED_SCHEMA_COLUMNS} FROM schemas WHERE name = ? AND version < ? "
            "ORDER BY version DESC LIMIT ?",
            (name, before if before is not None else _NO_BOUND, limit),
        )
        return [schema_record(row) for row in rows]

    def current_schemas(self) -> list[SchemaRecord]:
        # A schema's versions take rising sequences, so its newest has the highest.
        rows = self._read(
            f"SELECT {SCHEMA_COLUMNS} FROM schemas WHERE sequence IN ("
            "SELECT MAX(sequence) FROM schemas GROUP BY name) ORDER BY name"
        )
        return [schema_record(row) for row in rows]

    # -- rollouts ------------------------------------------------------------------------

    def active_rollouts(self) -> list[RolloutRecord]:
        rows = self._read(
            f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE {ACTIVE} ORDER BY service, environment"
        )
        return [rollout_record(row) for row in rows]

    def rollout_candidates(self) -> list[VersionRecord]:
        return [version_record(row) for row in self._read(ROLLOUT_CANDIDATES)]

    def rollouts_after(self, sequence: int, limit: int) -> list[RolloutRecord]:
        rows = self._read(
            f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (sequence, limit),
        )
        return [rollout_record(row) for row in rows]

    def latest_rollout(self, service: str, environment: str) -> RolloutRecord | None:
        rows = self._read(
            f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE service = ? AND environment = ? "
            "ORDER BY id DESC LIMIT 1",
            (service, environment),
        )
        return rollout_record(rows[0]) if rows else None

    def rollouts_of_versions(
        self, service: str, environment: str, versions: list[int]
    ) -> dict[int, RolloutRecord]:
        if not versions:
            return {}
        # One range on the index (service, environment, candidate_version), the same statement
        # for any number of versions; the few rollouts between them that were not asked for
        # are left out here.
        rows = self._read(
            f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE service = ? AND environment = ? "
            "AND candidate_version BETWEEN ? AND ?",
            (service, environment, min(versions), max(versions)),
        )
        wanted = set(versions)
        return {
            record.candidate_version: record
            for record in map(rollout_record, rows)
            if record.candidate_version in wanted
        }

    def rollout_failures(self, rollout_id: int) -> list[str]:
        rows = self._read(
            "SELECT instance_id FROM rollout_failures WHERE rollout_id = ? ORDER BY instance_id",
            (rollout_id,),
        )
        return [str(row["instance_id"]) for row in rows]

    # -- tokens, instances, audit --------------------------------------------------------

    def list_tokens(self) -> list[TokenRecord]:
        return [token_record(row) for row in self._read("SELECT * FROM tokens ORDER BY created_at, id")]

    def list_instances(self, service: str, environment: str) -> list[InstanceRecord]:
        rows = self._read(
            f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE service = ? AND environment = ? "
            "ORDER BY instance_id",
            (service, environment),
        )
        return [InstanceRecord(**row) for row in rows]

    def list_audit(
        self,
        limit: int,
        before: int | None,
        service: str | None = None,
        environment: str | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> list[AuditRecord]:
        clauses = ["id < ?"]
        params: list[Any] = [before if before is not None else _NO_BOUND]
        for column, value in (
            ("service", service),
            ("environment", environment),
            ("action", action),
            ("actor", actor),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        params.append(limit)
        rows = self._read(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
            tuple(params),
        )
        return [audit_record(row) for row in rows]

    # -- console sessions (docs/console.md, "Sessions") ----------------------------------

    def get_session(self, id_hash: str) -> SessionRecord | None:
        rows = self._read(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = ?", (id_hash,))
        return SessionRecord(**rows[0]) if rows else None
