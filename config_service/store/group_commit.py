"""The one writer thread of a store: operations wait in a queue and are committed together.

Both stores hand every write here. The thread takes all the operations waiting (up to
`MAX_BATCH`, or one operation alone when it is exclusive) and gives them to the store's
`commit`, which runs each in its own savepoint inside one transaction and commits once (group
commit). So writes are serialised, a caller is answered only once its write is durable, and
concurrent writers share the cost of the commit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

# Operations committed together at most.
MAX_BATCH = 256


@dataclass
class Write:
    """One operation waiting for the writer, and the future its caller waits on."""

    operation: Callable[[Any], Any]
    exclusive: bool
    future: Future[Any]


class GroupCommit:
    """A writer thread feeding batches of `Write` to `commit` (which answers their futures)."""

    def __init__(self, commit: Callable[[list[Write]], None]) -> None:
        self._commit = commit
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tskcfg-store-writer", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, operation: Callable[[Any], Any], exclusive: bool) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put(Write(operation, exclusive, future))
        return future

    def stop(self, timeout: float = 30) -> None:
        """Commit what is queued, refuse what comes after, and end the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _loop(self) -> None:
        held: Write | None = None
        while True:
            first = held if held is not None else self._queue.get()
            held = None
            if first is None:
                return
            batch = [first]
            stopping = False
            while not first.exclusive and len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if item.exclusive:
                    held = item
                    break
                batch.append(item)
            self._commit(batch)
            if stopping:
                # Answer whatever arrived after the stop request rather than leave it hanging.
                while True:
                    try:
                        late = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if late is not None:
                        late.future.set_exception(RuntimeError("the store is closed"))
                if held is not None:
                    held.future.set_exception(RuntimeError("the store is closed"))
                return
