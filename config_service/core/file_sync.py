"""One source of truth per document: the rule every change of a file under environments/ goes
through, the sync state `GET /v1/services` shows, and taking the file in a conflict
(docs/lifecycle.md, "One source of truth per document").

A changed file is applied only when the document does not exist yet or its current version
is the one last synced from that file, and no rollout of it runs. Otherwise the document
moved on through the API since (push, promote, rollback, retire, rollout) or is in a rollout,
and the change is a conflict: nothing is applied, the document is marked, and the audit log
names both versions (`sync_conflict`; a rollout's id too). The conflict
ends when the file's source equals the current source, when the file is put back as it was
last synced, or when a writer takes the file (`take_file`, audited `sync_take_file`).

Every decision is made inside the write that acts on it, on the store's writer thread; the
version last synced from the file, read before, is checked again there (and the decision made
again when it moved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from config_service import tsk
from config_service.core.access import Principal, file_principal
from config_service.core.refusals import Refused, not_found, too_large
from config_service.core.rendered import Rendered, RenderedVersions
from config_service.settings import Settings
from config_service.store import AuditEntry, DocumentState, Store, Transaction, VersionRecord

if TYPE_CHECKING:  # documents.py lists services through listings.py, which uses sync_state
    from config_service.core.documents import Documents, Operation

logger = logging.getLogger("config_service.sync")

CONFIG_SUFFIX = ".tsk"  # environments/<environment>/<service>.tsk
# How often a file change is decided again when the document's sync state moved under it.
_ATTEMPTS = 3


def file_of(service: str, environment: str) -> str:
    """The file that backs a document, relative to the environments folder."""
    return f"{environment}/{service}{CONFIG_SUFFIX}"


def read_document_file(path: Path, max_bytes: int) -> str:
    """The text of a document file: `not_found` when it is missing, `too_large` over
    `max_bytes` (without reading it), `invalid_tsk` with line and column when it is not
    UTF-8, `unreadable` when the system refuses it."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise file_too_large(size, max_bytes)
        data = path.read_bytes()
    except FileNotFoundError:
        raise not_found(f"there is no file {path}") from None
    except OSError as error:
        raise Refused("unreadable", f"cannot read the file: {error.strerror}") from None
    if len(data) > max_bytes:
        raise file_too_large(len(data), max_bytes)
    try:
        return tsk.decode(data)
    except tsk.TSKDecodeError as error:
        raise Refused(
            "invalid_tsk",
            "the file is not valid TSK",
            [{"line": error.lineno, "column": error.colno, "message": error.msg}],
        ) from None


def file_too_large(size: int, limit: int) -> Refused:
    return too_large(f"the file has {size} bytes, more than the limit of {limit}")


def sync_state(document: DocumentState) -> dict[str, Any] | None:
    """What `GET /v1/services` shows as a document's `sync`: None when no file backs it."""
    if document.file is None:
        return None
    if document.sync_conflict:
        return {
            "state": "conflict",
            "file": document.file,
            "file_version": document.file_version,
            "current_version": document.current_version,
        }
    if document.file_version == document.current_version:
        return {"state": "in_sync", "file": document.file, "file_version": document.file_version}
    return {
        "state": "api_ahead",
        "file": document.file,
        "file_version": document.file_version,
        "current_version": document.current_version,
    }


@dataclass(frozen=True)
class FileChange:
    """What became of one changed file.

    `status`: "created" (a new version, `version`), "unchanged" (nothing stored: the file
    equals the current source, or it is as it was last synced while the API moved on;
    `version` is the current one), or "conflict" (nothing stored; `version` is the current
    version, `file_version` the one last synced from the file, None when it never was).
    """

    status: Literal["created", "unchanged", "conflict"]
    version: int
    file_version: int | None = None
    file: str = ""
    rollout: int | None = None  # a conflict held because the document is in this rollout

    def conflict(self, service: str, environment: str) -> Refused:
        """The conflict as a refusal, for the log and file sync's reports."""
        details = {"file": self.file, "file_version": self.file_version, "current_version": self.version}
        take = (
            f"Make the file equal the current source, or take the file: "
            f"tskcfg sync take-file {service} {environment}"
        )
        if self.rollout is not None:
            return Refused(
                "sync_conflict",
                f"{service}/{environment} is in rollout {self.rollout} (current_version "
                f"{self.version}, file_version {self.file_version}): a sync conflict, the file's "
                f"change is held until the rollout ends. {take} once it has",
                [{**details, "rollout": self.rollout}],
            )
        since = (
            f"the file last gave it a version (file_version {self.file_version})"
            if self.file_version is not None
            else "before the file gave it any version (file_version None)"
        )
        return Refused(
            "sync_conflict",
            f"{service}/{environment} moved on through the API (current_version {self.version}) "
            f"since {since}: a sync conflict, the file's change waits. {take}",
            [details],
        )


class _Moved(Exception):
    """The document's sync state changed between reading it and the write that decides."""


