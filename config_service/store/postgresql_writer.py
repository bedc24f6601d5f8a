"""The PostgreSQL store's writer: one connection, on the store's one writer thread, that runs
each batch of write operations in one transaction with one commit (group commit,
config_service/store/group_commit.py), then answers the operations' callers.

A batch runs in pipeline mode: BEGIN, the write lock and the read of the active rollouts
(`ACTIVE_SNAPSHOT`) go with the first statement whose answer the batch waits for. Several
operations first run without savepoints; when one raises, that transaction is rolled back and
they run again each in its own savepoint, so one that raises undoes only its own changes. A
commit notifies the store's channel (config_service/store/postgresql_notify.py) in the same
transaction. A connection found lost before any answer came back is made again, once, and
the batch run again. The rules: config_service/store/postgresql.py and docs/replicas.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from config_service.store.group_commit import Write
from config_service.store.interface import CommitListener
from config_service.store.postgresql_connection import UNREACHABLE, unavailable
from config_service.store.postgresql_notify import CHANNEL, OwnNotifications
from config_service.store.postgresql_transaction import (
    ACTIVE_SNAPSHOT,
    LOCK,
    PostgresTransaction,
)
from config_service.store.records import StoreUnavailable

logger = logging.getLogger("config_service")


@dataclass
class _Attempt:
    """One run of a batch: what it did so far, for the step that ends it."""

    batch: list[Write]
    careful: bool
    # (succeeded, result or error) per operation run, in the batch's order.
    outcomes: list[tuple[bool, Any]] = field(default_factory=list)
    transaction: PostgresTransaction | None = None
    own: int | None = None  # the sequence notified, remembered as this writer's own
    committing: bool = False  # past COMMIT sent: a lost connection may have committed

    @property
    def stopped_early(self) -> bool:
        """An operation raised before the others ran (not careful): run again, carefully."""
        return len(self.outcomes) < len(self.batch)


class PostgresWriter:
    """The writer's connection (made by `connect`, again when it broke) and the running of
    batches on it: `commit(batch)` is the store's GroupCommit step. `listeners` hear each
    commit that created versions; `own` remembers the sequences this writer notified."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        own: OwnNotifications,
        listeners: list[CommitListener],
    ) -> None:
        self._connect = connect
        self._own = own
        self._listeners = listeners
        self.connection: psycopg.Connection[Any] | None = None

    def open(self) -> None:
        self.connection = self._connect()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _writer_connection(self) -> psycopg.Connection[Any]:
        """The writer's connection, made (again) when there is none or it broke."""
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            if connection is not None:
                connection.close()
            self.connection = None
            connection = self.connection = self._connect()
        return connection

    def commit(self, batch: list[Write]) -> None:
        # Several operations first run without savepoints (a savepoint each is two more
        # statements, and a subtransaction, per operation): almost always none raises. When
        # one does, that transaction is rolled back and the batch runs again, each operation
        # in its own savepoint, so the one that raises undoes only its own changes.
        if len(batch) > 1 and self._run(batch, careful=False):
            return
        self._run(batch, careful=True)

    def _run(self, batch: list[Write], careful: bool, reconnected: bool = False) -> bool:
        """Run and commit `batch`, then answer its writers; True when done. Not `careful`:
        without savepoints, and False (nothing written, nobody answered) as soon as an
        operation raises. A connection found lost before any answer came back (PostgreSQL
        restarted since it was made) is made again, once, and the batch run again."""
        attempt = _Attempt(batch, careful)
        try:
            connection = self._writer_connection()
            # Pipeline mode: statements whose results are not needed yet (BEGIN, the lock,
            # savepoints) are sent with the next one whose result is, in one round trip.
            with connection.pipeline() as pipeline:
                transaction = self._begin(connection, pipeline)
                attempt.transaction = transaction
                self._apply(attempt, connection, transaction)
                self._end(attempt, connection, transaction)
            if attempt.stopped_early:
                return False
        except BaseException as error:
            return self._failed(attempt, error, reconnected)
        self._answer(attempt, transaction)
        return True

    @staticmethod
    def _begin(connection: psycopg.Connection[Any], pipeline: psycopg.Pipeline) -> PostgresTransaction:
        """Open the transaction, take the write lock, ask for the active rollouts (sent, not
        waited for)."""
        connection.execute("BEGIN")
        connection.execute(LOCK)
        snapshot = connection.cursor()
        snapshot.execute(ACTIVE_SNAPSHOT)
        transaction = PostgresTransaction(connection, snapshot)
        transaction.pipeline = pipeline
        return transaction

    @staticmethod
    def _apply(
        attempt: _Attempt, connection: psycopg.Connection[Any], transaction: PostgresTransaction
    ) -> None:
        """Run each operation of the batch, noting its outcome; not careful, stop at the
        first that raises."""
        # An operation alone in its transaction needs no savepoint: if it fails, the
        # whole transaction is rolled back instead.
        savepoints = attempt.careful and len(attempt.batch) > 1
        for item in attempt.batch:
            created, callbacks = len(transaction.created), len(transaction.callbacks)
            changed = len(transaction.changed)
            if savepoints:
                connection.execute("SAVEPOINT operation")
            try:
                result = item.operation(transaction)
            except UNREACHABLE:
                raise  # the connection is gone: the whole batch fails
            except BaseException as error:  # the caller gets it; the batch goes on
                if not attempt.careful:
                    break
                if savepoints:
                    connection.execute("ROLLBACK TO SAVEPOINT operation")
                    connection.execute("RELEASE SAVEPOINT operation")
                del transaction.created[created:]
                del transaction.callbacks[callbacks:]
                del transaction.changed[changed:]
                attempt.outcomes.append((False, error))
            else:
                if savepoints:
                    connection.execute("RELEASE SAVEPOINT operation")
                attempt.outcomes.append((True, result))

    def _end(
        self, attempt: _Attempt, connection: psycopg.Connection[Any], transaction: PostgresTransaction
    ) -> None:
        """Commit what the batch did, with its notifications; or roll it back when there is
        nothing to keep."""
        if attempt.stopped_early or not any(succeeded for succeeded, _ in attempt.outcomes):
            # One raised before the others ran (run again, carefully), or none
            # succeeded: nothing of it is kept; nothing to tell.
            connection.execute("ROLLBACK")
            return
        self._notify(attempt, connection, transaction)
        attempt.committing = True  # past here, a lost connection may have committed
        connection.execute("COMMIT")

    def _notify(
        self, attempt: _Attempt, connection: psycopg.Connection[Any], transaction: PostgresTransaction
    ) -> None:
        """Queue the batch's notifications: delivered to every listener when (and only if)
        its transaction commits."""
        if transaction.created:
            notified = transaction.created[-1].sequence
            if self._own.notifying(notified):
                attempt.own = notified
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(notified)))
        for kind in dict.fromkeys(transaction.changed):
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, kind))

    def _failed(self, attempt: _Attempt, error: BaseException, reconnected: bool) -> bool:
        """The batch failed as a whole: run it again on a new connection when nothing of it
        reached PostgreSQL (once), else give every writer the error; True when done."""
        if attempt.own is not None:
            self._own.not_notified(attempt.own)
        failure: BaseException = error
        if isinstance(error, UNREACHABLE):
            failure = unavailable(error)
        self._roll_back()
        lost = isinstance(error, (StoreUnavailable, *UNREACHABLE))
        transaction = attempt.transaction
        if lost and not reconnected and not attempt.committing and (transaction is None or not transaction.reached):
            # Nothing of this batch reached PostgreSQL: a connection that broke while idle.
            self.close()
            return self._run(attempt.batch, attempt.careful, reconnected=True)
        for item in attempt.batch:
            item.future.set_exception(failure)
        return True

    def _roll_back(self) -> None:
        """Roll back what the failed batch left open; drop the connection when it broke."""
        writer = self.connection
        if writer is None:
            return
        try:
            if not writer.broken:
                writer.execute("ROLLBACK")
        except UNREACHABLE:
            pass
        if writer.broken:
            writer.close()
            self.connection = None

    def _answer(self, attempt: _Attempt, transaction: PostgresTransaction) -> None:
        """After the commit: its callbacks, the commit listeners, then each writer's answer."""
        for callback in transaction.callbacks:
            try:
                callback()
            except Exception:
                logger.exception("after-commit callback failed")
        if transaction.created:
            for listener in self._listeners:
                try:
                    listener(transaction.created)
                except Exception:
                    logger.exception("commit listener failed")
        for item, (succeeded, value) in zip(attempt.batch, attempt.outcomes, strict=True):
            if succeeded:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)
