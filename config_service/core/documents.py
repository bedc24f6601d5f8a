"""Documents: parse, validate and store versions (push, rollback, promote), and read them back
(current, one version, history, diffs).

Every write goes through `prepare_push`: the source is parsed and validated on the caller's
thread, and the returned operation runs on the store's writer thread, in commit order with
every other write (it validates again if a schema changed in between).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from config_service import tsk
from config_service.core import listings
from config_service.core.access import Principal
from config_service.core.listings import page
from config_service.core.refusals import (
    Refused,
    not_found,
    precondition_failed,
    rollout_in_progress,
    too_large,
)
from config_service.core.rendered import Rendered, RenderedVersions
from config_service.core.schemas import Schemas, schema_failures
from config_service.settings import Settings
from config_service.store import (
    AuditEntry,
    IfMatch,
    NewVersion,
    PreconditionFailed,
    Store,
    Transaction,
    VersionRecord,
)
from config_service.tsk import diff_document

Operation = Callable[[Transaction], tuple[VersionRecord, bool]]


@dataclass(frozen=True)
class Document:
    """A parsed source: its data, wire JSON text and hash."""

    source: str
    data: dict[str, Any]
    wire: str
    hash: str


def decode_source(body: bytes) -> str:
    """UTF-8 text of a TSK body; bytes that are not UTF-8 are `invalid_tsk` with line and column."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        prefix = body[: error.start].decode("utf-8", errors="replace")
        line = prefix.count("\n") + 1
        column = len(prefix) - (prefix.rfind("\n") + 1) + 1
        raise Refused(
            "invalid_tsk",
            f"the document is not UTF-8 (line {line}, column {column})",
            [{"line": line, "column": column, "message": "bytes that are not UTF-8"}],
        ) from None
    return text


def parse_document(source: str) -> Document:
    """Parse TSK source; a syntax error is `invalid_tsk` with line, column and message."""
    try:
        data = tsk.loads(source)
    except tsk.TSKDecodeError as error:
        raise Refused(
            "invalid_tsk",
            f"the document is not valid TSK: {error}",
            [{"line": error.lineno, "column": error.colno, "message": error.msg}],
        ) from None
    wire_data = tsk.to_wire(data)
    wire = json.dumps(wire_data, ensure_ascii=False, separators=(",", ":"))
    # From the wire data already at hand rather than converting the document a second time.
    return Document(source=source, data=data, wire=wire, hash=tsk.wire_hash(wire_data))


def diff_records(old: VersionRecord, new: VersionRecord) -> dict[str, Any]:
    """The structural and unified diff of two versions (docs/lifecycle.md, "Comparing versions")."""
    return diff_document(
        old.metadata(),
        new.metadata(),
        json.loads(old.config),
        json.loads(new.config),
        old.source,
        new.source,
    )


