"""Following the store: what any server process commits reaches every process, in sequence order.

When several processes share one store (`tskcfg serve --workers N`, or replicas on one
PostgreSQL), each one runs a `Follower`. It keeps the last global sequence it handed on and,
whenever the store may have changed (its own commit, a `ChangeSignal` from the store, or a
request that names something newer than this process has seen), reads the versions
committed after it (`Store.changes_after`: the first few whole, in the same read, so a
change usually costs one read per process, never one per waiter), renders each once, and hands every version on in sequence order: so an
event stream on any process sends event ids in increasing order with no gaps. Rollout
changes take sequence numbers too (`Store.rollouts_after`): they are handed on in the same
order, so a rollout started, stepped, paused or ended through one process changes what
every process answers each cohort. A rollout's candidate version is not current: it is
handed on only as part of its rollout.

Nothing later than the store's last sequence read at the start of a catch-up is handed on
(every sequence up to it is committed), so a version is never skipped for a rollout change
that committed after it but was read first.

Tokens and schemas that another process created, revoked or changed are re-read after the
store changed, at most every `STATE_INTERVAL` seconds. See docs/replicas.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from config_service.core.rendered import Rendered, RenderedVersions, render
from config_service.store import ChangeSignal, RolloutRecord, Store, VersionRecord

logger = logging.getLogger("config_service")

# How often the store's cheap change check runs (SQLite: `PRAGMA data_version`).
FOLLOW_INTERVAL = 0.02
# Tokens and schemas are re-read at most this often, when the store changed.
STATE_INTERVAL = 0.25
# Versions read per query while catching up.
CATCH_UP_PAGE = 500
# Of a catch-up's first page, how many versions come whole (with their documents) in the same
# read: a few changes, the usual catch-up, take one read in all. The rest are read one by one;
# so a page holds at most this many documents at once.
CATCH_UP_WHOLE = 8

# (the version's record, metadata only; it rendered whole, or None when this process already
# holds a newer version of that document, so only the event is left to hand on)
Deliver = Callable[[VersionRecord, Rendered | None], None]
# A rollout another process changed, as the store holds it now.
DeliverRollout = Callable[[RolloutRecord], None]


class Follower:
    """One process's reader of the store's global sequence (a thread; see the module doc)."""

    def __init__(
        self,
        store: Store,
        versions: RenderedVersions,
        deliver: Deliver,
        refresh_state: Callable[[], None],
        interval: float = FOLLOW_INTERVAL,
        deliver_rollout: DeliverRollout | None = None,
    ) -> None:
        self._store = store
        self._versions = versions
        self._deliver = deliver
        self._deliver_rollout = deliver_rollout
        self._refresh_state = refresh_state
        self._interval = interval
        self._last = 0
        self._lock = threading.Lock()  # one catch-up at a time, so versions go out in order
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._signal: ChangeSignal | None = None
        self._failing = False
        # Times this process may have missed a change (a lost connection, a failed read), and
        # how many of those a catch-up has covered since: lagging while they differ.
        self._missed = 0
        self._covered = 0
        self._counting = threading.Lock()
        self._state_due = False
        self._state_read_at = 0.0

    @property
    def last_sequence(self) -> int:
        """The last global sequence handed on (0 before any)."""
        return self._last

    @property
    def failing(self) -> bool:
        """True while the last attempt to read the store failed (it is away)."""
        return self._failing

    @property
    def lagging(self) -> bool:
        """True from a lost connection (or a failed read) until a catch-up started after it
        has read everything: until then this process may not know the latest versions, so it
        must not answer a long poll with "no change" if it can wait for the catch-up."""
        return self._covered < self._missed

    def missed(self) -> None:
        """Changes may have been missed (the store's notifications stopped): catch up soon,
        and count as lagging until then. Any thread may call it."""
        with self._counting:
            self._missed += 1
        self._poked.set()

    def start(self, since: int | None = None) -> None:
        """Begin following after sequence `since` (default: the store's last sequence; older
        events are in the store, for a client that resumes with Last-Event-ID). A process
        passes the sequence it read before loading its state, so nothing committed while it
        loaded is missed."""
        self._last = self._store.last_sequence() if since is None else since
        self._signal = self._store.change_signal()
        # This process's own commits reach `committed` from its commit listener: the signal
        # need not tell of them too (so the follower does not read back what it just wrote).
        self._signal.start(self.poke, self.missed, own_commits=False)
        self._thread = threading.Thread(target=self._run, name="tskcfg-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._signal is not None:
            self._signal.close()
            self._signal = None

    def poke(self) -> None:
        """The store changed (or may have): catch up soon. Any thread may call it."""
        self._poked.set()

    def committed(self, records: list[VersionRecord]) -> None:
        """This process committed `records` (in sequence order; it holds them rendered):
        hand them on at once when they come right after the last sequence handed on, with no
        gap between them (so no other process's change, and no rollout change, comes between:
        every sequence up to theirs is committed, since the store allocates them in commit
        order). Otherwise, or while a catch-up runs, catch up, which reads them in order with
        what came before. Runs on the store's writer thread; never waits for the store."""
        if not records or self._thread is None or not self._lock.acquire(blocking=False):
            self.poke()
            return
        try:
            if records[-1].sequence <= self._last:
                return  # a catch-up already handed them on
            expected = self._last + 1
            for record in records:
                if record.sequence != expected:
                    break
                expected += 1
            else:
                for record in records:
                    if record.kind != "rollout":  # a candidate: its rollout tells
                        self._deliver(record, self._rendered(record, False))
                    self._last = record.sequence
                return
        finally:
            self._lock.release()
        self.poke()

    def catch_up(self) -> int:
        """Read and hand on every version committed after the last one handed on, in
        sequence order; returns the last sequence handed on. Raises what the store raises
        (what was handed on before stays handed on)."""
        with self._lock:
            missed = self._missed
            try:
                # Every sequence up to it is committed: nothing later is handed on this time.
                # The first page comes in the same read, its first versions whole: a catch-up
                # over a few changes is one read in all.
                bound, records = self._store.changes_after(
                    self._last, CATCH_UP_PAGE, CATCH_UP_WHOLE
                )
                whole = {record.sequence for record in records[:CATCH_UP_WHOLE]}
                first = True
                while self._last < bound:
                    if not first:
                        records = self._store.versions_after(self._last, CATCH_UP_PAGE)
                        whole = set()
                    first = False
                    page_end = bound
                    if len(records) == CATCH_UP_PAGE:
                        page_end = min(page_end, records[-1].sequence)
                    rollouts: list[RolloutRecord] = []
                    # A sequence up to page_end that no version took is a rollout change's
                    # (or one since changed again): only then are rollouts read.
                    versions = sum(1 for record in records if record.sequence <= page_end)
                    if self._deliver_rollout is not None and versions < page_end - self._last:
                        rollouts = self._store.rollouts_after(self._last, CATCH_UP_PAGE)
                        if len(rollouts) == CATCH_UP_PAGE:
                            page_end = min(page_end, rollouts[-1].sequence)
                    events: list[VersionRecord | RolloutRecord] = [
                        *(record for record in records if record.sequence <= page_end),
                        *(rollout for rollout in rollouts if rollout.sequence <= page_end),
                    ]
                    events.sort(key=lambda event: event.sequence)
                    for event in events:
                        if isinstance(event, RolloutRecord):
                            assert self._deliver_rollout is not None
                            self._deliver_rollout(event)
                        elif event.kind != "rollout":  # a candidate: its rollout tells
                            rendered = self._rendered(event, event.sequence in whole)
                            self._deliver(event, rendered)
                        self._last = event.sequence
                    # A rollout changed again since has left its earlier sequence unused: it
                    # is handed on at its later one, in a later catch-up.
                    self._last = max(self._last, page_end)
            except Exception:
                with self._counting:
                    self._missed += 1
                raise
            self._covered = max(self._covered, missed)
            return self._last

    def _rendered(self, record: VersionRecord, whole: bool) -> Rendered | None:
        """`record` rendered: from memory when this process holds that version (its own
        commit), else from `record` itself when it was read `whole` (with its document), else
        read once from the store; None when this process already holds a newer version (its
        event is still handed on, in its place)."""
        service, environment, number = record.service, record.environment, record.version
        cached = self._versions.cached(service, environment)
        if cached is not None and cached.version == number:
            return cached
        if cached is not None and cached.version > number:
            return None
        full = record if whole else self._store.get_version(service, environment, number)
        if full is None:
            raise RuntimeError(f"version {number} of {service}/{environment} vanished")
        rendered = render(full)
        self._versions.remember(rendered)
        return rendered

    def _run(self) -> None:
        signal = self._signal
        assert signal is not None
        while not self._stopping.is_set():
            poked = self._poked.wait(self._interval)
            if self._stopping.is_set():
                return
            self._poked.clear()
            try:
                changed = signal.changed()
                if poked or changed or self._failing:
                    self.catch_up()
                    self._state_due = True
                now = time.monotonic()
                if self._state_due and now - self._state_read_at >= STATE_INTERVAL:
                    self._state_due = False
                    self._state_read_at = now
                    self._refresh_state()
            except Exception as error:
                if not self._failing:
                    logger.warning(
                        "cannot follow the store (%s); serving what this process holds "
                        "until it answers again",
                        error,
                    )
                self._failing = True
                self._stopping.wait(min(1.0, self._interval * 10))
                continue
            if self._failing:
                self._failing = False
                logger.info("following the store again, at sequence %d", self._last)