class FileSyncRules:
    """The one-source-of-truth rule for file sync, and taking the file (see the module doc)."""

    def __init__(
        self, settings: Settings, store: Store, versions: RenderedVersions, documents: Documents
    ) -> None:
        self.settings = settings
        self._store = store
        self._versions = versions
        self._documents = documents

    def apply(self, service: str, environment: str, source: str) -> FileChange:
        """Decide on a changed file of `service` in `environment` and act on it.

        Raises what a push raises (invalid_tsk, schema_violation, invalid_name, too_large)
        when the file would be applied or is in conflict; a file equal to the current source
        is not checked again.
        """
        file = file_of(service, environment)
        author = f"file:{file}"
        operation = self._documents.prepare_push(
            file_principal(author), service, environment, source, f"sync {file}", None, kind="sync"
        )
        for _ in range(_ATTEMPTS):
            expected, synced_source = self._synced(service, environment, file)
            decide = partial(
                _decide, service, environment, file, source, operation, expected, synced_source
            )
            try:
                return self._store.write(decide)
            except _Moved:
                continue
        raise Refused(
            "internal_error",
            f"the sync state of {service}/{environment} kept changing while {file} was applied",
        )

    def _synced(self, service: str, environment: str, file: str) -> tuple[int | None, str | None]:
        """The version last synced from `file` and its source (read outside the write: versions
        never change, and the write checks the number still holds)."""
        state = self._store.document(service, environment)
        if state is None or state.file != file or state.file_version is None:
            return None, None
        rendered = self._versions.version(service, environment, state.file_version)
        return state.file_version, rendered.record.source if rendered is not None else None

    def last_synced_source(self, service: str, environment: str) -> str | None:
        """The source last synced from the document's file, while the document is not in
        conflict: a file still equal to it needs no decision at start."""
        state = self._store.document(service, environment)
        if state is None or state.sync_conflict:
            return None
        version, source = self._synced(service, environment, file_of(service, environment))
        return source if version is not None else None

    def state(self, service: str, environment: str) -> dict[str, Any] | None:
        """The document's `sync` as `GET /v1/services` shows it (None when no file backs it)."""
        document = self._store.document(service, environment)
        return sync_state(document) if document is not None else None

    def file_source(self, service: str, environment: str) -> str:
        """The text of the file that backs the document: `not_found` when there is none, and
        what `read_document_file` refuses."""
        file = file_of(service, environment)
        path = Path(self.settings.environments_dir) / file
        if not path.is_file():
            raise not_found(
                f"there is no file {file} in the environments folder, so there is nothing to take"
            )
        return read_document_file(path, self.settings.max_body)

    def take_file(
        self, principal: Principal, service: str, environment: str, request_id: str | None = None
    ) -> tuple[Rendered, bool]:
        """End a conflict by taking the file: its source becomes the next version (kind
        `sync`), validated like a push; audited `sync_take_file`. (rendered, created),
        created=False when the file already equals the current source.

        `not_found` when there is no file, `conflict` when the document is not in conflict.
        """
        file = file_of(service, environment)
        source = self.file_source(service, environment)
        author = f"file:{file}"
        operation = self._documents.prepare_push(
            file_principal(author),
            service,
            environment,
            source,
            f"take {file} (by {principal.name})",
            None,
            kind="sync",
            request_id=request_id,
        )

        def take(transaction: Transaction) -> tuple[VersionRecord, bool]:
            state = transaction.document(service, environment)
            if state is None or not state.sync_conflict:
                raise Refused(
                    "conflict",
                    f"{service}/{environment} is not in a sync conflict; there is no file change "
                    "to take (edit the file, or push)",
                )
            before = state.current_version
            record, created = operation(transaction)
            if not created:
                transaction.set_sync_state(service, environment, file, record.version, False)
            transaction.append_audit(
                AuditEntry(
                    actor=principal.name,
                    token_id=principal.token_id,
                    action="sync_take_file",
                    service=service,
                    environment=environment,
                    version=record.version,
                    request_id=request_id,
                    detail={
                        "file": file,
                        "file_version": state.file_version,
                        "current_version": before,
                        "created": created,
                    },
                )
            )
            return record, created

        rendered, created = self._documents.complete_push(self._store.submit(take))
        logger.info(
            "file sync: %s took %s: %s/%s is version %s",
            principal.name, file, service, environment, rendered.record.version,
        )
        return rendered, created


def _decide(
    service: str,
    environment: str,
    file: str,
    source: str,
    operation: Operation,
    expected: int | None,
    synced_source: str | None,
    transaction: Transaction,
) -> FileChange:
    """The rule, inside the write that acts on it: apply, leave, or mark a conflict.

    `expected`: the version last synced from `file` as read before the write (with its
    source, `synced_source`); `_Moved` when the document's state no longer says so.
    """
    author = f"file:{file}"
    state = transaction.document(service, environment)
    current = transaction.current_version(service, environment)
    if state is None or current is None:
        record, _ = operation(transaction)
        return FileChange("created", record.version, record.version, file)
    if (state.file_version if state.file == file else None) != expected:
        raise _Moved()
    if not current.retired and current.source == source:
        # The file agrees with the document: in sync (again), whoever wrote it.
        if (state.file, state.file_version, state.sync_conflict) != (
            file, current.version, False
        ):
            transaction.set_sync_state(service, environment, file, current.version, False)
        return FileChange("unchanged", current.version, current.version, file)
    if expected is not None and expected != current.version and synced_source == source:
        # The file is as it was last synced: the API is ahead, which is no conflict.
        if state.sync_conflict:
            transaction.set_sync_state(service, environment, file, expected, False)
        return FileChange("unchanged", current.version, expected, file)
    # A document in a rollout takes no plain write: the file's change is held until it ends.
    rollout = transaction.active_rollout(service, environment)
    if rollout is None and expected is not None and expected == current.version:
        record, _ = operation(transaction)
        return FileChange("created", record.version, record.version, file)
    transaction.set_sync_state(service, environment, file, expected, True)
    detail: dict[str, Any] = {
        "file": file,
        "file_version": expected,
        "current_version": current.version,
    }
    if rollout is not None:
        detail["rollout"] = rollout.id
    transaction.append_audit(
        AuditEntry(
            actor=author,
            action="sync_conflict",
            service=service,
            environment=environment,
            version=current.version,
            detail=detail,
        )
    )
    return FileChange(
        "conflict", current.version, expected, file, rollout.id if rollout is not None else None
    )
