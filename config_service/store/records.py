"""What the store keeps and hands back: versions, schemas, tokens, instance reports, audit entries.

Frozen records, the refusals a write may raise, and the store's timestamps: shared by every
store and by the rules above it. No SQL here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# Instances kept per document unless the server says otherwise (Settings): reports under
# ever new instance ids must not grow the store without bound.
MAX_INSTANCES_PER_DOCUMENT = 1_000

# A precondition on the current version of a document: a version number (0 = must not
# exist) or "*" (must exist). None means no precondition.
IfMatch = int | Literal["*"] | None


def utc_now() -> str:
    """The current time as ISO 8601 UTC with millisecond precision and a `Z`."""
    return utc_timestamp(datetime.now(UTC))


def utc_timestamp(moment: datetime) -> str:
    """`moment` (aware) as the store writes times; such strings sort in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class PreconditionFailed(Exception):
    """The document's current version is not the one the writer named in `If-Match`."""

    def __init__(self, current: int | None) -> None:
        super().__init__(f"current version is {current}")
        self.current = current


class StoreUnavailable(Exception):
    """The store cannot be reached (PostgreSQL is away): nothing was read, and a write may not
    have been stored. The server answers 503 `store_unavailable`; trying again later is safe."""


class StoreNewerThanServer(Exception):
    """The store's tables were made by a newer server: this one refuses to run on them."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the store's tables are at schema version {found}, newer than this server's "
            f"{known}: run the newer tskcfg (or restore a backup made before the upgrade)"
        )
        self.found = found
        self.known = known
# The kinds of version a document can have. A `retire` version has no config: its source is
# empty and its config and hash are "" here (NULL in the tables).
VERSION_KINDS = ("push", "sync", "rollback", "promote", "retire", "rollout")


@dataclass(frozen=True)
class VersionRecord:
    """One immutable version of one document."""

    sequence: int
    service: str
    environment: str
    version: int
    source: str
    config: str  # the wire JSON of the data, as text ("" for a retire)
    hash: str  # "" for a retire
    author: str
    token_id: str | None
    message: str
    created_at: str
    kind: str
    promoted_from_environment: str | None = None
    promoted_from_version: int | None = None
    rolled_back_to: int | None = None
    # The environment-local paths a promotion kept from the target (docs/lifecycle.md).
    kept_local: tuple[str, ...] | None = None

    @property
    def retired(self) -> bool:
        """True for a `retire` version: the document has no config from here on."""
        return self.kind == "retire"

    def metadata(self) -> dict[str, Any]:
        """The version metadata of the API (docs/server.md, "History and one version")."""
        promoted_from = None
        if self.promoted_from_environment is not None:
            promoted_from = {
                "environment": self.promoted_from_environment,
                "version": self.promoted_from_version,
            }
        return {
            "service": self.service,
            "environment": self.environment,
            "version": self.version,
            "hash": None if self.retired else self.hash,
            "created_at": self.created_at,
            "author": self.author,
            "message": self.message,
            "kind": self.kind,
            "promoted_from": promoted_from,
            "rolled_back_to": self.rolled_back_to,
            "kept_local": list(self.kept_local) if self.kept_local is not None else None,
        }


@dataclass(frozen=True)
class NewVersion:
    """What a writer asks to store; the store adds the number, sequence and time."""

    service: str
    environment: str
    source: str
    config: str
    hash: str
    author: str
    token_id: str | None
    message: str
    kind: str = "push"
    promoted_from_environment: str | None = None
    promoted_from_version: int | None = None
    rolled_back_to: int | None = None
    kept_local: tuple[str, ...] | None = None


def retirement(
    service: str, environment: str, author: str, token_id: str | None, message: str
) -> NewVersion:
    """The `retire` version of a document: no source, no config, no hash."""
    return NewVersion(service, environment, "", "", "", author, token_id, message, kind="retire")


# How a service came to exist (ServiceRecord.origin).
SERVICE_ORIGINS = ("api", "schema", "file", "push")


@dataclass(frozen=True)
class ServiceRecord:
    """A service that exists on purpose (docs/lifecycle.md, "Services exist on purpose").

    `origin`: "api" (created by an admin), "schema" (its schema came first), "file" (a file
    under environments/ came first), "push" (a push created it: a server with open services,
    or a store upgraded from before services were recorded).
    """

    name: str
    created_at: str
    origin: str
    created_by: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "created_at": self.created_at,
            "origin": self.origin,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class DocumentState:
    """What changes about one document (service + environment) beside its immutable versions.

    `current_version`: the version readers get (a pointer: a retire or a rollout's candidate
    is not simply the highest number). `file` and `file_version`: the file under
    environments/ that backs it (relative path) and the version last synced from that file,
    or None when no file backs it; `sync_conflict` is True while a change of that file waits
    refused because the document moved on through the API.
    """

    service: str
    environment: str
    current_version: int
    file: str | None = None
    file_version: int | None = None
    sync_conflict: bool = False


# The states of a rollout (docs/rollouts.md); the first two are "active": the document has a
# candidate that some instances read, and plain writes to it are refused.
ROLLOUT_STATES = ("running", "paused", "completed", "rolled_back", "aborted")
ACTIVE_ROLLOUT_STATES = ("running", "paused")


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout of a candidate version to a growing share of a document's instances.

    `step` indexes `steps` (percents, increasing, the last 100). The bake clock of the current
    step: `baked_seconds` counted before `step_started_at` (a pause adds what had run and
    clears `step_started_at`; resume sets it again), so a pause freezes it and a restart
    resumes it from the stored times. `sequence` is the global event sequence of its last
    change (its SSE id).
    """

    id: int
    service: str
    environment: str
    candidate_version: int
    stable_version: int
    steps: tuple[int, ...]
    step: int
    bake_seconds: float
    max_failed: int
    state: str
    started_at: str
    updated_at: str
    step_started_at: str | None
    baked_seconds: float
    reason: str
    author: str
    sequence: int

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_ROLLOUT_STATES

    @property
    def percent(self) -> int:
        """The share of instances (by bucket, 0-99) reading the candidate at this step."""
        return self.steps[self.step]


