"""Who may do what: the caller (`Principal`), its role and scope, and the checks every rule runs first.

Scope is checked before anything about a document is looked at, so that a token learns
nothing about documents outside it (docs/server.md, "Tokens and scopes").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from config_service.core.refusals import Refused, forbidden
from config_service.names import InvalidName, check_name
from config_service.store import TokenRecord

ROLES = ("reader", "writer", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
_VERBS = {"reader": "read", "writer": "write", "admin": "administer"}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a live token's name, role and scope."""

    token_id: str | None
    name: str
    role: str
    services: tuple[str, ...]
    environments: tuple[str, ...]

    @classmethod
    def from_record(cls, record: TokenRecord) -> Principal:
        return cls(record.id, record.name, record.role, record.services, record.environments)

    def has_role(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def covers_service(self, service: str) -> bool:
        # Admins may do everything, whatever scope they were given (docs/server.md, "Tokens and scopes").
        return self.is_admin or any(fnmatchcase(service, pattern) for pattern in self.services)

    def covers_environment(self, environment: str) -> bool:
        return self.is_admin or any(
            fnmatchcase(environment, pattern) for pattern in self.environments
        )

    def covers(self, service: str, environment: str) -> bool:
        return self.covers_service(service) and self.covers_environment(environment)

    def covers_all_environments(self, environments: Iterable[str]) -> bool:
        return all(self.covers_environment(environment) for environment in environments)

    def may(self, role: str, service: str, environment: str) -> bool:
        return self.has_role(role) and self.covers(service, environment)


def file_principal(author: str) -> Principal:
    """The author of what file sync imports: `file:<path relative to its folder>`."""
    return Principal(None, author, "admin", ("*",), ("*",))


class Access:
    """The checks of one server's pipeline and section schemas; each raises `Refused` or returns."""

    def __init__(self, pipeline: Sequence[str], sections: Sequence[str]) -> None:
        self.pipeline = tuple(pipeline)
        self.sections = tuple(sections)
        # Documents whose names passed `check_names`: reads check the same few again and again.
        self._good_names: set[tuple[str, str]] = set()

    def check_document(self, principal: Principal, role: str, service: str, environment: str) -> None:
        """`forbidden` unless the token may act as `role` on the document; then the names.

        Scope is checked first so that a token learns nothing about documents outside it.
        """
        if not principal.may(role, service, environment):
            raise forbidden(f"this token may not {_VERBS[role]} {service!r} in {environment!r}")
        if (service, environment) not in self._good_names:
            self.check_names(service, environment)
            if len(self._good_names) >= 4096:
                self._good_names.clear()
            self._good_names.add((service, environment))

    def check_event_filter(
        self, principal: Principal, service: str | None, environment: str | None
    ) -> None:
        """An event stream's filter: a filter outside the token's scope could never deliver an
        event, so it is `forbidden`, as on any document, rather than a stream that stays silent."""
        if (service is not None and not principal.covers_service(service)) or (
            environment is not None and not principal.covers_environment(environment)
        ):
            what = " in ".join(repr(name) for name in (service, environment) if name is not None)
            raise forbidden(f"this token may not read {what}")
        if service is not None:
            self.check_names(service)
        if environment is not None:
            self.check_names("x", environment)

    def check_schema_read(self, principal: Principal, name: str) -> None:
        """`forbidden` unless the token may read schema `name`; then the name.

        Every token reads the section schemas (a client validates with them); otherwise a
        token reads the schemas of the services it covers, and nothing else: a service
        schema refers only to sections and itself, so that is all a client needs.
        """
        if name not in self.sections and not principal.covers_service(name):
            raise forbidden(f"this token may not read the schema of {name!r}")
        self.check_names(name)

    def check_schema_write(self, principal: Principal, name: str, force: bool = False) -> None:
        """`forbidden` unless the token may put schema `name`: a writer holding the service in
        every environment (a schema binds them all), and for a section schema or `force`, an admin."""
        if name in self.sections:
            if not principal.is_admin:
                raise forbidden(
                    f"{name!r} is a section schema, shared by every service: only an admin may put it"
                )
        elif not (
            principal.has_role("writer")
            and principal.covers_service(name)
            and principal.covers_all_environments(self.pipeline)
        ):
            raise forbidden(
                f"this token may not put the schema of {name!r} (it needs every environment)"
            )
        if force and not principal.is_admin:
            raise forbidden("only an admin token may force a schema")

    def check_names(self, service: str, environment: str | None = None) -> None:
        """`invalid_name` for a name that breaks the rule; `unknown_environment` outside the pipeline."""
        try:
            check_name(service, "service")
            if environment is not None:
                check_name(environment, "environment")
        except InvalidName as error:
            raise Refused("invalid_name", str(error)) from None
        if environment is not None and environment not in self.pipeline:
            raise Refused(
                "unknown_environment",
                f"environment {environment!r} is not one of this server's environments "
                f"({', '.join(self.pipeline)})",
            )


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise forbidden("only an admin token may do this")
