"""Listings: one page of a newest-first listing, and the services a token may see."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from config_service.core.access import Principal
from config_service.store import Store

T = TypeVar("T")


def page(records: Sequence[T], limit: int, key: Callable[[T], int]) -> tuple[Sequence[T], int | None]:
    """The first `limit` of `records` (read with `limit + 1`), and the `before` of the next page."""
    shown = records[:limit]
    next_before = key(shown[-1]) if len(records) > limit and shown else None
    return shown, next_before


def services(store: Store, pipeline: Sequence[str], principal: Principal) -> dict[str, Any]:
    """Every service the token covers, with its current version per covered environment (and
    its running or paused rollout, docs/rollouts.md)."""
    rollouts = {(rollout.service, rollout.environment): rollout for rollout in store.active_rollouts()}
    by_service: dict[str, dict[str, Any]] = {}
    for record in store.current_versions():
        if record.environment not in pipeline:
            continue
        if not principal.covers(record.service, record.environment):
            continue
        entry: dict[str, Any] = {
            "version": record.version,
            "hash": record.hash,
            "created_at": record.created_at,
        }
        rollout = rollouts.get((record.service, record.environment))
        if rollout is not None:
            entry["rollout"] = {
                "id": rollout.id,
                "state": rollout.state,
                "percent": rollout.percent,
                "candidate": rollout.candidate_version,
            }
        by_service.setdefault(record.service, {})[record.environment] = entry
    return {
        "services": [
            {
                "service": service,
                "environments": {env: environments[env] for env in pipeline if env in environments},
            }
            for service, environments in sorted(by_service.items())
        ]
    }