@dataclass(frozen=True)
class NewRollout:
    """What a rollout starts with; the store adds id, times and sequence."""

    service: str
    environment: str
    candidate_version: int
    stable_version: int
    steps: tuple[int, ...]
    bake_seconds: float
    max_failed: int
    author: str


@dataclass(frozen=True)
class SchemaRecord:
    sequence: int
    name: str
    version: int
    schema: str  # JSON text as stored
    hash: str
    author: str
    token_id: str | None
    created_at: str

    def metadata(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "version": self.version,
            "hash": self.hash,
            "created_at": self.created_at,
            "author": self.author,
        }


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: str
    services: tuple[str, ...]
    environments: tuple[str, ...]
    secret_hash: str
    created_at: str
    created_by: str | None = None
    revoked_at: str | None = None

    def public(self) -> dict[str, Any]:
        """The token as listed: never the secret, nor its hash."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "services": list(self.services),
            "environments": list(self.environments),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
        }


# -- console sessions ----------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    """A console session (docs/console.md, "Sessions"): kept in the store so any replica serves
    it. `id_hash` is the SHA-256 of the cookie's secret (the secret itself is never stored);
    `csrf` is the token every form of the session carries; `last_seen` moves with use and
    ends the session once it is older than the server's idle limit."""

    id_hash: str
    token_id: str
    csrf: str
    created_at: str
    last_seen: str


class TooManyInstances(Exception):
    """A report from a new instance of a document that already has as many as allowed, none stale."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the document already has {limit} instances")
        self.limit = limit


@dataclass(frozen=True)
class InstanceReport:
    """What an instance says about itself (`POST /v1/instances`), its fields already checked.

    `version` and `hash` are what it runs. For `failed`, `failed_version` and `failed_hash`
    are what it could not apply; a failed report without them fails `version`, and the
    version the instance ran before is kept.
    """

    service: str
    environment: str
    instance_id: str
    status: str
    version: int | None = None
    hash: str | None = None
    error: str | None = None
    failed_version: int | None = None
    failed_hash: str | None = None
    cohort: str | None = None


@dataclass(frozen=True)
class InstanceRecord:
    service: str
    environment: str
    instance_id: str
    version: int | None
    hash: str | None
    status: str
    error: str | None
    first_seen: str
    last_seen: str
    failed_version: int | None = None
    failed_hash: str | None = None
    cohort: str | None = None


# Every `action` the server writes to the audit log; `tskcfg audit --action` offers exactly these.
AUDIT_ACTIONS = (
    "push", "sync", "rollback", "promote", "schema", "token_create", "token_revoke", "schema_refused",
    "sync_failed", "retire", "service_create", "service_retire", "sync_conflict", "sync_take_file",
    "rollout_start", "rollout_step", "rollout_pause", "rollout_resume", "rollout_abort",
    "rollout_complete", "rollout_rolled_back",
)


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log, as written; the store adds id and time."""

    actor: str
    action: str
    token_id: str | None = None
    service: str | None = None
    environment: str | None = None
    version: int | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: str
    actor: str
    token_id: str | None
    action: str
    service: str | None
    environment: str | None
    version: int | None
    request_id: str | None
    detail: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "token_id": self.token_id,
            "action": self.action,
            "service": self.service,
            "environment": self.environment,
            "version": self.version,
            "request_id": self.request_id,
            "detail": self.detail,
        }
