"""What the console's pages show, gathered from the rules the API uses (docs/console.md).

Each method answers one page in one call, under the token's scopes exactly as the API: the
matrix is `GET /v1/services` with each document's instances counted; a document is its
current version, a page of its history, its instances and its latest rollout. Actions are not
here: the console's forms call the same `Documents`, `Rollouts` and `Tokens` methods as the
API's handlers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from config_service import tsk
from config_service.core.access import Access, Principal
from config_service.core.documents import Documents, parse_document
from config_service.core.file_sync import FileSyncRules
from config_service.core.instances import Instances
from config_service.core.refusals import Refused, not_found
from config_service.core.rendered import RenderedVersions
from config_service.core.rollouts import Rollouts, baked_at
from config_service.settings import Settings
from config_service.store.records import ACTIVE_ROLLOUT_STATES, utc_now

HISTORY_PAGE = 25


def instance_counts(instances: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many instances of a document applied, failed, are behind, or went stale."""
    return {
        "total": len(instances),
        "applied": sum(1 for item in instances if item["status"] == "applied"),
        "failed": sum(1 for item in instances if item["status"] == "failed"),
        "behind": sum(1 for item in instances if item["behind"]),
        "stale": sum(1 for item in instances if item["stale"]),
    }


class Console:
    """The pages of the console, each one call."""

    def __init__(
        self,
        settings: Settings,
        access: Access,
        versions: RenderedVersions,
        documents: Documents,
        instances: Instances,
        rollouts: Rollouts,
        file_sync: FileSyncRules,
    ) -> None:
        self.settings = settings
        self._access = access
        self._versions = versions
        self._documents = documents
        self._instances = instances
        self._rollouts = rollouts
        self._file_sync = file_sync

    def environments(self, principal: Principal) -> list[str]:
        """The pipeline's environments the token covers, in pipeline order."""
        return [env for env in self.settings.pipeline if principal.covers_environment(env)]

    def matrix(self, principal: Principal) -> dict[str, Any]:
        """Services x environments the token may read: each current version (as `GET
        /v1/services` lists it) with its instances counted."""
        listing = self._documents.services(principal)
        rows = []
        for item in listing["services"]:
            cells = {}
            for environment, current in item["environments"].items():
                instances = self._instances.listing(item["service"], environment)["instances"]
                cells[environment] = {**current, "instances": instance_counts(instances)}
            rows.append({"service": item["service"], "cells": cells})
        return {"environments": self.environments(principal), "services": rows}

    def document(
        self, principal: Principal, service: str, environment: str, before: int | None = None
    ) -> dict[str, Any]:
        """One document as the token may see it: current version (or None), a page of history,
        instances, and what the token may do with it."""
        self._access.check_document(principal, "reader", service, environment)
        rendered = self._versions.current(service, environment)
        current = None
        if rendered is not None:
            record = rendered.record
            current = {
                **record.metadata(),
                "source": record.source,
                # A retired document's current version has no config.
                "config": None if record.retired else json.loads(record.config),
                "retired": record.retired,
            }
        history = self._documents.history(service, environment, HISTORY_PAGE, before)
        instances = self._instances.listing(service, environment)["instances"]
        rollout = self._rollouts.latest(service, environment)
        if rollout is not None:
            fields = (rollout["state"], rollout["baked_seconds"], rollout["step_started_at"])
            rollout = {**rollout, "baked": baked_at(*fields, utc_now())}
        return {
            "service": service,
            "environment": environment,
            "current": current,
            "history": history,
            "instances": instances,
            "counts": instance_counts(instances),
            "rollout": rollout,
            "sync": self._file_sync.state(service, environment),
            "rollout_active": rollout is not None and rollout["state"] in ACTIVE_ROLLOUT_STATES,
            "may_write": principal.may("writer", service, environment),
            "promote_from": self._promote_from(principal, service, environment),
            "environments": [
                env for env in self.environments(principal) if principal.covers(service, env)
            ],
        }

    def _promote_from(self, principal: Principal, service: str, environment: str) -> str | None:
        """The pipeline's previous environment, when the token may read the document there."""
        previous = self.settings.previous_environment(environment)
        if previous is not None and principal.may("reader", service, previous):
            return previous
        return None

    def rollout_form(self, principal: Principal, service: str, environment: str) -> dict[str, Any]:
        """What the form that starts a rollout offers (a writer in scope): the current
        version's source to edit, the versions it may roll out instead, the environment it
        may promote from, and the rollout already under way (if any)."""
        self._access.check_document(principal, "writer", service, environment)
        rendered = self._versions.current(service, environment)
        current = rendered.record if rendered is not None else None
        history = self._documents.history(service, environment, HISTORY_PAGE, None)
        rollout = self._rollouts.latest(service, environment)
        if rollout is not None:
            fields = (rollout["state"], rollout["baked_seconds"], rollout["step_started_at"])
            rollout = {**rollout, "baked": baked_at(*fields, utc_now())}
        return {
            "service": service,
            "environment": environment,
            "current": current.metadata() if current is not None else None,
            "retired": current is not None and current.retired,
            "source": current.source if current is not None else "",
            "versions": [
                version for version in history["versions"]
                if version["kind"] != "retire" and (current is None or version["version"] != current.version)
            ],
            "promote_from": self._promote_from(principal, service, environment),
            "active": rollout if rollout is not None and rollout["state"] in ACTIVE_ROLLOUT_STATES else None,
        }

    def rollback_preview(
        self, principal: Principal, service: str, environment: str, target: int
    ) -> dict[str, Any]:
        """What rolling back to version `target` would do (a writer in scope): the diff from
        the current version, or, for a retired document, the source that would revive it."""
        self._access.check_document(principal, "writer", service, environment)
        rendered = self._versions.current(service, environment)
        if rendered is None:
            raise not_found(f"{service!r} has no version in {environment!r}")
        chosen = self._documents.version(service, environment, target).record
        if chosen.retired:
            raise Refused("conflict", f"version {target} is a retire, with no config to roll back to")
        current = rendered.record
        return {
            "target": target,
            "retired_at": current.version if current.retired else None,
            "diff": None if current.retired
            else self._documents.diff_versions(service, environment, current.version, target),
            "source": chosen.source,
        }

    def take_file_view(self, principal: Principal, service: str, environment: str) -> dict[str, Any]:
        """A sync conflict as the page that ends it shows it (a writer in scope): the sync
        state, the current version, and the file beside it (its source, the diff from the
        current version, or why it cannot be read or parsed)."""
        self._access.check_document(principal, "writer", service, environment)
        sync = self._file_sync.state(service, environment)
        rendered = self._versions.current(service, environment)
        view: dict[str, Any] = {
            "service": service,
            "environment": environment,
            "sync": sync,
            "current": rendered.record.metadata() if rendered is not None else None,
            "file_source": None,
            "diff": None,
            "problem": None,
        }
        if sync is None or sync["state"] != "conflict" or rendered is None:
            return view
        try:
            source = self._file_sync.file_source(service, environment)
        except Refused as refused:
            view["problem"] = refused
            return view
        view["file_source"] = source
        current = rendered.record
        try:
            file_config = json.loads(parse_document(source).wire)
        except Refused as refused:
            view["problem"] = refused  # taking it would be refused the same way
            file_config = None
        view["diff"] = tsk.diff_document(
            {"service": service, **current.metadata()},
            {"service": service, "environment": sync["file"], "version": "file"},
            {} if current.retired else json.loads(current.config),
            file_config if file_config is not None else {},
            current.source,
            source,
        )
        if file_config is None:
            view["diff"]["changes"] = None
        return view
