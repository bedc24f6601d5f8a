"""The PostgreSQL store's change signal: LISTEN/NOTIFY on one channel (docs/replicas.md).

A commit that created versions sends `NOTIFY tskcfg, '<its last sequence>'` (channel
`CHANNEL`); one that changed tokens, schemas, services or rollouts also sends the kind
(`CHANGE_KINDS`). PostgreSQL delivers them to every listener when, and only if, the
transaction commits. `follow` listens on a connection of its own and hands each one on,
connecting again while PostgreSQL is away; `PostgresChanges` is the store's `ChangeSignal` on
top of it. `OwnNotifications` remembers the sequences a store's own writer notified, so a
listener may skip its own commits (`PostgresStore.listen(own_commits=False)`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from config_service.store.postgresql_connection import UNREACHABLE

if TYPE_CHECKING:
    from config_service.store.postgresql import PostgresStore

logger = logging.getLogger("config_service")

# The channel every commit that created versions notifies, with its last sequence as payload.
CHANNEL = "tskcfg"
# The other payloads on CHANNEL: a commit changed tokens (created, revoked), schemas, services
# or rollouts.
CHANGE_KINDS = ("tokens", "schemas", "services", "rollouts")
# Sequences of this store's own notifications remembered at most (see `PostgresStore.listen`).
MAX_OWN_NOTIFIED = 4096
_MISSING = object()


class OwnNotifications:
    """The sequences a store's writer notified while a listener skips its own commits
    (`PostgresStore.listen(own_commits=False)`): taken off as their notifications arrive.
    Committed sequences are never reused, so one whose notification never came (the listening
    connection was lost) is only memory, bounded by MAX_OWN_NOTIFIED."""

    def __init__(self) -> None:
        self.sequences: dict[int, None] = {}
        self._lock = threading.Lock()
        self._skipping = 0

    def skipping(self, change: int) -> None:
        """One more (+1) or one fewer (-1) listener skips this store's own commits."""
        with self._lock:
            self._skipping += change

    def notifying(self, sequence: int) -> bool:
        """Remember that this writer is about to notify `sequence` (when a listener skips
        its own commits); True when it was remembered."""
        with self._lock:
            if not self._skipping:
                return False
            self.sequences[sequence] = None
            while len(self.sequences) > MAX_OWN_NOTIFIED:
                del self.sequences[next(iter(self.sequences))]
            return True

    def not_notified(self, sequence: int) -> None:
        """The commit that was to notify `sequence` failed: another replica may take it."""
        with self._lock:
            self.sequences.pop(sequence, None)

    def was_own(self, sequence: int) -> bool:
        """Whether `sequence` was notified by this store's own writer (forgotten once asked)."""
        with self._lock:
            return self.sequences.pop(sequence, _MISSING) is not _MISSING


class Listening:
    """A running `PostgresStore.listen`: `stop()` ends it."""

    def __init__(self, thread: threading.Thread, stopping: threading.Event) -> None:
        self._thread = thread
        self._stopping = stopping

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)


class _Follower:
    """The listening thread of `follow`, step by step."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        own: OwnNotifications,
        on_sequence: Callable[[int], None],
        on_connected: Callable[[], None],
        retry_every: float,
        on_change: Callable[[str], None] | None,
        on_lost: Callable[[], None] | None,
        own_commits: bool,
    ) -> None:
        self.connect = connect
        self.own = own
        self.on_sequence = on_sequence
        self.on_connected = on_connected
        self.retry_every = retry_every
        self.on_change = on_change
        self.on_lost = on_lost
        self.own_commits = own_commits
        self.stopping = threading.Event()

    def run(self) -> None:
        """Follow until stopped, counted among the listeners that skip their own commits."""
        if not self.own_commits:
            self.own.skipping(+1)
        try:
            self.follow()
        finally:
            if not self.own_commits:
                self.own.skipping(-1)

    def follow(self) -> None:
        """Listen, and listen again every `retry_every` seconds after the connection failed."""
        while not self.stopping.is_set():
            try:
                with self.connect() as connection:
                    self.listen(connection)
            except UNREACHABLE as error:
                if not self.stopping.is_set():
                    logger.warning(
                        "PostgreSQL store: listening for changes failed (%s); retrying", error
                    )
                    self.lost()
                self.stopping.wait(self.retry_every)
            except Exception:
                logger.exception("PostgreSQL store: a change listener failed; retrying")
                self.lost()
                self.stopping.wait(self.retry_every)

    def listen(self, connection: psycopg.Connection[Any]) -> None:
        """LISTEN on `connection`, say so, then hand on each notification until stopped."""
        connection.execute(f"LISTEN {CHANNEL}")
        self.on_connected()
        while not self.stopping.is_set():
            for notify in connection.notifies(timeout=0.5):
                self.heard(notify.payload)

    def heard(self, payload: str) -> None:
        """One notification: a commit's last sequence, or the kind of what it changed."""
        if payload.isdigit():
            sequence = int(payload)
            if self.own_commits or not self.own.was_own(sequence):
                self.on_sequence(sequence)
        elif self.on_change is not None and payload in CHANGE_KINDS:
            self.on_change(payload)

    def lost(self) -> None:
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:
                logger.exception("PostgreSQL store: on_lost failed")


def follow(
    connect: Callable[[], psycopg.Connection[Any]],
    own: OwnNotifications,
    on_sequence: Callable[[int], None],
    on_connected: Callable[[], None],
    retry_every: float = 0.5,
    on_change: Callable[[str], None] | None = None,
    on_lost: Callable[[], None] | None = None,
    own_commits: bool = True,
) -> Listening:
    """Listen on `CHANNEL` on connections made by `connect` (autocommit), on a thread of its
    own; see `PostgresStore.listen` for the callbacks. Returns a handle whose `stop()` ends it."""
    follower = _Follower(
        connect, own, on_sequence, on_connected, retry_every, on_change, on_lost, own_commits
    )
    thread = threading.Thread(target=follower.run, name="tskcfg-store-listen", daemon=True)
    thread.start()
    return Listening(thread, follower.stopping)

class PostgresChanges:
    """Commits by any process on the store, heard through LISTEN (`PostgresStore.listen`):
    `start(poke, missed)` calls `poke()` at each notification; when the listening connection
    is lost and each time it is made (again) it calls `missed()` then `poke()` (the catch-up
    that covers what went unheard; it fails while PostgreSQL is away, which keeps the process
    counted as possibly behind). `changed()` says whether one came since the last call, and
    says so at every call while the connection is down: the process then reads the store at
    every check instead of waiting for a notification that cannot come."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._flag = threading.Event()
        self._connected = False
        self._listening: Listening | None = None

    def start(
        self,
        poke: Callable[[], None],
        missed: Callable[[], None] | None = None,
        *,
        own_commits: bool = True,
    ) -> None:
        def heard(*_: object) -> None:
            self._flag.set()
            poke()

        def connected(now: bool) -> None:
            self._connected = now
            if missed is not None:
                missed()
            heard()

        self._listening = self._store.listen(
            heard,
            lambda: connected(True),
            on_change=heard,
            on_lost=lambda: connected(False),
            own_commits=own_commits,
        )

    def changed(self) -> bool:
        if self._flag.is_set():
            self._flag.clear()
            return True
        return not self._connected

    def close(self) -> None:
        if self._listening is not None:
            self._listening.stop()
            self._listening = None

