"""The change hub: tells long polls and event streams, in memory, that a document has a new version.

One `ChangeHub` lives in each server process. It maps (service, environment)
to the current version and to an opaque payload the server chooses (normally
the already rendered response bytes of that version), and it holds:

* waiters: long polls parked on one document. A waiter is a callback in that
  document's slot plus one timer handle for its timeout; nothing polls.
  `publish` calls every waiter of that document with the same
  `(version, payload)` tuple, so waking 10,000 waiters is 10,000 calls and no
  copies. The server parks a connection itself (`park`), with no task per
  request; `wait_for_change` is the same wait for a coroutine.
* subscriptions: event streams (Server-Sent Events). Each has a bounded
  queue; a subscriber that falls too far behind is dropped rather than
  allowed to grow memory, and is expected to reconnect with `Last-Event-ID`
  so the server replays what it missed from the store.

A waiter or subscription may name an owner (the server passes the token's
id); `end_for(owner)` ends everything held for it at once, as when a token is
revoked.

Everything here runs on the event loop thread. A write that commits in a worker
thread calls `publish_threadsafe(loop, ...)`, which hands the publish to the loop.

A long poll, as a coroutine (config_service/http/read.py)::

    result = await hub.wait_for_change(service, environment, known, timeout=30)
    if result is None:
        ...                                     # 304: nothing new within the wait
    else:
        version, payload = result               # 200 with the shared, rendered payload

and an event stream that resumes (config_service/http/events.py)::

    subscription = hub.subscribe(accepts)       # subscribe first, so nothing published
    ...                                         # during the replay from the store is lost
    event = await subscription.next(timeout=15) # None: time for a ping
    if event is not None and event.sequence > last_sent:
        ...                                     # send it; nothing is sent twice

How an event is framed on the wire is the HTTP edge's business, not the hub's.

During a rollout (docs/rollouts.md) a document answers two versions: the candidate to the
buckets below the step's percent, the stable one to every other read. The hub then keeps the
candidate beside the current version (`set_rollout`), each waiter remembers the version it
has and its bucket, and a change wakes exactly the waiters whose answer it changes. An event
of a rollout (`ChangeEvent.rollout`) goes to every stream of the document; the version it
may carry (`moved`) only to the streams whose bucket it moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from config_service import cohorts

__all__ = [
    "ChangeEvent",
    "ChangeHub",
    "Subscription",
    "SubscriptionClosed",
    "Waiter",
]

PayloadT = TypeVar("PayloadT")

logger = logging.getLogger("config_service")

DEFAULT_SUBSCRIBER_QUEUE = 1024


@dataclass(frozen=True)
class ChangeEvent:
    """One new version of one document, as an event stream announces it.

    `sequence` is the store's global change sequence: it increases with every
    version of every document, so it serves as the SSE `id` and as the resume
    point of `Last-Event-ID`.
    """

    sequence: int
    service: str
    environment: str
    version: int
    hash: str
    retired: bool = False  # the version is a retire: the document has no config from here on
    # A rollout's change: its object as JSON text (the event's `data`), and whether the
    # version above goes with it to the streams it moves: those whose bucket is in
    # [low, high), and those without a cohort when the flag is set. None: a plain version.
    rollout: str | None = None
    moved: tuple[int, int, bool] | None = None

    def moves(self, cohort: bytes | None) -> bool:
        """True when a stream of `cohort` gets the version this rollout event carries."""
        moved = self.moved
        if moved is None:
            return False
        number = cohorts.bucket(self.service, self.environment, cohort)
        if number == cohorts.NO_BUCKET:
            return moved[2]
        return moved[0] <= number < moved[1]

    def to_dict(self) -> dict[str, str | int | None]:
        """The event's `data` object: `{service, environment, version, hash}` (hash None for
        a retire)."""
        return {
            "service": self.service,
            "environment": self.environment,
            "version": self.version,
            "hash": None if self.retired else self.hash,
        }


class SubscriptionClosed(Exception):
    """The subscription ended: closed by its owner, or dropped for falling behind.

    `reason` is `"closed"` or `"overflow"`. After an overflow the client should
    reconnect with `Last-Event-ID` set to the last event it received.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"subscription {reason}")
        self.reason = reason


EventFilter = Callable[[ChangeEvent], bool]


