"""A thread-safe in-process TTL cache whose time to live and size change while it is in use, and
the built-in `cache` applier that keeps the service's cache in step with the `cache` section."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from tskcfg._appliers import section_mapping

_MISSING: Any = object()


class TTLCache:
    """Keys expire `ttl` seconds after they were set (0: never); past `max_size`, the least recently used go.

    `configure(ttl=..., max_size=...)` changes both live: shrinking evicts at once, and a
    new ttl applies to entries already stored (their age is measured from when they were set).
    """

    def __init__(
        self,
        ttl: float = 300.0,
        max_size: int = 1000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._clock = clock
        self._ttl = 0.0
        self._max_size = 0
        self.hits = 0
        self.misses = 0
        self.configure(ttl=ttl, max_size=max_size)

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def max_size(self) -> int:
        return self._max_size

    def configure(self, *, ttl: float | None = None, max_size: int | None = None) -> None:
        """Change the time to live and/or the size; evicts what no longer fits."""
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0
        ):
            raise ValueError(f"cache ttl must be a number of seconds >= 0, not {ttl!r}")
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
        ):
            raise ValueError(f"cache max_size must be an integer >= 0, not {max_size!r}")
        with self._lock:
            if ttl is not None:
                self._ttl = float(ttl)
            if max_size is not None:
                self._max_size = max_size
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def get(self, key: Any, default: Any = None) -> Any:
        """The live value of `key`, or `default` when absent or expired."""
        with self._lock:
            entry = self._entries.get(key, _MISSING)
            if entry is _MISSING:
                self.misses += 1
                return default
            stored_at, value = entry
            if self._ttl and self._clock() - stored_at >= self._ttl:
                del self._entries[key]
                self.misses += 1
                return default
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def set(self, key: Any, value: Any) -> None:
        """Store `value` under `key` (a max_size of 0 stores nothing)."""
        with self._lock:
            if self._max_size == 0:
                return
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def delete(self, key: Any) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING


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
        section = section_mapping(new, "cache")
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
