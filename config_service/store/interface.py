"""The one list of what a store does: `Transaction` (every write, and the reads a write needs) and `Store`.

A write exists once: declared on `Transaction` here and implemented once per store. Callers
run it through `Store.write`, alone or together with the checks it depends on:

    record, created = store.write(lambda transaction: transaction.append_version(new, None, None))

so a check and the write it guards see the same state (one transaction). Reads outside a
write are `Store` methods; they never wait for writers.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, TypeVar

from config_service.store.records import (
    MAX_INSTANCES_PER_DOCUMENT,
    AuditEntry,
    AuditRecord,
    DocumentState,
    IfMatch,
    InstanceRecord,
    InstanceReport,
    NewRollout,
    NewVersion,
    RolloutRecord,
    SchemaRecord,
    ServiceRecord,
    SessionRecord,
    TokenRecord,
    VersionRecord,
)

T = TypeVar("T")

# Called after every commit that created versions, in commit order, outside the write lock's
# transaction but before the writer gets its answer.
CommitListener = Callable[[list[VersionRecord]], None]


class ChangeSignal(Protocol):
    """How one server process hears that any process (another worker, another replica, or
    itself) may have committed to the store, so it reads what it has not seen yet
    (`Store.versions_after`). See docs/replicas.md.
    """

    def start(
        self,
        poke: Callable[[], None],
        missed: Callable[[], None] | None = None,
        *,
        own_commits: bool = True,
    ) -> None:
        """Begin listening; `poke()` may be called from any thread when the store changed
        (a notification), or after a lost connection came back (catch up). `missed()` is
        called when changes may have gone unheard (the connection was lost, or made again):
        the process counts as possibly behind until a catch-up started after it is done.
        `own_commits=False`: the versions this store object itself committed need not be
        signalled (the caller hands them on from its commit listener); a store may still
        signal them."""
        ...

    def changed(self) -> bool:
        """A cheap check, made every few tens of milliseconds: True when the store may have
        changed since the last call."""
        ...

    def close(self) -> None: ...


class Transaction(Protocol):
    """What a write operation may do. It runs inside the store's transaction: an operation that
    raises undoes only its own changes, and every change it made is durable once `Store.write`
    returns."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once this operation's changes are durable (before its caller hears)."""
        ...

    # -- reads a write decides on ---------------------------------------------------------

    def current_version(self, service: str, environment: str) -> VersionRecord | None:
        """The version the document's current pointer names (a `retire` one too), or None."""
        ...

    def document(self, service: str, environment: str) -> DocumentState | None:
        """The document's current pointer and sync state, or None when it has no version."""
        ...

    def service(self, name: str) -> ServiceRecord | None: ...

    def current_versions(self) -> list[VersionRecord]:
        """The current version of every document, with `source` and `config`."""
        ...

    def current_schema(self, name: str) -> SchemaRecord | None: ...

    # -- writes ---------------------------------------------------------------------------

    def append_version(
        self, new: NewVersion, if_match: IfMatch, audit: AuditEntry | None
    ) -> tuple[VersionRecord, bool]:
        """Store `new` as the next version and make it current, unless the precondition fails
        (PreconditionFailed) or its source is identical to the current version's (then that
        version, created=False).

        The number is one past the highest the document ever had (a revived document goes
        on from its retire). `If-Match`: a number names the current version (0: the document
        has none), "*" needs a current version that is not a retire. `new.kind == "retire"`
        (records.retirement) on a retired document answers that retire, created=False; on a
        document without versions it raises ValueError. A first version of a service that
        has no row yet records it (origin "file" for sync, else "push").

        `new.kind == "rollout"` (a rollout's candidate) is stored as the next version but the
        current pointer stays where it is, and there is no identical-source shortcut.
        """
        ...

    def set_current_version(self, service: str, environment: str, version: int) -> None:
        """Point the document at `version`, one of its versions (a rollout completes so)."""
        ...

    # -- rollouts (docs/rollouts.md) --------------------------------------------------------

    def now(self) -> str:
        """The store's clock (`utc_timestamp` form): the one clock every bake is timed by."""
        ...

    def active_rollout(self, service: str, environment: str) -> RolloutRecord | None:
        """The document's running or paused rollout, or None."""
        ...

    def insert_rollout(self, new: NewRollout, audit: AuditEntry | None) -> RolloutRecord:
        """Record a running rollout at its first step, its bake clock started now; it takes
        the next global sequence."""
        ...

    def update_rollout(
        self, rollout: RolloutRecord, expected_sequence: int, audit: AuditEntry | None
    ) -> RolloutRecord | None:
        """Compare-and-set: store `rollout`'s state, step, bake clock and reason if the row
        still has `expected_sequence`; it takes the next global sequence and `updated_at` is
        now. None when another change came first (nothing is written)."""
        ...

    def rollout_candidates(self) -> list[VersionRecord]:
        """The candidate version of every running or paused rollout, with `source` and `config`."""
        ...

    def record_rollout_failure(self, rollout_id: int, instance_id: str, error: str | None) -> int:
        """Remember that `instance_id` failed to apply the rollout's candidate; the number of
        distinct instances that did, over the whole rollout."""
        ...

    def set_sync_state(
        self, service: str, environment: str, file: str | None, file_version: int | None, conflict: bool
    ) -> None:
        """Record which file backs the document, the version last synced from it, and whether
        a change of that file waits refused (a conflict). ValueError when it has no version."""
        ...

    def create_service(
        self, name: str, origin: str, created_by: str | None, audit: AuditEntry | None
    ) -> tuple[ServiceRecord, bool]:
        """Record that `name` exists (origin: records.SERVICE_ORIGINS); an existing one is
        answered as it is, created=False, and nothing is audited."""
        ...

    def append_schema(
        self,
        name: str,
        schema: str,
        hash: str,
        author: str,
        token_id: str | None,
        audit: AuditEntry | None,
    ) -> tuple[SchemaRecord, bool]:
        """Store `schema` as the next version of `name`, unless its hash is the current one's
        (then that version, created=False)."""
        ...

    def has_tokens(self) -> bool:
        """True when any token exists (the first admin token is made only when none does)."""
        ...

    def insert_token(self, token: TokenRecord, audit: AuditEntry | None) -> None: ...

    def revoke_token(self, token_id: str, audit: AuditEntry | None) -> TokenRecord | None:
        """Mark a token revoked; returns it, or None when there is no such token."""
        ...

    def record_instance(
        self,
        report: InstanceReport,
        limit: int = MAX_INSTANCES_PER_DOCUMENT,
        forget_before: str | None = None,
    ) -> None:
        """Remember the report, replacing the instance's previous one.

        A document keeps at most `limit` instances: a new one past that takes the place of
        those last seen before `forget_before` (stale), oldest first, or is refused with
        TooManyInstances when none is.
        """
        ...

    def append_audit(self, entry: AuditEntry) -> None: ...

    # -- console sessions (docs/console.md, "Sessions"; every store implements this block) -

    def insert_session(self, session: SessionRecord) -> None: ...

    def touch_session(self, id_hash: str, last_seen: str) -> None:
        """Move a session's `last_seen` forward (never back)."""
        ...

    def delete_session(self, id_hash: str) -> None: ...

    def delete_sessions(self, token_id: str | None = None, idle_before: str | None = None) -> int:
        """End the sessions of `token_id`, and those last seen before `idle_before`; how many."""
        ...


