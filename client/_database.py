"""The built-in `database` applier: a new connection (or pool) built, checked and swapped in,
the old one closed once nobody uses it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tskcfg._appliers import section_mapping

logger = logging.getLogger("tskcfg")


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
            resource = self._connect(section_mapping(new, "database"))
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
