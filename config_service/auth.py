"""Bearer tokens: roles, scopes (service patterns and environments), and checking a presented secret.

A token reads `tskcfg_<id>_<secret>`. Only the SHA-256 of the secret is stored; the id finds
the record, and the hashes are compared in constant time. Tokens are cached in memory and
the cache is replaced whenever this process creates or revokes one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from config_service.store import TokenRecord, utc_now

ROLES = ("reader", "writer", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
TOKEN_PREFIX = "tskcfg_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token_id() -> str:
    return secrets.token_hex(6)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def format_token(token_id: str, secret: str) -> str:
    return f"{TOKEN_PREFIX}{token_id}_{secret}"


def split_token(presented: str) -> tuple[str, str] | None:
    """`tskcfg_<id>_<secret>` -> (id, secret), or None when it is not of that shape."""
    if not presented.startswith(TOKEN_PREFIX):
        return None
    token_id, separator, secret = presented[len(TOKEN_PREFIX) :].partition("_")
    if not separator or not token_id or not secret:
        return None
    return token_id, secret


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
        # Admins may do everything (DESIGN "Who may do what"), whatever scope they were given.
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


class TokenBook:
    """The live tokens of this process, for checking presented secrets without the database.

    Revocation listeners (`add_revocation_listener`) are told the id of each token revoked,
    so that what a token holds open (long polls, event streams) ends at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, TokenRecord] = {}
        self._revocation_listeners: list[Callable[[str], None]] = []

    def replace(self, records: Sequence[TokenRecord]) -> None:
        by_id = {record.id: record for record in records}
        with self._lock:
            self._by_id = by_id

    def put(self, record: TokenRecord) -> None:
        with self._lock:
            before = self._by_id.get(record.id)
            self._by_id = {**self._by_id, record.id: record}
            listeners = list(self._revocation_listeners)
        revoked = record.revoked_at is not None and (before is None or before.revoked_at is None)
        if revoked:
            # After the record is in: whatever a listener ends, a new check finds it revoked.
            for listener in listeners:
                listener(record.id)

    def add_revocation_listener(self, listener: Callable[[str], None]) -> None:
        """Call `listener(token_id)` after each revocation, on the thread that revokes."""
        with self._lock:
            self._revocation_listeners.append(listener)

    def remove_revocation_listener(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            if listener in self._revocation_listeners:
                self._revocation_listeners.remove(listener)

    def __len__(self) -> int:
        return len(self._by_id)

    def is_live(self, principal: Principal) -> bool:
        """False once the principal's token was revoked: held requests and streams check it,
        since they outlive the authentication they started with."""
        if principal.token_id is None:
            return True
        record = self._by_id.get(principal.token_id)
        return record is not None and record.revoked_at is None

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented token, or None when it is unknown, revoked or wrong."""
        parts = split_token(presented)
        if parts is None:
            return None
        token_id, secret = parts
        record = self._by_id.get(token_id)
        # Hash even when the id is unknown, so that the time taken says nothing about ids.
        presented_hash = hash_secret(secret)
        if record is None:
            hmac.compare_digest(presented_hash, "0" * 64)
            return None
        if not hmac.compare_digest(presented_hash, record.secret_hash):
            return None
        if record.revoked_at is not None:
            return None
        return Principal.from_record(record)


def make_token(
    name: str,
    role: str,
    services: Sequence[str],
    environments: Sequence[str],
    created_by: str | None,
) -> tuple[TokenRecord, str]:
    """A new token record and its secret token string (shown once, never stored)."""
    token_id = new_token_id()
    secret = new_secret()
    record = TokenRecord(
        id=token_id,
        name=name,
        role=role,
        services=tuple(services),
        environments=tuple(environments),
        secret_hash=hash_secret(secret),
        created_at=utc_now(),
        created_by=created_by,
    )
    return record, format_token(token_id, secret)
