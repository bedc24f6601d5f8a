"""Schemas: the compiled set every document is validated against, and putting, reading and
listing schema versions (a new schema is refused while it would break a current document)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from config_service import tsk
from config_service.core.access import Access, Principal
from config_service.core.listings import page
from config_service.core.refusals import Refused, not_found
from config_service.schema import SchemaInvalid, SchemaSet, check_schema, identifier_failures
from config_service.settings import Settings
from config_service.store import AuditEntry, SchemaRecord, Store, Transaction, VersionRecord

logger = logging.getLogger("config_service")


def schema_failures(schemas: SchemaSet, service: str, data: dict[str, Any]) -> list[dict[str, str]]:
    """Every schema failure of `data`, with `@env` standing for its default (docs/tsk.md)."""
    return schemas.document_errors(service, data)


def schema_hash(schema: Any) -> str:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Schemas:
    """The schemas of one server: `current` (compiled, replaced whole on every change) and their versions."""

    def __init__(
        self, settings: Settings, store: Store, access: Access, refused: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self._store = store
        self._access = access
        self._refused = refused  # told the code of each schema the rules refuse
        self.current = SchemaSet({}, 0)
        self._lock = threading.Lock()
        # (name, version) of each stored schema `current` was built from; None after this
        # process put one (then the next `reload` builds anew).
        self._loaded: tuple[tuple[str, int], ...] | None = None

    def load(self) -> None:
        """Compile the stored schemas (at start)."""
        records = self._store.current_schemas()
        with self._lock:
            self._build(records)

    def reload(self) -> bool:
        """Take in schemas other server processes put since; True when the set changed.

        A put by this process while the store was read wins: the next reload sees it stored.
        """
        before = self.current
        records = self._store.current_schemas()
        marks = tuple((record.name, record.version) for record in records)
        with self._lock:
            if marks == self._loaded or self.current is not before:
                return False
            self._build(records)
            return True

    def _build(self, records: list[SchemaRecord]) -> None:
        schemas = {record.name: json.loads(record.schema) for record in records}
        for name, schema in sorted(schemas.items()):
            # Stored by a server that did not check identifiers: known by its name from now on.
            for failure in identifier_failures(name, schema) if isinstance(schema, dict) else ():
                logger.warning(
                    "the stored schema %r has an identifier it may no longer carry (%s: %s); "
                    "it is used as %r only, and the next put of it must leave that out",
                    name,
                    failure["path"] or "/",
                    failure["message"],
                    f"{name}.json",
                )
        self.current = SchemaSet(schemas, generation=self.current.generation + 1)
        self._loaded = tuple((record.name, record.version) for record in records)

    def conflicts(
        self, candidate: SchemaSet, changed: str, current: list[VersionRecord]
    ) -> list[dict[str, Any]]:
        """Every current document (in a configured environment) that `candidate` would refuse,
        among the services whose schema is `changed` or uses it through `$ref`.
        """
        affected = candidate.users_of(changed)
        conflicts: list[dict[str, Any]] = []
        for record in current:
            if record.environment not in self.settings.pipeline:
                continue
            if record.service not in affected or candidate.validator(record.service) is None:
                continue
            if record.retired:  # no config to check
                continue
            data = tsk.from_wire(json.loads(record.config))
            for failure in schema_failures(candidate, record.service, data):
                conflicts.append(
                    {
                        "service": record.service,
                        "environment": record.environment,
                        "version": record.version,
                        "path": failure["path"],
                        "message": failure["message"],
                    }
                )
        return conflicts

    def put(
        self,
        principal: Principal,
        name: str,
        schema: Any,
        force: bool = False,
        request_id: str | None = None,
        text: str | None = None,
    ) -> tuple[SchemaRecord, bool]:
        """Store a new version of schema `name` unless it is invalid or breaks current documents.

        `text` is the JSON as received, stored as it is (a file's content, so file sync can
        tell whether the file changed); without it the schema is stored re-serialised.

        Refuses `forbidden` when the token may not put it or asks for `force` without being
        admin, `invalid_name` for a section named like a service with documents,
        `invalid_schema`, and `schema_conflict` (details: every failing document the token
        may read, with its path).
        """
        self._access.check_schema_write(principal, name, force)
        self._access.check_names(name)
        if name in self.settings.sections and self._store.has_versions(name):
            raise Refused(
                "invalid_name",
                f"{name!r} is a service with documents, so it cannot be a section schema's name "
                "too; take it out of the server's sections or rename the section",
            )
        digest = schema_hash(schema)
        stored_text = text if text is not None else json.dumps(schema, ensure_ascii=False, indent=2)

        # The costly part (compiling the schema, checking every document it governs) runs here,
        # before the store's writer is taken: a large schema over many documents may take
        # seconds, and the writer serves every team's pushes. The writer then checks only the
        # documents that moved on meanwhile.
        checked: _Check | None = None
        unchanged = self._store.current_schema(name)
        if unchanged is None or unchanged.hash != digest:
            # A rollout's candidate counts as current: a schema must accept it too.
            documents = self._store.current_documents() + self._store.rollout_candidates()
            checked = self._check(principal, name, schema, documents)

        # Runs on the store's writer thread, alone in its transaction: the documents it
        # checks are exactly the current ones, and no push can pass it.
        def operation(transaction: Transaction) -> tuple[SchemaRecord, bool]:
            # Identical to the current schema: nothing to check (it may have been forced in).
            current = transaction.current_schema(name)
            if current is not None and current.hash == digest:
                return current, False
            documents = transaction.current_versions() + transaction.rollout_candidates()
            check = checked
            if check is None or check.schemas is not self.current:
                check = self._check(principal, name, schema, [])  # the schemas moved on: anew
            moved = [
                record
                for record in documents
                if (record.service, record.environment, record.version) not in check.versions
            ]
            standing = {(record.service, record.environment, record.version) for record in documents}
            conflicts = [
                conflict
                for conflict in check.conflicts
                if (conflict["service"], conflict["environment"], conflict["version"]) in standing
            ] + self.conflicts(check.candidate, name, moved)
            if conflicts and not force:
                _refuse_conflicts(principal, name, conflicts)
            audit = AuditEntry(
                actor=principal.name,
                token_id=principal.token_id,
                action="schema",
                service=name,
                request_id=request_id,
                detail={"forced": bool(force and conflicts), "conflicts": len(conflicts)},
            )
            record, created = transaction.append_schema(
                name, stored_text, digest, principal.name, principal.token_id, audit
            )
            if name not in self.settings.sections:  # a service's schema makes the service exist
                transaction.create_service(name, "schema", principal.name, None)
            if created:
                candidate = check.candidate
                transaction.after_commit(lambda: self._use(candidate))
            return record, created

        return self._store.write(operation, exclusive=True)

    def _check(
        self, principal: Principal, name: str, schema: Any, documents: list[VersionRecord]
    ) -> _Check:
        """`schema` checked against today's schemas (`invalid_schema` when it is not a valid
        one), and the conflicts it has with `documents`."""
        today = self.current
        others = {key: value for key, value in today.schemas.items() if key != name}
        try:
            check_schema(name, schema, others, self.settings.sections)
        except SchemaInvalid as error:
            self._refused("invalid_schema")
            raise Refused("invalid_schema", str(error), error.details) from None
        candidate = SchemaSet({**others, name: schema}, today.generation + 1)
        self._refuse_wrapped_markers(principal, name, today, candidate)
        return _Check(
            schemas=today,
            candidate=candidate,
            versions={(record.service, record.environment, record.version) for record in documents},
            conflicts=self.conflicts(candidate, name, documents),
        )

    def _refuse_wrapped_markers(
        self, principal: Principal, name: str, today: SchemaSet, candidate: SchemaSet
    ) -> None:
        """`invalid_schema` when schema `name` would give another schema a marker it reaches only
        through allOf/anyOf/oneOf/items (a section gaining a marker a service wraps): promotion
        would ignore it. Only what `candidate` adds is refused; the schemas named are those the
        token may read, the others counted."""
        known = {_wrapped_key(failure) for failure in today.wrapped_markers(name)}
        added = [failure for failure in candidate.wrapped_markers(name) if _wrapped_key(failure) not in known]
        if not added:
            return
        shown = [
            failure
            for failure in added
            if failure["schema"] in self.settings.sections or principal.covers_service(failure["schema"])
        ]
        hidden = len({failure["schema"] for failure in added} - {failure["schema"] for failure in shown})
        users = ", ".join(repr(user) for user in sorted({failure["schema"] for failure in shown}))
        if hidden:
            others = f"{hidden} schema{'s' if hidden != 1 else ''} outside this token's scope"
            users = f"{users} and {others}" if users else others
        self._refused("invalid_schema")
        raise Refused(
            "invalid_schema",
            f"schema {name!r} would put an x-environment-local marker where {users} reach it only "
            "through allOf/anyOf/oneOf/items, so promotion would ignore it; refer to "
            f"{name}.json outside those there first, or leave the marker out",
            shown,
        )

    def _use(self, schemas: SchemaSet) -> None:
        with self._lock:
            self.current = schemas
            self._loaded = None

    def get(self, name: str, version: int | None = None) -> SchemaRecord:
        """The current schema `name`, or its version `version`; `not_found` when there is none."""
        record = (
            self._store.current_schema(name)
            if version is None
            else self._store.get_schema(name, version)
        )
        if record is None:
            what = f"version {version} of its schema" if version is not None else "schema"
            raise not_found(f"{name!r} has no {what}")
        return record

    def history(self, name: str, limit: int, before: int | None) -> dict[str, Any]:
        """`{"versions": [metadata, ...], "next_before"}`, newest first."""
        records = self._store.list_schemas(name, limit + 1, before)
        shown, next_before = page(records, limit, lambda record: record.version)
        return {"versions": [record.metadata() for record in shown], "next_before": next_before}

    def last_put_by(self, name: str, author: str) -> str | None:
        """The text of the last version of schema `name` that `author` put (file sync's last import)."""
        record = self._store.last_schema_by_author(name, author)
        return record.schema if record is not None else None


def _wrapped_key(failure: dict[str, str]) -> tuple[str, str, str, str]:
    return failure["schema"], failure["path"], failure["combinator"], failure["marker"]


@dataclass(frozen=True)
class _Check:
    """A schema checked before the store's writer is taken: against which schemas, and what it
    found among which document versions."""

    schemas: SchemaSet
    candidate: SchemaSet
    versions: set[tuple[str, str, int]]
    conflicts: list[dict[str, Any]]


def _refuse_conflicts(principal: Principal, name: str, conflicts: list[dict[str, Any]]) -> None:
    """`schema_conflict` naming the failing documents the token may read; the others are only
    counted, so a schema writer learns nothing of documents outside its scope."""
    shown = [c for c in conflicts if principal.covers(c["service"], c["environment"])]
    hidden = len(
        {
            (c["service"], c["environment"])
            for c in conflicts
            if not principal.covers(c["service"], c["environment"])
        }
    )
    outside = f"{hidden} document{'s' if hidden != 1 else ''} outside this token's scope"
    if shown:
        environments = ", ".join(sorted({conflict["environment"] for conflict in shown}))
        also = f", and {outside}" if hidden else ""
        message = (
            f"schema {name!r} would break the current document in {environments}{also}; "
            "fix them first, or force it as an admin"
        )
    else:
        message = f"schema {name!r} would break {outside}; ask an admin"
    raise Refused("schema_conflict", message, shown)