class Documents:
    """The versions of every document: writes through the store's writer, reads through memory."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        versions: RenderedVersions,
        schemas: Schemas,
        refused: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self._store = store
        self._versions = versions
        self._schemas = schemas
        self._refused = refused  # told the code of each document the rules refuse

    # -- writes ------------------------------------------------------------------------

    def push(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source: str,
        message: str = "",
        if_match: IfMatch = None,
        *,
        kind: str = "push",
        request_id: str | None = None,
        promoted_from: tuple[str, int] | None = None,
        rolled_back_to: int | None = None,
    ) -> tuple[Rendered, bool]:
        """Validate and store `source` as the next version; (rendered, created).

        Refuses invalid_tsk, schema_violation, precondition_failed, too_large, invalid_name.
        An identical source (after the precondition) answers the current version, created=False.
        """
        operation = self.prepare_push(
            principal,
            service,
            environment,
            source,
            message,
            if_match,
            kind=kind,
            request_id=request_id,
            promoted_from=promoted_from,
            rolled_back_to=rolled_back_to,
        )
        return self.complete_push(self._store.submit(operation))

    async def push_async(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source: str,
        message: str = "",
        if_match: IfMatch = None,
        *,
        request_id: str | None = None,
    ) -> tuple[Rendered, bool]:
        """`push` for the event loop: parse and validate in a worker thread (a schema can make
        even a small document cost a second of checking, which the loop serving every read must
        not spend), then wait for the writer thread without holding a thread of our own.
        """
        arguments = (principal, service, environment, source, message, if_match)
        operation = await asyncio.to_thread(self.prepare_push, *arguments, request_id=request_id)
        future = self._store.submit(operation)
        try:
            await asyncio.wrap_future(future)
        except Exception:
            pass  # complete_push raises it, in the form the caller expects
        return self.complete_push(future)

    def prepare_push(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source: str,
        message: str = "",
        if_match: IfMatch = None,
        *,
        kind: str = "push",
        request_id: str | None = None,
        promoted_from: tuple[str, int] | None = None,
        rolled_back_to: int | None = None,
        action: str | None = None,
    ) -> Operation:
        """Parse and validate `source` (raising Refused when refused); the write operation.

        The operation refuses `rollout_in_progress` while the document is in a rollout (only
        the rollout's own candidate, kind `rollout`, is written then). `action` names the
        audit entry (default: the kind).
        """
        if service in self.settings.sections:
            # A service named like a section would be validated against, and could rewrite,
            # the schema every service shares.
            raise Refused(
                "invalid_name",
                f"{service!r} is the name of a section schema ({', '.join(self.settings.sections)}); "
                "a service cannot have it",
            )
        self.check_message(message)
        try:
            document = parse_document(source)
        except Refused as refused:
            self._refused(refused.code)
            raise
        schemas = self._schemas.current
        failures = schema_failures(schemas, service, document.data)
        if failures:
            self._refuse_invalid(service, failures)
        new = NewVersion(
            service=service,
            environment=environment,
            source=source,
            config=document.wire,
            hash=document.hash,
            author=principal.name,
            token_id=principal.token_id,
            message=message,
            kind=kind,
            promoted_from_environment=promoted_from[0] if promoted_from else None,
            promoted_from_version=promoted_from[1] if promoted_from else None,
            rolled_back_to=rolled_back_to,
        )
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action=action or kind,
            service=service,
            environment=environment,
            request_id=request_id,
            detail={"hash": document.hash, "message": message},
        )

        # Runs on the store's writer thread, in commit order with every other write.
        def operation(transaction: Transaction) -> tuple[VersionRecord, bool]:
            if kind != "rollout":
                rollout = transaction.active_rollout(service, environment)
                if rollout is not None:
                    raise rollout_in_progress(service, environment, rollout)
            today = self._schemas.current
            if today is not schemas:
                # A schema changed after we validated: validate against today's schema.
                failures = schema_failures(today, service, document.data)
                if failures:
                    self._refuse_invalid(service, failures)
            return transaction.append_version(new, if_match, audit)

        return operation

    def complete_push(self, future: Future[tuple[VersionRecord, bool]]) -> tuple[Rendered, bool]:
        """The answer to a push once its write operation finished (raising what it raised)."""
        try:
            record, created = future.result()
        except PreconditionFailed as failure:
            raise precondition_failed(
                f"the current version is "
                f"{failure.current if failure.current is not None else 'none'}, "
                f"not the one named in If-Match",
                failure.current,
            ) from None
        if created:
            return self._versions.of(record), True
        current = self._versions.current(record.service, record.environment)
        assert current is not None
        return current, False

    def check_message(self, message: str) -> None:
        """`too_large` when a version's message is over the limit, in bytes of UTF-8.

        Every listing of the history carries the messages, so one large message costs
        memory and time on every read of it.
        """
        limit = self.settings.max_message
        if len(message) * 4 <= limit:  # no character takes more than 4 bytes
            return
        size = len(message.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise too_large(
                f"the version's message is {size} bytes of UTF-8; this server's limit is {limit} bytes"
            )

    def _refuse_invalid(self, service: str, failures: list[dict[str, str]]) -> None:
        self._refused("schema_violation")
        raise Refused(
            "schema_violation",
            f"the document breaks the schema of {service!r} "
            f"({len(failures)} failure{'s' if len(failures) != 1 else ''})",
            failures,
        )

    def rollback(
        self,
        principal: Principal,
        service: str,
        environment: str,
        version: int,
        message: str = "",
        request_id: str | None = None,
    ) -> tuple[Rendered, bool]:
        """A new version with the source of `version`, validated against today's schema."""
        target = self._store.get_version(service, environment, version)
        if target is None:
            raise not_found(f"{service!r} in {environment!r} has no version {version}")
        return self.push(
            principal,
            service,
            environment,
            target.source,
            message or f"roll back to version {version}",
            kind="rollback",
            request_id=request_id,
            rolled_back_to=version,
        )

    def promotion_source(
        self, service: str, environment: str, source_environment: str, version: int | None
    ) -> VersionRecord:
        """The version a promotion would copy; `conflict` unless `source_environment` is the
        previous step of the pipeline."""
        previous = self.settings.previous_environment(environment)
        if previous != source_environment:
            expected = f"only from {previous!r}" if previous else "not at all (it is the first step)"
            raise Refused(
                "conflict",
                f"{environment!r} can be promoted into {expected}, not from {source_environment!r}",
            )
        if version is None:
            record = self._store.current_version(service, source_environment)
            if record is None:
                raise not_found(f"{service!r} has no version in {source_environment!r}")
        else:
            record = self._store.get_version(service, source_environment, version)
            if record is None:
                raise not_found(f"{service!r} in {source_environment!r} has no version {version}")
        return record

    def promote(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source_environment: str,
        version: int | None,
        message: str = "",
        request_id: str | None = None,
    ) -> tuple[Rendered, bool]:
        """A new version in `environment` with the source of the previous environment's version."""
        record = self.promotion_source(service, environment, source_environment, version)
        return self.push(
            principal,
            service,
            environment,
            record.source,
            message or f"promote {source_environment} version {record.version}",
            kind="promote",
            request_id=request_id,
            promoted_from=(source_environment, record.version),
        )

    def preview_promotion(
        self,
        service: str,
        environment: str,
        source_environment: str,
        version: int | None,
        message: str = "",
    ) -> dict[str, Any]:
        """What `promote` would do, refused as it would be: `{"would_create", "diff"}`."""
        self.check_message(message)
        record = self.promotion_source(service, environment, source_environment, version)
        document = parse_document(record.source)
        failures = schema_failures(self._schemas.current, service, document.data)
        if failures:
            raise Refused(
                "schema_violation",
                f"promoting would break the schema of {service!r} ({len(failures)} failures)",
                failures,
            )
        current = self._versions.current(service, environment)
        target = current.record if current is not None else None
        would_create = target is None or target.source != record.source
        candidate = {
            "environment": environment,
            "version": (target.version + 1 if would_create else target.version) if target else 1,
        }
        if target is not None:
            changes = diff_records(target, record)
            changes["to"] = candidate
        else:
            changes = diff_document(
                {"environment": environment, "version": 0},
                candidate,
                {},
                json.loads(document.wire),
                "",
                record.source,
            )
        return {"would_create": would_create, "diff": changes}

    # -- reads -------------------------------------------------------------------------

    def version(self, service: str, environment: str, number: int) -> Rendered:
        """Version `number`, rendered; `not_found` when there is none."""
        rendered = self._versions.version(service, environment, number)
        if rendered is None:
            raise not_found(f"{service!r} in {environment!r} has no version {number}")
        return rendered

    def current(self, service: str, environment: str) -> Rendered:
        """The current version, rendered; `not_found` when the document has none."""
        rendered = self._versions.current(service, environment)
        if rendered is None:
            raise not_found(f"{service!r} has no version in {environment!r}")
        return rendered

    def history(
        self, service: str, environment: str, limit: int, before: int | None
    ) -> dict[str, Any]:
        """`{"versions": [metadata, ...], "next_before"}`, newest first."""
        records = self._store.list_versions(service, environment, limit + 1, before)
        shown, next_before = page(records, limit, lambda record: record.version)
        candidates = [record.version for record in shown if record.kind == "rollout"]
        rollouts = self._store.rollouts_of_versions(service, environment, candidates)
        listed = []
        for record in shown:
            metadata = record.metadata()
            rollout = rollouts.get(record.version)
            if rollout is not None:
                # What can change is listed, never in versions/{n} (docs/rollouts.md).
                metadata["rollout"] = {"id": rollout.id, "state": rollout.state}
            listed.append(metadata)
        return {"versions": listed, "next_before": next_before}

    def diff_versions(self, service: str, environment: str, first: int, second: int) -> dict[str, Any]:
        """The diff from version `first` to version `second` of one document."""
        old = self.version(service, environment, first).record
        new = self.version(service, environment, second).record
        return diff_records(old, new)

    def diff_environments(self, service: str, first: str, second: str) -> dict[str, Any]:
        """The diff from the current version in `first` to the current version in `second`."""
        old = self.current(service, first).record
        new = self.current(service, second).record
        return diff_records(old, new)

    def services(self, principal: Principal) -> dict[str, Any]:
        """Every service the token covers, with its current version per covered environment."""
        return listings.services(self._store, self.settings.pipeline, principal)

    def last_sequence(self) -> int:
        """The sequence of the last version stored (0 when there is none)."""
        return self._store.last_sequence()

    def versions_after(self, sequence: int, limit: int) -> list[VersionRecord]:
        """At most `limit` versions of every document stored after `sequence`, in order."""
        return self._store.versions_after(sequence, limit)

    def last_synced_source(self, service: str, environment: str, author: str) -> str | None:
        """The source file sync last stored from the file `author` names, if it is that file's."""
        record = self._store.last_version_of_kind(service, environment, "sync")
        return record.source if record is not None and record.author == author else None
