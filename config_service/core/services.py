"""Services exist on purpose (docs/lifecycle.md, "Services exist on purpose").

A service has a schema, or an admin created it, or a file for it appeared under
environments/. A push to any other name is `unknown_service`, with the nearest name the
token may read as a suggestion, unless the server runs with open services (a push creates it).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from config_service.core import listings
from config_service.core.access import Access, Principal, require_admin
from config_service.core.refusals import Refused
from config_service.store import AuditEntry, ServiceRecord, Store, Transaction


class Services:
    """Which services exist, creating them, and the refusal of a push to one that does not."""

    def __init__(
        self,
        store: Store,
        access: Access,
        sections: Sequence[str],
        pipeline: Sequence[str],
        open_services: bool,
    ) -> None:
        self._store = store
        self._access = access
        self._sections = tuple(sections)
        self._pipeline = tuple(pipeline)
        self.open = open_services

    def names(self) -> list[str]:
        """Every service, by name (section schemas are not services)."""
        return [record.name for record in self._store.list_services() if record.name not in self._sections]

    def exists(self, name: str) -> bool:
        return name not in self._sections and self._store.service(name) is not None

    def require(self, principal: Principal, service: str, create_ok: bool = True) -> None:
        """`unknown_service` unless `service` exists (or, with `create_ok`, the server lets
        pushes create services)."""
        if (self.open and create_ok) or self.exists(service):
            return
        readable = sorted(listings.visible(self._store, self._pipeline, principal, self.names())[0])
        nearest = difflib.get_close_matches(service, readable, n=1, cutoff=0.6)
        if nearest:
            hint = f"did you mean {nearest[0]!r}?"
        else:
            hint = "an admin creates a service with `tskcfg service create NAME`, or by putting its schema"
        raise Refused(
            "unknown_service",
            f"there is no service {service!r}; {hint}",
            [{"service": service, "suggestion": nearest[0] if nearest else None}],
        )

    def create(
        self, principal: Principal, name: str, request_id: str | None = None
    ) -> tuple[ServiceRecord, bool]:
        """An admin creates `name` (origin "api"); (record, created). Refuses `forbidden`,
        `invalid_name` (a bad name, or a section schema's)."""
        require_admin(principal)
        self._access.check_names(name)
        if name in self._sections:
            raise Refused(
                "invalid_name",
                f"{name!r} is the name of a section schema ({', '.join(self._sections)}); "
                "a service cannot have it",
            )
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action="service_create",
            service=name,
            request_id=request_id,
        )

        def operation(transaction: Transaction) -> tuple[ServiceRecord, bool]:
            return transaction.create_service(name, "api", principal.name, audit)

        return self._store.write(operation)
