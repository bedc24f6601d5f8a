"""Console sessions: signing in with a token, finding the session of a cookie, signing out.

A session lives in the store (any replica serves it) as the SHA-256 of its cookie's secret,
the token it acts for, its CSRF token and when it was last used. It acts with exactly the
token's role and scopes, ends after `Settings.session_idle` seconds without use, and ends
when its token is revoked (docs/console.md, "Sessions").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config_service.core.access import Principal
from config_service.core.refusals import forbidden, unauthorized
from config_service.core.tokens import Tokens
from config_service.store import SessionRecord, Store, Transaction, utc_now, utc_timestamp

# A presented token or cookie secret longer than this is not one of ours.
MAX_SECRET = 256


@dataclass(frozen=True)
class Session:
    """A live session: who acts, and the CSRF token its forms carry."""

    principal: Principal
    csrf: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _parse(moment: str) -> datetime:
    return datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Sessions:
    """The console sessions of one server, kept in its store."""

    def __init__(self, store: Store, tokens: Tokens, idle_seconds: float) -> None:
        self._store = store
        self._tokens = tokens
        self.idle_seconds = idle_seconds
        # A session's `last_seen` is written at most this often (a page view is not a write).
        self._touch_seconds = max(1.0, min(60.0, idle_seconds / 10))

    def sign_in(self, presented: str) -> tuple[str, Session]:
        """A new session for a live token: (the cookie's secret, the session).

        `unauthorized` for a token that is unknown, wrong or revoked. Sessions idle past
        the limit are removed on the way, so the table stays as small as the live sessions.
        """
        presented = presented.strip()
        if not presented or len(presented) > MAX_SECRET:
            raise unauthorized("paste a token (tskcfg_...) to sign in")
        principal = self._tokens.authenticate(presented)
        if principal is None or principal.token_id is None:
            raise unauthorized("the token is not valid, or it was revoked")
        secret = secrets.token_urlsafe(32)
        now = utc_now()
        record = SessionRecord(
            id_hash=_hash(secret),
            token_id=principal.token_id,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
        )
        idle_before = self._idle_before()

        def write(transaction: Transaction) -> None:
            transaction.delete_sessions(idle_before=idle_before)
            transaction.insert_session(record)

        self._store.write(write)
        return secret, Session(principal, record.csrf)

    def resolve(self, secret: str | None) -> Session | None:
        """The live session of a cookie's secret, or None (unknown, idle too long, or its
        token revoked; such a session is removed)."""
        if not secret or len(secret) > MAX_SECRET:
            return None
        id_hash = _hash(secret)
        record = self._store.get_session(id_hash)
        if record is None:
            return None
        principal = self._tokens.principal_of(record.token_id)
        now = datetime.now(UTC)
        last_seen = _parse(record.last_seen)
        if principal is None or (now - last_seen).total_seconds() > self.idle_seconds:
            self._store.write(lambda transaction: transaction.delete_session(id_hash))
            return None
        if (now - last_seen).total_seconds() >= self._touch_seconds:
            stamp = utc_timestamp(now)
            self._store.write(lambda transaction: transaction.touch_session(id_hash, stamp))
        return Session(principal, record.csrf)

    def sign_out(self, secret: str | None) -> None:
        """End the session of a cookie's secret (nothing when there is none)."""
        if not secret or len(secret) > MAX_SECRET:
            return
        id_hash = _hash(secret)
        self._store.write(lambda transaction: transaction.delete_session(id_hash))

    @staticmethod
    def check_csrf(session: Session, presented: str | None) -> None:
        """`forbidden` unless a form carries its session's CSRF token."""
        if not presented or not hmac.compare_digest(presented.encode(), session.csrf.encode()):
            raise forbidden(
                "the form's security token is missing or out of date: reload the page and try again"
            )

    def _idle_before(self) -> str:
        return utc_timestamp(datetime.now(UTC) - timedelta(seconds=self.idle_seconds))