class Subscription:
    """A bounded queue of `ChangeEvent`s for one event stream; make it with `ChangeHub.subscribe`.

    Use it as a context manager (or call `close`) so the hub forgets it when the
    stream ends, and read it with `await next(timeout)` or `async for`.
    """

    def __init__(
        self,
        forget: Callable[[Subscription], None],
        accepts: EventFilter,
        max_queue: int,
        owner: Hashable | None = None,
        cohort: bytes | None = None,
    ) -> None:
        self._forget = forget
        self._accepts = accepts
        self._max_queue = max_queue
        self.owner = owner
        # What rollouts bucket this stream's instance by (docs/rollouts.md), or None.
        self.cohort = cohort
        self._events: deque[ChangeEvent] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._closed_reason: str | None = None
        self._redirect: Callable[[ChangeEvent], bool] | None = None
        self._ended: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        """True once the subscription was closed or dropped."""
        return self._closed_reason is not None

    @property
    def dropped(self) -> bool:
        """True when the hub dropped this subscription because its queue was full."""
        return self._closed_reason == "overflow"

    @property
    def pending(self) -> int:
        """How many events wait to be read."""
        return len(self._events)

    def close(self) -> None:
        """Stop receiving events; a pending `next` raises `SubscriptionClosed("closed")`."""
        self._end("closed")

    def redirect(
        self, deliver: Callable[[ChangeEvent], bool], ended: Callable[[], None] | None = None
    ) -> None:
        """From now on, hand every accepted event to `deliver` at once instead of queueing it.

        Events already queued go first, in order. `deliver` returns False when it cannot take
        the event (its client reads too slowly); the subscription is then dropped as on an
        overflow. `ended` is called once when the subscription ends, however it ends (closed,
        dropped, its owner's `end_for`, the hub stopping), since nobody awaits `next` to see
        it. This is how a server streams events with no task per stream.
        """
        self._redirect = deliver
        self._ended = ended
        while self._events and self._closed_reason is None:
            if not deliver(self._events.popleft()):
                self._end("overflow")

    async def next(self, timeout: float | None = None) -> ChangeEvent | None:
        """The next event; None when `timeout` seconds pass without one (time for a heartbeat).

        Events already queued are still returned after an overflow; then
        `SubscriptionClosed` is raised.
        """
        if not self._events:
            if self._closed_reason is not None:
                raise SubscriptionClosed(self._closed_reason)
            getter = asyncio.get_running_loop().create_future()
            self._getter = getter
            try:
                if timeout is None:
                    await getter
                else:
                    await asyncio.wait({getter}, timeout=timeout)
            finally:
                self._getter = None
                if not getter.done():
                    getter.cancel()
            if not self._events:
                if self._closed_reason is not None:
                    raise SubscriptionClosed(self._closed_reason)
                return None
        return self._events.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChangeEvent:
        try:
            event = await self.next()
        except SubscriptionClosed:
            raise StopAsyncIteration from None
        assert event is not None  # without a timeout, next() only returns an event
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _deliver(self, event: ChangeEvent) -> bool:
        """Queue the event if it is wanted; False when the queue overflowed and we are dropped."""
        if not self._accepts(event):
            return True
        if self._redirect is not None:
            try:
                taken = self._redirect(event)
            except Exception:
                logger.exception("an event stream failed to take an event; it is dropped")
                taken = False
            if taken:
                return True
            self._end("overflow")
            return False
        if len(self._events) >= self._max_queue:
            self._end("overflow")
            return False
        self._events.append(event)
        self._wake()
        return True

    def _end(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        self._forget(self)
        self._wake()
        ended, self._ended = self._ended, None
        if ended is not None:
            try:
                ended()
            except Exception:
                logger.exception("an event stream failed to end")

    def _wake(self) -> None:
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)


Wake = Callable[[tuple[int, Any] | None], None]


