"""`Refused`: how a rule says no, with a stable code, one human sentence and details, and no HTTP status.

The HTTP edge turns each code into a status (`config_service/http/errors.py`); file sync writes
the same refusal to the audit log. The codes are listed in docs/server.md ("Errors").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config_service.store import RolloutRecord


class Refused(Exception):
    """A refusal the caller should see: a stable `code`, one human `message`, and `details`.

    `retry_after` (seconds) says when trying again may succeed, for refusals of rate.
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Iterable[Mapping[str, Any]] = (),
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: list[Mapping[str, Any]] = list(details)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"Refused({self.code!r}, {self.message!r}, {self.details!r})"


def bad_request(message: str, details: Iterable[Mapping[str, Any]] = ()) -> Refused:
    return Refused("bad_request", message, details)


def unauthorized(message: str) -> Refused:
    return Refused("unauthorized", message)


def forbidden(message: str = "this token does not allow that") -> Refused:
    return Refused("forbidden", message)


def not_found(message: str) -> Refused:
    return Refused("not_found", message)


def retired(record: Any) -> Refused:
    """`retired`: the document's current version is a retire (`record`, a VersionRecord)."""
    last = record.version - 1
    return Refused(
        "retired",
        f"{record.service!r} in {record.environment!r} was retired at version {record.version}; "
        f"its last version with a config is {last} (the next push revives it)",
        [{"retired_version": record.version, "last_version": last}],
    )


def precondition_failed(message: str, current: int | None) -> Refused:
    return Refused("precondition_failed", message, [{"current_version": current}])


def store_unavailable(error: Exception) -> Refused:
    """The store cannot be reached (PostgreSQL is away): the request was not carried out, or
    at least not acknowledged; reads keep being served from memory meanwhile."""
    return Refused(
        "store_unavailable",
        "the server cannot reach its store (PostgreSQL) right now, so it cannot take this "
        "request; configs are still served from memory; try again shortly",
        [{"reason": str(error)}],
        retry_after=1,
    )


def too_large(message: str) -> Refused:
    return Refused("too_large", message)


def unsupported_media_type(kinds: str) -> Refused:
    return Refused("unsupported_media_type", f"send the body as {kinds}")


def rollout_in_progress(service: str, environment: str, rollout: RolloutRecord) -> Refused:
    """A plain write (push, promote, rollback, retire) to a document in a rollout."""
    return Refused(
        "rollout_in_progress",
        f"{service!r} in {environment!r} is in rollout {rollout.id} (version "
        f"{rollout.candidate_version}, {rollout.state}); complete or abort it first",
        [{"rollout": rollout.id, "state": rollout.state}],
    )
