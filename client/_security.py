"""The built-in `security` applier: a thread-safe holder of origins, keys (with a grace period
for rotated ones), token TTL and mTLS."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tskcfg._appliers import section_mapping


@dataclass(frozen=True)
class SecurityState:
    """One immutable view of the security settings; the holder swaps whole states."""

    allowed_origins: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    # Keys taken out by a rotation, each with the monotonic time until which it still counts.
    retired_keys: tuple[tuple[str, float], ...] = ()
    token_ttl: int | None = None
    require_mtls: bool = False
    key_grace_period: float = 3600.0
    region: str | None = None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where} must be a list of strings")
    return tuple(value)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where} must be a number of seconds >= 0, not {value!r}")
    return float(value)


class SecurityPolicy:
    """A thread-safe holder of the security section: origins, keys, token TTL, mTLS.

    Section keys (schemas/security.json): `allowed_origins` (`"*"` allows any), `keys`
    (newest first: the first signs, all verify), `key_grace_period` (seconds, default 3600)
    during which a key dropped by a rotation is still accepted, `token_ttl`, `require_mtls`,
    `region`. Readers get one consistent state; an apply swaps it whole.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = SecurityState()
        self._undo: list[SecurityState] = []

    @property
    def state(self) -> SecurityState:
        return self._state

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return self._state.allowed_origins

    @property
    def token_ttl(self) -> int | None:
        return self._state.token_ttl

    @property
    def require_mtls(self) -> bool:
        return self._state.require_mtls

    @property
    def region(self) -> str | None:
        return self._state.region

    @property
    def signing_key(self) -> str | None:
        """The key to sign with now: the newest."""
        keys = self._state.keys
        return keys[0] if keys else None

    @property
    def verification_keys(self) -> tuple[str, ...]:
        """Keys that verify now: the current ones, then those rotated out less than a grace period ago."""
        state = self._state
        now = self._clock()
        return state.keys + tuple(key for key, until in state.retired_keys if until > now)

    def is_origin_allowed(self, origin: str) -> bool:
        origins = self._state.allowed_origins
        return "*" in origins or origin in origins

    def accepts_key(self, key: str) -> bool:
        """True when `key` is a current key or one rotated out less than a grace period ago."""
        # compare_digest against every candidate: the time taken does not tell which one nearly matched.
        found = False
        for candidate in self.verification_keys:
            found |= hmac.compare_digest(candidate.encode(), key.encode())
        return found

    def _next_state(self, section: Mapping[str, Any]) -> SecurityState:
        grace = _seconds(section.get("key_grace_period", 3600), "security.key_grace_period")
        ttl = section.get("token_ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
            raise ValueError("security.token_ttl must be an integer number of seconds >= 0")
        mtls = section.get("require_mtls", False)
        if not isinstance(mtls, bool):
            raise ValueError("security.require_mtls must be true or false")
        region = section.get("region")
        if region is not None and not isinstance(region, str):
            raise ValueError("security.region must be a string")
        keys = _strings(section.get("keys"), "security.keys")
        current = self._state
        now = self._clock()
        # Still-valid retired keys stay retired (with their own deadline) unless they came back;
        # keys dropped by this version start their grace period now.
        retired = {
            key: until for key, until in current.retired_keys if until > now and key not in keys
        }
        for key in current.keys:
            if key not in keys:
                retired[key] = now + grace
        return SecurityState(
            allowed_origins=_strings(section.get("allowed_origins"), "security.allowed_origins"),
            keys=keys,
            retired_keys=tuple(retired.items()),
            token_ttl=ttl,
            require_mtls=mtls,
            key_grace_period=grace,
            region=region,
        )

    def apply(self, new: Any, old: Any) -> None:
        state = self._next_state(section_mapping(new, "security"))
        with self._lock:
            self._undo.append(self._state)
            self._state = state

    def revert(self, new: Any, old: Any) -> None:
        with self._lock:
            self._state = self._undo.pop()

    def commit(self) -> None:
        self._undo.clear()
