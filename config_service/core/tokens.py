"""Bearer tokens: checking a presented secret, creating and revoking tokens, the first admin token's file.

A token reads `tskcfg_<id>_<secret>`. Only the SHA-256 of the secret is stored; the id finds
the record, and the hashes are compared in constant time. Tokens are kept in memory and
the copy is updated whenever this process creates or revokes one; credentials found valid
are remembered for the hot read path, and count only while their token is unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from config_service.atomic_file import replacing
from config_service.core.access import Principal
from config_service.core.refusals import not_found
from config_service.store import AuditEntry, Store, TokenRecord, Transaction, utc_now
from config_service.store.data_folder import make_private_folder

logger = logging.getLogger("config_service")


class _TokensExist(Exception):
    """Another server made the first token meanwhile (a shared store): this one makes none."""

TOKEN_PREFIX = "tskcfg_"
# Credentials recently found valid, kept so that a hot read checks its token with a lookup
# instead of a hash (`recall`): at most this many, the oldest dropped first.
RECENT_CREDENTIALS = 4096


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


class TokenBook:
    """The live tokens of this process, for checking presented secrets without the database.

    Revocation listeners (`add_revocation_listener`) are told the id of each token revoked,
    so that what a token holds open (long polls, event streams) ends at once.

    Credentials found valid are remembered (`remember`, `recall`) with the record they matched;
    a remembered principal counts only while that record is still the token's current one, so
    a revocation (a new record) ends it at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, TokenRecord] = {}
        self._revocation_listeners: list[Callable[[str], None]] = []
        self._recent: dict[bytes, tuple[TokenRecord, Principal]] = {}

    def replace(self, records: Sequence[TokenRecord]) -> None:
        by_id = {record.id: record for record in records}
        with self._lock:
            self._by_id = by_id
            self._recent = {}

    def put(self, record: TokenRecord) -> None:
        with self._lock:
            before = self._by_id.get(record.id)
            self._by_id = {**self._by_id, record.id: record}
            if record.revoked_at is not None:
                self._recent = {}
            listeners = list(self._revocation_listeners)
        revoked = record.revoked_at is not None and (before is None or before.revoked_at is None)
        if revoked:
            # After the record is in: whatever a listener ends, a new check finds it revoked.
            for listener in listeners:
                listener(record.id)

    def refresh(self, records: Sequence[TokenRecord]) -> int:
        """Take in tokens that other server processes created or revoked (as the store lists
        them now); returns how many changed here. It only adds and revokes, never forgets or
        un-revokes, so a list read before this process's own change cannot undo it."""
        changed = 0
        for record in records:
            known = self._by_id.get(record.id)
            if known is None or (known.revoked_at is None and record.revoked_at is not None):
                self.put(record)  # a revocation ends what the token holds open, as here
                changed += 1
        return changed

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

    def principal_of(self, token_id: str) -> Principal | None:
        """The principal of a live token by its id (a console session acts for one), or None."""
        record = self._by_id.get(token_id)
        if record is None or record.revoked_at is not None:
            return None
        return Principal.from_record(record)

    def recall(self, credentials: bytes) -> Principal | None:
        """The principal of `credentials` (the bytes presented, as presented) when they were
        `remember`ed and their token is unchanged since; None to check them afresh."""
        recent = self._recent.get(credentials)
        if recent is None:
            return None
        record, principal = recent
        return principal if self._by_id.get(record.id) is record else None

    def remember(self, credentials: bytes, principal: Principal) -> None:
        """Remember that `credentials` authenticated as `principal` (from `authenticate`)."""
        if principal.token_id is None:
            return
        record = self._by_id.get(principal.token_id)
        if record is None or record.revoked_at is not None:
            return
        recent = self._recent
        if len(recent) >= RECENT_CREDENTIALS:
            recent.pop(next(iter(recent)), None)
        recent[credentials] = (record, principal)

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


class Tokens(TokenBook):
    """The live tokens of one server (a `TokenBook`) and what an admin does with them."""

    def __init__(self, store: Store, admin_token_path: Path) -> None:
        super().__init__()
        self._store = store
        self._admin_token_path = admin_token_path

    def load(self) -> None:
        """Read every token from the store (at start)."""
        self.replace(self._store.list_tokens())

    def reload(self) -> int:
        """Take in what other server processes created or revoked since (see `refresh`)."""
        return self.refresh(self._store.list_tokens())

    def create(
        self,
        principal: Principal,
        name: str,
        role: str,
        services: list[str],
        environments: list[str],
        request_id: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token, audited; (its record, the secret token string shown once)."""
        record, secret = make_token(name, role, services, environments, principal.name)
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action="token_create",
            request_id=request_id,
            detail={"id": record.id, "name": name, "role": role},
        )
        self._store.write(lambda transaction: transaction.insert_token(record, audit))
        self.put(record)
        return record, secret

    def revoke(self, principal: Principal, token_id: str, request_id: str | None = None) -> TokenRecord:
        """Revoke a token at once (what it holds open ends); `not_found` for an unknown id."""
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action="token_revoke",
            request_id=request_id,
            detail={"id": token_id},
        )

        def revoke(transaction: Transaction) -> TokenRecord | None:
            revoked = transaction.revoke_token(token_id, audit)
            if revoked is not None:
                transaction.delete_sessions(token_id=token_id)  # its console sessions end with it
            return revoked

        record = self._store.write(revoke)
        if record is None:
            raise not_found(f"there is no token {token_id!r}")
        self.put(record)
        return record

    def listing(self) -> dict[str, object]:
        """`{"tokens": [...]}`: every token, without secrets."""
        return {"tokens": [record.public() for record in self._store.list_tokens()]}

    def ensure_admin_token(self) -> Path | None:
        """On first start (no tokens at all), create an admin token and write it, mode 0600."""
        existing = self._store.list_tokens()
        if existing:
            # Another server on a shared store may have made them since `load`.
            self.replace(existing)
            return None
        record, secret = make_token("admin", "admin", ["*"], ["*"], "first start")
        path = self._admin_token_path
        make_private_folder(path.parent)
        audit = AuditEntry(
            actor="system", action="token_create", detail={"id": record.id, "name": "admin"}
        )
        def insert_first(transaction: Transaction) -> None:
            # Checked again inside the write: of several servers starting together on one
            # shared store, only the first makes a token.
            if transaction.has_tokens():
                raise _TokensExist
            transaction.insert_token(record, audit)

        # Store first, then publish the file: a crash in between leaves no orphan secret file.
        try:
            with replacing(path, (secret + "\n").encode("ascii"), mode=0o600):
                self._store.write(insert_first)
        except _TokensExist:
            self.load()
            return None
        self.put(record)
        logger.info("created the first admin token; it is in %s (mode 0600)", path)
        return path