class Waiter:
    """One parked long poll, made by `ChangeHub.park`; `wake` is called once at most.

    `wake((version, payload))` when a newer version is published, `wake(None)` when the time
    is up. `cancel()` (the client left) forgets the waiter without calling `wake`. A waiter
    is a callback and a timer handle: no task, no future, so a server can park one per
    connection and answer all of them from inside `publish`.
    """

    __slots__ = ("_hub", "_key", "_document", "_wake", "_timer", "owner", "known", "bucket")

    def __init__(
        self,
        hub: ChangeHub[Any],
        key: tuple[str, str],
        document: _Document[Any],
        wake: Wake,
        owner: Hashable | None = None,
        known: int | None = None,
        bucket: int = cohorts.NO_BUCKET,
    ) -> None:
        self._hub = hub
        self._key = key
        self._document = document
        self._wake: Wake | None = wake
        self._timer: asyncio.TimerHandle | None = None
        self.owner = owner
        # The version the waiting client has (None: any newer one wakes it), and its bucket.
        self.known = known
        self.bucket = bucket

    @property
    def parked(self) -> bool:
        """True until the waiter was woken, timed out or cancelled."""
        return self._wake is not None

    def cancel(self) -> None:
        """Forget the waiter without calling `wake` (nothing happens if it already ended)."""
        if self._wake is not None:
            self._end()

    def _take(self) -> Wake | None:
        """End the waiter (its timer too) and hand over its callback; None if it had ended."""
        wake, self._wake = self._wake, None
        if wake is not None and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return wake

    def _end(self) -> Wake | None:
        """`_take`, and forget the waiter in its document's slot."""
        wake = self._take()
        if wake is not None:
            self._hub._unpark(self)
        return wake

    def _expire(self) -> None:
        self._timer = None
        wake = self._end()
        if wake is not None:
            self._hub._call(wake, None)


@dataclass(eq=False)
class _Document(Generic[PayloadT]):
    """The hub's slot for one (service, environment): its current version and who waits on it."""

    version: int | None = None
    payload: PayloadT | None = None
    # The newest version announced to event streams (0: none): a version the hub learned
    # from a reader is announced when its write's publish arrives, and only then.
    announced: int = 0
    # A dict, not a set: waiters are woken in the order they came.
    waiters: dict[Waiter, None] = field(default_factory=dict)
    # During a rollout: (percent, candidate version, its payload), read by buckets below percent.
    rollout: tuple[int, int, PayloadT | None] | None = None

    def answer(self, bucket: int) -> tuple[int | None, PayloadT | None]:
        """(version, payload) a reader in `bucket` gets."""
        rollout = self.rollout
        if rollout is not None and cohorts.reads_candidate(bucket, rollout[0]):
            return rollout[1], rollout[2]
        return self.version, self.payload


