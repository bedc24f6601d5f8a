"""Listings: one page of a newest-first listing, and the services a token may see."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from config_service.core.access import Principal
from config_service.core.file_sync import sync_state
from config_service.store import Store, VersionRecord

T = TypeVar("T")


def page(records: Sequence[T], limit: int, key: Callable[[T], int]) -> tuple[Sequence[T], int | None]:
    """The first `limit` of `records` (read with `limit + 1`), and the `before` of the next page."""
    shown = records[:limit]
    next_before = key(shown[-1]) if len(records) > limit and shown else None
    return shown, next_before


def visible(
    store: Store, pipeline: Sequence[str], principal: Principal, names: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], list[VersionRecord]]:
    """The services the token may see, each with its current versions in covered environments.

    A service with documents is seen through them (a document in an environment the token
    covers); one without any (created, or only a schema so far) by its name alone. So a
    token learns no name only other environments hold.
    """
    records = [record for record in store.current_versions() if record.environment in pipeline]
    with_documents = {record.service for record in records}
    by_service: dict[str, dict[str, Any]] = {
        name: {}
        for name in names
        if name not in with_documents and principal.covers_service(name)
    }
    shown = []
    for record in records:
        if principal.covers(record.service, record.environment):
            by_service.setdefault(record.service, {})
            shown.append(record)
    return by_service, shown


def services(
    store: Store, pipeline: Sequence[str], principal: Principal, names: Sequence[str]
) -> dict[str, Any]:
    """Every service the token may see (`visible`; `names`: those that exist), with its current
    version per covered environment (its running or paused rollout, docs/rollouts.md, and,
    where a file backs the document, its `sync` state, core/file_sync.py); a service without
    documents has no environments."""
    by_service, records = visible(store, pipeline, principal, names)
    rollouts = {(rollout.service, rollout.environment): rollout for rollout in store.active_rollouts()}
    states = {(document.service, document.environment): document for document in store.documents()}
    for record in records:
        entry: dict[str, Any] = {
            "version": record.version,
            "hash": record.hash or None,
            "created_at": record.created_at,
        }
        if record.retired:
            entry["retired"] = True
        document = states.get((record.service, record.environment))
        sync = sync_state(document) if document is not None else None
        if sync is not None:
            entry["sync"] = sync
        rollout = rollouts.get((record.service, record.environment))
        if rollout is not None:
            entry["rollout"] = {
                "id": rollout.id,
                "state": rollout.state,
                "percent": rollout.percent,
                "candidate": rollout.candidate_version,
            }
        by_service[record.service][record.environment] = entry
    return {
        "services": [
            {
                "service": service,
                "environments": {env: environments[env] for env in pipeline if env in environments},
            }
            for service, environments in sorted(by_service.items())
        ]
    }
