"""The audit log: reading it, and recording what file sync refused."""

from __future__ import annotations

from typing import Any

from config_service.core.listings import page
from config_service.core.refusals import Refused
from config_service.store import AuditEntry, Store


class Audit:
    """Who did what, as the store keeps it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def listing(
        self,
        limit: int,
        before: int | None,
        *,
        service: str | None = None,
        environment: str | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """`{"entries": [...], "next_before"}`, newest first, filtered."""
        records = self._store.list_audit(
            limit + 1, before, service=service, environment=environment, action=action, actor=actor
        )
        shown, next_before = page(records, limit, lambda record: record.id)
        return {"entries": [record.public() for record in shown], "next_before": next_before}

    def record_refusal(
        self, actor: str, action: str, service: str | None, environment: str | None, refused: Refused
    ) -> None:
        """Audit a refusal no request saw (a file that sync could not import), as it was refused."""
        entry = AuditEntry(
            actor=actor,
            action=action,
            service=service,
            environment=environment,
            detail={
                "error": refused.code,
                "message": refused.message,
                "details": [dict(detail) for detail in refused.details],
            },
        )
        self._store.write(lambda transaction: transaction.append_audit(entry))