class Store(Protocol):
    """What the server needs from durable storage."""

    def open(self) -> None: ...
    def close(self) -> None: ...

    def write(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> T:
        """Run `operation` in a transaction and return its result once committed.

        An exception raised by the operation is raised here (its changes are undone).
        `exclusive` runs it alone in its transaction, for writes whose after-commit
        callbacks change what later operations must see (a new schema).
        """
        ...

    def submit(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> Future[T]:
        """`write` without waiting: the future resolves once the operation is committed."""
        ...

    def check(self) -> None:
        """Raise when the store cannot answer a query or take a write."""
        ...

    def add_commit_listener(self, listener: CommitListener) -> None: ...

    def lead(self) -> bool:
        """True while this process holds the store's lease on work that must run in one
        process only (file sync); takes it when it is free. Held until the store closes or
        the process ends (kill -9 too), then another process takes it."""
        ...

    def change_signal(self) -> ChangeSignal:
        """A new signal of the commits of every process sharing this store (open the store first)."""
        ...

    # -- versions (listings: metadata only, `source` and `config` are "") -------------------

    def current_version(self, service: str, environment: str) -> VersionRecord | None: ...
    def get_version(self, service: str, environment: str, version: int) -> VersionRecord | None: ...

    def list_versions(
        self, service: str, environment: str, limit: int, before: int | None
    ) -> list[VersionRecord]:
        """Newest first, metadata only."""
        ...

    def current_versions(self) -> list[VersionRecord]:
        """The current version of every document, metadata only."""
        ...

    def current_documents(self) -> list[VersionRecord]:
        """The current version of every document with `source` and `config`, read outside any
        write (a check that must not hold the writer, confirmed inside it afterwards)."""
        ...

    def last_version_of_kind(
        self, service: str, environment: str, kind: str
    ) -> VersionRecord | None: ...

    def versions_after(self, sequence: int, limit: int) -> list[VersionRecord]:
        """In commit order, metadata only."""
        ...

    def last_sequence(self) -> int:
        """The last global sequence taken, by a version or a rollout change."""
        ...

    def changes_after(self, sequence: int, limit: int, whole: int = 0) -> tuple[int, list[VersionRecord]]:
        """`last_sequence()` and `versions_after(sequence, limit)` read at one moment, in one
        read (how a process sharing the store catches up): every version returned is at
        most that sequence, and every sequence up to it is committed. The first `whole` of
        them come whole, with source and config (as `get_version` gives them), so a catch-up
        over a few changes needs no other read."""
        ...

    def has_versions(self, service: str) -> bool:
        """True when `service` has a version in any environment (it is a service, not a section)."""
        ...

    def document(self, service: str, environment: str) -> DocumentState | None: ...

    def documents(self) -> list[DocumentState]:
        """Every document's current pointer and sync state, by service and environment."""
        ...

    # -- services ---------------------------------------------------------------------------

    def service(self, name: str) -> ServiceRecord | None: ...

    def list_services(self) -> list[ServiceRecord]:
        """Every service that exists, by name (section schemas too: the store cannot tell)."""
        ...

    # -- schemas ----------------------------------------------------------------------------

    def current_schema(self, name: str) -> SchemaRecord | None: ...
    def get_schema(self, name: str, version: int) -> SchemaRecord | None: ...
    def last_schema_by_author(self, name: str, author: str) -> SchemaRecord | None: ...

    def list_schemas(self, name: str, limit: int, before: int | None) -> list[SchemaRecord]:
        """Newest first, metadata only (`schema` is "")."""
        ...

    def current_schemas(self) -> list[SchemaRecord]: ...

    # -- rollouts ---------------------------------------------------------------------------

    def active_rollouts(self) -> list[RolloutRecord]:
        """Every running or paused rollout, by service and environment."""
        ...

    def rollout_candidates(self) -> list[VersionRecord]:
        """The candidate version of every running or paused rollout, with `source` and `config`
        (read outside any write, as `current_documents`)."""
        ...

    def latest_rollout(self, service: str, environment: str) -> RolloutRecord | None:
        """The document's most recent rollout, whatever its state."""
        ...

    def rollouts_after(self, sequence: int, limit: int) -> list[RolloutRecord]:
        """The rollouts whose last change took a sequence after `sequence`, as they are now, in
        sequence order (how a process that shares the store hears of another's rollout changes)."""
        ...

    def rollouts_of_versions(
        self, service: str, environment: str, versions: list[int]
    ) -> dict[int, RolloutRecord]:
        """The rollouts whose candidate is one of `versions`, by candidate version."""
        ...

    def rollout_failures(self, rollout_id: int) -> list[str]:
        """The instances that failed to apply the rollout's candidate, by id."""
        ...

    # -- tokens, instances, audit -----------------------------------------------------------

    def list_tokens(self) -> list[TokenRecord]: ...
    def list_instances(self, service: str, environment: str) -> list[InstanceRecord]: ...

    def list_audit(
        self,
        limit: int,
        before: int | None,
        service: str | None = None,
        environment: str | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> list[AuditRecord]:
        """Newest first, filtered by the fields given."""
        ...

    # -- console sessions (docs/console.md, "Sessions"; every store implements this block) -

    def get_session(self, id_hash: str) -> SessionRecord | None: ...
