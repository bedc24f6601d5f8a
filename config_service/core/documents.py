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
from config_service.core.access import Principal, require_admin
from config_service.core.listings import page
from config_service.core.refusals import (
    Refused,
    not_found,
    precondition_failed,
    retired,
    rollout_in_progress,
    too_large,
)
from config_service.core.rendered import Rendered, RenderedVersions
from config_service.core.schemas import Schemas, schema_failures
from config_service.core.services import Services
from config_service.settings import Settings
from config_service.store import (
    AuditEntry,
    IfMatch,
    NewVersion,
    PreconditionFailed,
    Store,
    Transaction,
    VersionRecord,
    retirement,
)
from config_service.tsk import diff_document

Operation = Callable[[Transaction], tuple[VersionRecord, bool]]
_ABSENT = object()


def _at(data: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` (keys from the root) of parsed data, or _ABSENT."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return _ABSENT
        data = data[key]
    return data


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
        json.loads(old.config) if not old.retired else {},
        json.loads(new.config) if not new.retired else {},
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
        services: Services,
        refused: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self._store = store
        self._versions = versions
        self._schemas = schemas
        self._services = services
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
        kept_local: tuple[str, ...] | None = None,
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
            kept_local=kept_local,
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
        kept_local: tuple[str, ...] | None = None,
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
        if kind != "sync":  # a file under environments/ makes its service exist
            self._services.require(principal, service)
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
            kept_local=kept_local,
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
            record, created = transaction.append_version(new, if_match, audit)
            if created and kind == "sync" and principal.name.startswith("file:"):
                # The document's sync state: which file backs it, and the version it last gave.
                file = principal.name.removeprefix("file:")
                transaction.set_sync_state(service, environment, file, record.version, False)
            return record, created

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
        if target.retired:
            raise Refused(
                "conflict",
                f"version {version} of {service!r} in {environment!r} is a retire, with no config "
                "to roll back to; name a version before it",
            )
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
        if record.retired:
            raise retired(record)
        return record

    def promoted_source(
        self, service: str, environment: str, record: VersionRecord
    ) -> tuple[str, tuple[str, ...]]:
        """The source a promotion of `record` into `environment` stores, and the local paths it
        kept (docs/lifecycle.md, "Promotion keeps environment-local values").

        `record`'s text with the target's current data written in at every local path the
        schema marks; `missing_local_value` (details: the paths) where `record` has a local
        value the target lacks; `conflict` when the values cannot be written into the text.
        """
        promoted = parse_document(record.source).data
        target = self._versions.current(service, environment)
        current = target.record if target is not None and not target.record.retired else None
        kept_data = parse_document(current.source).data if current is not None else None
        paths = self._schemas.current.local_paths(
            service, [promoted] if kept_data is None else [promoted, kept_data]
        )
        if not paths:
            return record.source, ()
        missing = [
            path for path in paths
            if _at(promoted, path) is not _ABSENT and (kept_data is None or _at(kept_data, path) is _ABSENT)
        ]
        if missing:
            pointers = [tsk.json_pointer(path) for path in missing]
            raise Refused(
                "missing_local_value",
                f"{environment!r} has no value of its own at {', '.join(pointers)}, which the schema "
                f"of {service!r} marks environment-local; push {environment!r} once with its own "
                "values first",
                [{"path": pointer} for pointer in pointers],
            )
        kept = [path for path in paths if kept_data is not None and _at(kept_data, path) is not _ABSENT]
        changed = {
            path: _at(kept_data, path)
            for path in kept
            if tsk.to_wire(_at(kept_data, path)) != tsk.to_wire(_at(promoted, path))
        }
        try:
            source = tsk.write_values(record.source, changed) if changed else record.source
        except ValueError as error:
            raise Refused(
                "conflict",
                f"cannot write the local values of {environment!r} into the promoted text: {error}",
            ) from None
        return source, tuple(tsk.json_pointer(path) for path in kept)

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
        """A new version in `environment` with the previous environment's version, keeping
        `environment`'s local values (`promoted_source`)."""
        self.check_message(message)
        record = self.promotion_source(service, environment, source_environment, version)
        source, kept = self.promoted_source(service, environment, record)
        return self.push(
            principal,
            service,
            environment,
            source,
            message or f"promote {source_environment} version {record.version}",
            kind="promote",
            request_id=request_id,
            promoted_from=(source_environment, record.version),
            kept_local=kept,
        )

    def preview_promotion(
        self,
        service: str,
        environment: str,
        source_environment: str,
        version: int | None,
        message: str = "",
    ) -> dict[str, Any]:
        """What `promote` would do, refused as it would be: `{"would_create", "diff", "kept_local"}`."""
        self.check_message(message)
        record = self.promotion_source(service, environment, source_environment, version)
        source, kept = self.promoted_source(service, environment, record)
        document = parse_document(source)
        failures = schema_failures(self._schemas.current, service, document.data)
        if failures:
            raise Refused(
                "schema_violation",
                f"promoting would break the schema of {service!r} ({len(failures)} failures)",
                failures,
            )
        current = self._versions.current(service, environment)
        target = current.record if current is not None else None
        would_create = target is None or target.retired or target.source != source
        number = self._next_number(target)
        candidate = {
            "service": service,
            "environment": environment,
            "version": number if would_create else number - 1,
        }
        changes = diff_document(
            target.metadata() if target is not None else {"environment": environment, "version": 0},
            candidate,
            json.loads(target.config) if target is not None and not target.retired else {},
            json.loads(document.wire),
            target.source if target is not None else "",
            source,
        )
        return {"would_create": would_create, "diff": changes, "kept_local": list(kept)}

    def _next_number(self, current: VersionRecord | None) -> int:
        if current is None:
            return 1
        newest = self._store.list_versions(current.service, current.environment, 1, None)
        return (newest[0].version if newest else current.version) + 1

    def retire(
        self,
        principal: Principal,
        service: str,
        environment: str,
        if_match: IfMatch = None,
        message: str = "",
        request_id: str | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Retire a document: a `retire` version with no config (docs/lifecycle.md, "Retiring");
        (record, created), created=False when it was retired already. `not_found` when it has
        no version, `precondition_failed` when `if_match` does not name the current one."""
        self.check_message(message)
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action="retire",
            service=service,
            environment=environment,
            request_id=request_id,
            detail={"message": message},
        )
        new = retirement(service, environment, principal.name, principal.token_id, message)

        def operation(transaction: Transaction) -> tuple[VersionRecord, bool]:
            if transaction.current_version(service, environment) is None:
                raise not_found(f"{service!r} has no version in {environment!r}")
            rollout = transaction.active_rollout(service, environment)
            if rollout is not None:
                raise rollout_in_progress(service, environment, rollout)
            return transaction.append_version(new, if_match, audit)

        future = self._store.submit(operation)
        try:
            return future.result()
        except PreconditionFailed as failure:
            raise precondition_failed(
                f"the current version is {failure.current if failure.current is not None else 'none'}, "
                "not the one named in If-Match",
                failure.current,
            ) from None

    def retire_service(
        self, principal: Principal, service: str, message: str = "", request_id: str | None = None
    ) -> dict[str, Any]:
        """Retire every document of `service` (admin): `{"service", "retired": [{environment,
        version, created}]}`; `unknown_service` when there is no such service."""
        require_admin(principal)
        self._services.require(principal, service, create_ok=False)
        self.check_message(message)
        pipeline = self.settings.pipeline

        def operation(transaction: Transaction) -> list[tuple[VersionRecord, bool]]:
            done = []
            for environment in pipeline:
                rollout = transaction.active_rollout(service, environment)
                if rollout is not None:
                    raise rollout_in_progress(service, environment, rollout)
            for environment in pipeline:
                if transaction.current_version(service, environment) is None:
                    continue
                audit = AuditEntry(
                    actor=principal.name, token_id=principal.token_id, action="retire",
                    service=service, environment=environment, request_id=request_id,
                    detail={"message": message, "service_retired": True},
                )
                new = retirement(service, environment, principal.name, principal.token_id, message)
                done.append(transaction.append_version(new, None, audit))
            transaction.append_audit(AuditEntry(
                actor=principal.name, token_id=principal.token_id, action="service_retire",
                service=service, request_id=request_id,
                detail={"environments": [record.environment for record, created in done if created]},
            ))
            return done

        done = self._store.write(operation)
        return {
            "service": service,
            "retired": [
                {"environment": record.environment, "version": record.version, "created": created}
                for record, created in done
            ],
        }

    # -- reads -------------------------------------------------------------------------

    def version(self, service: str, environment: str, number: int) -> Rendered:
        """Version `number`, rendered; `not_found` when there is none."""
        rendered = self._versions.version(service, environment, number)
        if rendered is None:
            raise not_found(f"{service!r} in {environment!r} has no version {number}")
        return rendered

    def current(self, service: str, environment: str) -> Rendered:
        """The current version, rendered; `not_found` when the document has none, `retired`
        when it is retired."""
        rendered = self._versions.current(service, environment)
        if rendered is None:
            raise not_found(f"{service!r} has no version in {environment!r}")
        if rendered.record.retired:
            raise retired(rendered.record)
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
        """The diff from the current version in `first` to the current version in `second`;
        a change at an environment-local path says so (`"local": true`)."""
        old = self.current(service, first).record
        new = self.current(service, second).record
        changes = diff_records(old, new)
        documents = [tsk.from_wire(json.loads(record.config)) for record in (old, new)]
        local = [tsk.json_pointer(path) for path in self._schemas.current.local_paths(service, documents)]
        for change in changes["changes"]:
            path = change["path"]
            if any(path == marked or path.startswith(marked + "/") for marked in local):
                change["local"] = True
        return changes

    def services(self, principal: Principal) -> dict[str, Any]:
        """Every service the token covers, with its current version per covered environment."""
        return listings.services(
            self._store, self.settings.pipeline, principal, self._services.names()
        )