class ChangeHub(Generic[PayloadT]):
    """Current versions, long-poll waiters and event subscriptions of one server process.

    `PayloadT` is whatever the server caches per version (typically the rendered
    JSON body as bytes); the hub never looks inside it.
    """

    def __init__(self, *, max_subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE) -> None:
        if max_subscriber_queue < 1:
            raise ValueError("max_subscriber_queue must be at least 1")
        self._max_subscriber_queue = max_subscriber_queue
        self._documents: dict[tuple[str, str], _Document[PayloadT]] = {}
        self._subscriptions: set[Subscription] = set()
        self._waiter_count = 0
        self._dropped_subscribers = 0
        self._last_sequence = 0
        self._stopping = False

    # -- counters for metrics ------------------------------------------------

    @property
    def waiter_count(self) -> int:
        """Long polls parked right now."""
        return self._waiter_count

    @property
    def subscriber_count(self) -> int:
        """Open event subscriptions right now."""
        return len(self._subscriptions)

    @property
    def dropped_subscribers(self) -> int:
        """Subscriptions dropped for overflowing their queue since the hub started."""
        return self._dropped_subscribers

    @property
    def document_count(self) -> int:
        """Documents whose current version the hub knows."""
        return sum(1 for document in self._documents.values() if document.version is not None)

    @property
    def last_sequence(self) -> int:
        """The highest change sequence published so far (0 before any)."""
        return self._last_sequence

    # -- documents -------------------------------------------------------------

    def current(self, service: str, environment: str) -> tuple[int, PayloadT | None] | None:
        """`(version, payload)` of the document as the hub knows it, or None if it knows none."""
        document = self._documents.get((service, environment))
        if document is None or document.version is None:
            return None
        return document.version, document.payload

    def publish(
        self,
        service: str,
        environment: str,
        version: int,
        payload: PayloadT | None = None,
        *,
        sequence: int | None = None,
        hash: str | None = None,
        retired: bool = False,
    ) -> bool:
        """Record that `version` is now current, wake its waiters, and announce it.

        Call it on the event loop thread right after the write committed, with
        the store's global `sequence` and the document `hash`: then every
        subscription whose filter accepts it gets a `ChangeEvent`. Without a
        `sequence` nothing is announced; that form only teaches the hub a
        version it did not know (say, the first read after a restart) and
        caches its payload.

        A version older than the one the hub holds is ignored (False). The same
        version only replaces the cached payload (False). A newer version wakes
        every waiter of that document with one shared `(version, payload)`
        tuple and returns True. Either way, a publish with a `sequence` of a
        version not announced yet is announced: a reader may have taught the
        hub that version first.
        """
        key = (service, environment)
        document = self._documents.get(key)
        if document is None:
            document = self._documents[key] = _Document()
        newer = document.version is None or version > document.version
        if newer:
            document.version = version
            document.payload = payload
            self._settle(document)
        elif version == document.version and payload is not None:
            document.payload = payload
        # Announced once per version, by the write's own publish (one with a sequence), even
        # when a reader taught the hub that version first and woke its waiters already.
        if sequence is not None and version > document.announced:
            if hash is None:
                raise ValueError("publish with a sequence needs the document hash")
            document.announced = version
            self._announce(ChangeEvent(sequence, service, environment, version, hash, retired))
        return newer

    def publish_threadsafe(
        self,
        loop: asyncio.AbstractEventLoop,
        service: str,
        environment: str,
        version: int,
        payload: PayloadT | None = None,
        *,
        sequence: int | None = None,
        hash: str | None = None,
        retired: bool = False,
    ) -> None:
        """`publish` from another thread: scheduled on `loop`, in call order."""
        loop.call_soon_threadsafe(
            lambda: self.publish(
                service, environment, version, payload, sequence=sequence, hash=hash, retired=retired
            )
        )

    def _settle(self, document: _Document[PayloadT]) -> None:
        """Wake every waiter of `document` whose answer is no longer the version it has."""
        # The slot's waiters are swapped out whole, so none is forgotten one by one; those
        # kept go back (with any parked by a wake-up meanwhile).
        waiters, document.waiters = document.waiters, {}
        stable = (document.version, document.payload)
        rollout = document.rollout
        woken: list[tuple[Waiter, tuple[int, Any]]] = []
        kept: list[Waiter] = []
        for waiter in waiters:
            answer = stable
            if rollout is not None and cohorts.reads_candidate(waiter.bucket, rollout[0]):
                answer = (rollout[1], rollout[2])
            if answer[0] is None or answer[0] == waiter.known:
                kept.append(waiter)
            else:
                woken.append((waiter, answer))  # type: ignore[arg-type]
        for waiter in kept:
            document.waiters[waiter] = None
        self._waiter_count -= len(woken)
        for waiter, answer in woken:
            wake = waiter._take()
            if wake is not None:
                self._call(wake, answer)

    def set_rollout(
        self,
        service: str,
        environment: str,
        rollout: tuple[int, int, PayloadT | None] | None,
    ) -> None:
        """The document is in a rollout: buckets below `percent` read `(percent, version,
        payload)`'s candidate; None ends it. Wakes exactly the waiters whose answer moves."""
        key = (service, environment)
        document = self._documents.get(key)
        if document is None:
            if rollout is None:
                return
            document = self._documents[key] = _Document()
        document.rollout = rollout
        self._settle(document)

    def announce(self, event: ChangeEvent) -> None:
        """Send a rollout's event to every stream that accepts it (in sequence order)."""
        self._announce(event)

    def changed(
        self,
        service: str,
        environment: str,
        known_version: int,
        bucket: int = cohorts.NO_BUCKET,
    ) -> tuple[int, PayloadT | None] | None:
        """`(version, payload)` when the hub holds, for `bucket`, a version other than
        `known_version`; else None."""
        document = self._documents.get((service, environment))
        if document is None:
            return None
        version, payload = document.answer(bucket)
        if version is None or version == known_version:
            return None
        return version, payload

    def park(
        self,
        service: str,
        environment: str,
        timeout: float,
        wake: Wake,
        owner: Hashable | None = None,
        *,
        known: int | None = None,
        bucket: int = cohorts.NO_BUCKET,
    ) -> Waiter:
        """Park a long poll on the document until its next publish, for at most `timeout` seconds.

        `wake` is called on the event loop with the published `(version, payload)`, or with
        None when the time is up (or `end_for(owner)` ended it). Check `changed` first: `park`
        waits for the *next* version even if the caller's is already stale. With `known` (the
        version the client has) and its rollout `bucket`, only a change of what that bucket
        reads wakes it; without, any newer version does.
        """
        key = (service, environment)
        document = self._documents.get(key)
        if document is None:
            document = self._documents[key] = _Document()
        waiter = Waiter(self, key, document, wake, owner, known, bucket)
        if self._stopping:
            timeout = 0  # the server is stopping: the time is up at once
        waiter._timer = asyncio.get_running_loop().call_later(timeout, waiter._expire)
        document.waiters[waiter] = None
        self._waiter_count += 1
        return waiter

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """The server is stopping: every parked long poll's time is up now (`wake(None)`), and
        the time of any parked from now on is up at once; every subscription is closed, and
        any made from now on starts closed. Calling it again does nothing."""
        if self._stopping:
            return
        self._stopping = True
        for document in list(self._documents.values()):
            for waiter in list(document.waiters):
                wake = waiter._end()
                if wake is not None:
                    self._call(wake, None)
        for subscription in list(self._subscriptions):
            subscription.close()

    def end_for(self, owner: Hashable) -> int:
        """End everything held for `owner` now: the time of its parked long polls is up
        (`wake(None)`) and its subscriptions close. Returns how many ended.

        A revoked token's waits end this way, within a turn of the event loop rather than at
        their timeout or the stream's next ping. It walks every waiter: revocations are rare.
        """
        ended = 0
        if owner is None:
            return ended  # nothing is held for nobody; unowned waits are not all one owner's
        for document in list(self._documents.values()):
            for waiter in [waiter for waiter in document.waiters if waiter.owner == owner]:
                wake = waiter._end()
                if wake is not None:
                    ended += 1
                    self._call(wake, None)
        for subscription in [item for item in self._subscriptions if item.owner == owner]:
            subscription.close()
            ended += 1
        return ended

    async def wait_for_change(
        self,
        service: str,
        environment: str,
        known_version: int,
        timeout: float,
        owner: Hashable | None = None,
        bucket: int = cohorts.NO_BUCKET,
    ) -> tuple[int, PayloadT | None] | None:
        """Wait until the document's version differs from `known_version`, for at most `timeout` s.

        Returns `(version, payload)` at once when the hub already holds a
        different version; else parks until `publish` brings a newer one, or
        returns None when the time is up. When the hub knows no version of the
        document (it does not exist yet, or nobody published it since start)
        this waits for the next publish, so `known_version=0` on a missing
        document holds until its first version. A cancelled wait (the client
        went away) leaves nothing behind; `end_for(owner)` ends it with None.
        """
        result = self.changed(service, environment, known_version, bucket)
        if result is not None or timeout <= 0:
            return result
        future: asyncio.Future[tuple[int, PayloadT | None] | None] = (
            asyncio.get_running_loop().create_future()
        )

        def wake(result: tuple[int, Any] | None) -> None:
            if not future.done():
                future.set_result(result)

        waiter = self.park(
            service, environment, timeout, wake, owner, known=known_version, bucket=bucket
        )
        try:
            return await future
        finally:
            waiter.cancel()

    def _unpark(self, waiter: Waiter) -> None:
        document = waiter._document
        if document.waiters.pop(waiter, False) is None:
            self._waiter_count -= 1
        # A slot made only for waiting on a document that never appeared goes away with its
        # last waiter, so unknown names cannot pile up.
        if document.version is None and document.rollout is None and not document.waiters:
            if self._documents.get(waiter._key) is document:
                del self._documents[waiter._key]

    @staticmethod
    def _call(wake: Wake, result: tuple[int, Any] | None) -> None:
        # One failing waiter must not keep the others from their answers.
        try:
            wake(result)
        except Exception:
            logger.exception("a long-poll waiter failed to take its answer")

    # -- event streams --------------------------------------------------------

    def subscribe(
        self,
        accepts: EventFilter | None = None,
        owner: Hashable | None = None,
        cohort: bytes | None = None,
    ) -> Subscription:
        """A new subscription to every future event that `accepts(event)` allows.

        The filter is where the server applies `?service=`/`?environment=` and
        the token's scope; it runs once per event per subscriber, on publish.
        `end_for(owner)` closes it.
        """
        subscription = Subscription(
            self._forget,
            accepts if accepts is not None else _accept_all,
            self._max_subscriber_queue,
            owner,
            cohort,
        )
        self._subscriptions.add(subscription)
        if self._stopping:
            subscription.close()
        return subscription

    def _announce(self, event: ChangeEvent) -> None:
        if event.sequence > self._last_sequence:
            self._last_sequence = event.sequence
        # Copy: a dropped subscription removes itself from the set while we loop.
        for subscription in list(self._subscriptions):
            if not subscription._deliver(event):
                self._dropped_subscribers += 1

    def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)


def _accept_all(event: ChangeEvent) -> bool:
    return True
