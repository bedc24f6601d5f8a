"""The built-in section appliers: logging, security, cache and database.

An applier makes one top-level section of the config take effect in the running process.
Each follows the same three-step protocol, so an apply can be all or nothing:

- `apply(new, old)`: make `new` current (`old` is what was current; either may be None);
  raise to refuse, leaving things as they were;
- `revert(new, old)`: undo the `apply(new, old)` just made, because a later step failed;
- `commit()`: the whole apply succeeded; release what a revert would have needed.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from tskcfg._cache import TTLCache

logger = logging.getLogger("tskcfg")

Section = Mapping[str, Any] | None


class Applier(Protocol):
    """What the apply transaction needs from a section applier."""

    def apply(self, new: Any, old: Any) -> None: ...

    def revert(self, new: Any, old: Any) -> None: ...

    def commit(self) -> None: ...


def _mapping(section: Any, name: str) -> Mapping[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"the {name} section must be an object, not {type(section).__name__}")
    return section


# ---------------------------------------------------------------------------- logging


def _level(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = logging.getLevelNamesMapping().get(value.strip().upper())
        if number is not None:
            return number
    raise ValueError(
        f"{where}: {value!r} is not a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
    )


@dataclass
class _LoggingSnapshot:
    root_level: int
    formatters: list[tuple[logging.Handler, logging.Formatter | None]]
    logger_levels: dict[str, int]
    added_handler: logging.Handler | None = None


# The client's own HTTP libraries: at DEBUG, httpcore logs every socket event and httpx every
# request (each long poll), which floods a service whose document asks for DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore")


class LoggingApplier:
    """Applies `level`, `format` and `loggers: {name: level}` through the standard `logging` module.

    `level` sets the root logger's level, `format` the formatter of every handler on the root
    logger (a stderr handler is added when the root has none), `loggers` the level of each
    named logger; a logger dropped from `loggers` goes back to NOTSET (it inherits again).
    The client's HTTP libraries (`httpx`, `httpcore`) stay at WARNING unless `loggers` names
    them. A revert restores the levels, formatters and handlers exactly as they were.
    """

    def __init__(self) -> None:
        self._undo: list[_LoggingSnapshot] = []

    def apply(self, new: Any, old: Any) -> None:
        section = _mapping(new, "logging")
        previous = _mapping(old, "logging")
        # Everything is checked before anything changes, so a refusal leaves logging untouched.
        root_level = _level(section["level"], "logging.level") if "level" in section else None
        formatter = None
        if "format" in section:
            if not isinstance(section["format"], str):
                raise ValueError("logging.format must be a string")
            formatter = logging.Formatter(section["format"], validate=True)
        wanted = {name: logging.WARNING for name in QUIET_LOGGERS}
        wanted.update(
            (str(name), _level(value, f"logging.loggers.{name}"))
            for name, value in _mapping(section.get("loggers"), "logging.loggers").items()
        )
        dropped = [
            str(name)
            for name in _mapping(previous.get("loggers"), "logging.loggers")
            if name not in wanted
        ]

        root = logging.getLogger()
        touched = [*wanted, *dropped]
        snapshot = _LoggingSnapshot(
            root_level=root.level,
            formatters=[(handler, handler.formatter) for handler in root.handlers],
            logger_levels={name: logging.getLogger(name).level for name in touched},
        )
        if root_level is not None:
            root.setLevel(root_level)
        if formatter is not None:
            if not root.handlers:
                snapshot.added_handler = logging.StreamHandler()
                root.addHandler(snapshot.added_handler)
            for handler in root.handlers:
                handler.setFormatter(formatter)
        for name, level in wanted.items():
            logging.getLogger(name).setLevel(level)
        for name in dropped:
            logging.getLogger(name).setLevel(logging.NOTSET)
        self._undo.append(snapshot)

    def revert(self, new: Any, old: Any) -> None:
        snapshot = self._undo.pop()
        root = logging.getLogger()
        if snapshot.added_handler is not None:
            root.removeHandler(snapshot.added_handler)
        root.setLevel(snapshot.root_level)
        for handler, formatter in snapshot.formatters:
            handler.setFormatter(formatter)
        for name, level in snapshot.logger_levels.items():
            logging.getLogger(name).setLevel(level)

    def commit(self) -> None:
        self._undo.clear()


# ---------------------------------------------------------------------------- security


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
        state = self._next_state(_mapping(new, "security"))
        with self._lock:
            self._undo.append(self._state)
            self._state = state

    def revert(self, new: Any, old: Any) -> None:
        with self._lock:
            self._state = self._undo.pop()

    def commit(self) -> None:
        self._undo.clear()


# ---------------------------------------------------------------------------- cache

CacheFactory = Callable[[Mapping[str, Any]], Any]


class CacheApplier:
    """Keeps `current`, the service's cache: an in-process `TTLCache` for `backend: "memory"`.

    `ttl` and `max_size` change the memory cache live (shrinking evicts). Any other backend
    name calls the factory the service gave for it (`factories={"redis": make_redis}`) with
    the section, and its result becomes `current`.
    """

    def __init__(self, factories: Mapping[str, CacheFactory] | None = None) -> None:
        self.memory = TTLCache()
        self.current: Any = self.memory
        self._factories = dict(factories or {})
        self._undo: list[tuple[Any, float, int]] = []

    def apply(self, new: Any, old: Any) -> None:
        section = _mapping(new, "cache")
        backend = section.get("backend", "memory")
        snapshot = (self.current, self.memory.ttl, self.memory.max_size)
        if backend == "memory":
            # A key left out means the schema's default, not "keep what the last version said".
            self.memory.configure(
                ttl=section.get("ttl", 300), max_size=section.get("max_size", 1000)
            )
            replacement: Any = self.memory
        else:
            factory = self._factories.get(backend)
            if factory is None:
                raise ValueError(
                    f"cache backend {backend!r} has no factory; give one with cache_backends={{{backend!r}: ...}}"
                )
            replacement = factory(section)
        self._undo.append(snapshot)
        self.current = replacement

    def revert(self, new: Any, old: Any) -> None:
        current, ttl, max_size = self._undo.pop()
        self.memory.configure(ttl=ttl, max_size=max_size)
        self.current = current

    def commit(self) -> None:
        self._undo.clear()


# ---------------------------------------------------------------------------- database


class _Generation:
    """One connection (or pool) and how many callers are using it right now."""

    __slots__ = ("resource", "users", "retired", "closed")

    def __init__(self, resource: Any) -> None:
        self.resource = resource
        self.users = 0
        self.retired = False
        self.closed = False


def _close_resource(resource: Any) -> None:
    close = getattr(resource, "close", None)
    if callable(close):
        close()


class DatabaseApplier:
    """Builds the service's database connection (or pool) from the `database` section.

    `connect(section)` builds a new one and `check(resource)` (optional) proves it works;
    only then is it swapped in, atomically. The old one is closed (with `close`, default its
    `.close()`) once the apply commits and the callers using it have finished. If `connect` or
    `check` raises, the old one stays. Without `connect` the applier does nothing.

    Use `with database.connection() as conn:` so a swap never closes a connection under you.
    `AsyncConfigClient` calls `connect` and `check` in a worker thread, so a slow or
    unreachable database does not stall the service's event loop.
    """

    # Its apply and revert may block (connect, check, close): see client/_transaction.py.
    blocking = True

    def __init__(
        self,
        connect: Callable[[Mapping[str, Any]], Any] | None = None,
        close: Callable[[Any], None] | None = None,
        check: Callable[[Any], Any] | None = None,
    ) -> None:
        self._connect = connect
        self._close = close or _close_resource
        self._check = check
        self._lock = threading.Lock()
        self._current: _Generation | None = None
        self._undo: list[_Generation | None] = []

    @property
    def current(self) -> Any:
        """The connection in use now (None before the first apply); prefer `connection()`."""
        generation = self._current
        return generation.resource if generation else None

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """Lend the current connection; a swap during the block closes it only after the block."""
        with self._lock:
            generation = self._current
            if generation is None:
                raise RuntimeError(
                    "no database connection: the database section has not been applied"
                )
            generation.users += 1
        try:
            yield generation.resource
        finally:
            with self._lock:
                generation.users -= 1
                closing = generation.retired and generation.users == 0 and not generation.closed
                if closing:
                    generation.closed = True
            if closing:
                self._close_quietly(generation.resource)

    def _close_quietly(self, resource: Any) -> None:
        try:
            self._close(resource)
        except Exception:
            logger.exception("closing a database connection failed")

    def _in_use(self, resource: Any) -> bool:
        """Whether `resource` is the current one: a factory may hand back the pool it made before."""
        current = self._current
        return current is not None and current.resource is resource

    def _retire(self, generation: _Generation | None) -> None:
        if generation is None:
            return
        with self._lock:
            generation.retired = True
            closing = generation.users == 0 and not generation.closed
            if closing:
                generation.closed = True
        if closing:
            self._close_quietly(generation.resource)

    def apply(self, new: Any, old: Any) -> None:
        if self._connect is None:
            self._undo.append(self._current)
            return
        replacement = None
        if new is not None:
            resource = self._connect(_mapping(new, "database"))
            if self._check is not None:
                try:
                    self._check(resource)
                except BaseException:
                    with self._lock:
                        shared = self._in_use(resource)
                    if not shared:  # the one in use stays open, whatever the factory returned
                        self._close_quietly(resource)
                    raise
        with self._lock:
            if new is not None:
                # The same pool handed back stays one generation: retiring "the old one" must
                # not close what is still in use.
                shared = self._in_use(resource)
                replacement = self._current if shared else _Generation(resource)
            self._undo.append(self._current)
            self._current = replacement

    def revert(self, new: Any, old: Any) -> None:
        with self._lock:
            made = self._current
            self._current = self._undo.pop()
        if made is not self._current:
            self._retire(made)

    def commit(self) -> None:
        previous, self._undo = self._undo, []
        for generation in previous:
            if generation is not self._current:
                self._retire(generation)

    def close(self) -> None:
        """Close the current connection (when the service stops)."""
        with self._lock:
            generation, self._current = self._current, None
        self._retire(generation)
