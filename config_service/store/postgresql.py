"""The store on PostgreSQL (psycopg 3): the same tables and rules as the SQLite store, shared by
any number of server replicas (docs/replicas.md).

Consistency rules:

- Every write transaction starts by taking one transaction-level advisory lock
  (`pg_advisory_xact_lock(WRITE_LOCK)`), held until it commits. So writes are serialised across
  every replica: a document's next version number is read and written without a race, and the
  global `sequence` (the SSE event id, taken by versions and rollout changes alike) comes from
  the one-row table `sequence_counter`, so it is allocated in commit order. The
  lock is released only once the commit is visible, so no replica can ever see a sequence
  number after a larger one was visible.
- A commit that created versions sends `NOTIFY tskcfg, '<its last sequence>'` (channel
  `CHANNEL`), delivered to every listener when, and only if, the transaction commits. A
  replica follows with `PostgresStore.listen`, reading `versions_after(the last sequence it saw)`;
  it may skip its own commits' notifications (`own_commits=False`) when it hands those on
  from its commit listener.
  A commit that changed tokens, schemas or services also sends `NOTIFY tskcfg, '<kind>'`
  (CHANGE_KINDS), so replicas read those again.
- Writes are operations handed to one writer thread per store, as in the SQLite store: the
  operations waiting together share one transaction and one commit (group commit). They run
  without savepoints first; when one raises, that transaction is rolled back and they run
  again each in its own savepoint, so one that raises undoes only its own changes. In
  pipeline mode: BEGIN, the lock and the read of the active rollouts (`_ACTIVE_SNAPSHOT`) go
  with the first statement whose answer the batch waits for, so a batch of pushes takes one
  round trip per push and one for the notifications and COMMIT.
- When PostgreSQL cannot be reached, reads and writes raise `StoreUnavailable` (the server
  answers 503 `store_unavailable`); the store reconnects by itself once it is back.
- The tables carry a schema version (table `schema_version`); `open` migrates them under a
  session advisory lock, so replicas starting together migrate once, and refuses tables made by
  a newer server (`StoreNewerThanServer`).

The parts, one concept each: the tables and their upgrades
(config_service/store/postgresql_schema.py), reaching the database
(postgresql_connection.py), LISTEN/NOTIFY (postgresql_notify.py), the write transaction
(postgresql_transaction.py) and the writer that runs batches of them
(postgresql_writer.py). This module is the store itself: its read pool, its leader lease and
its reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from config_service.store.group_commit import GroupCommit
from config_service.store.interface import CommitListener, Store, Transaction
from config_service.store.postgresql_connection import (
    CONNECT_TIMEOUT,
    QUICK_POOL_WAIT,
    UNREACHABLE,
    StaleConnection,
    connection_options,
    dict_rows,
    unavailable,
)
from config_service.store.postgresql_notify import (
    CHANGE_KINDS,
    CHANNEL,
    MAX_OWN_NOTIFIED,
    Listening,
    OwnNotifications,
    PostgresChanges,
    follow,
)
from config_service.store.postgresql_schema import (
    LEADER_LOCK,
    MIGRATION_LOCK,
    MIGRATIONS,
    SCHEMA_VERSION,
    WRITE_LOCK,
    migrate,
)
from config_service.store.postgresql_transaction import PostgresTransaction
from config_service.store.postgresql_writer import PostgresWriter
from config_service.store.records import (
    ServiceRecord,
    StoreUnavailable,
)
from config_service.store.sql_reads import SqlReads
from config_service.store.urls import redact

# The names other modules import from here, wherever they are defined.
__all__ = [
    "CHANGE_KINDS",
    "CHANNEL",
    "CONNECT_TIMEOUT",
    "LEADER_LOCK",
    "MAX_OWN_NOTIFIED",
    "MAX_REMEMBERED_SERVICES",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "QUICK_POOL_WAIT",
    "SCHEMA_VERSION",
    "WRITE_LOCK",
    "Listening",
    "PostgresChanges",
    "PostgresStore",
    "PostgresTransaction",
    "migrate",
]

T = TypeVar("T")

logger = logging.getLogger("config_service")

# Services whose rows a store remembers (`PostgresStore.service`); past it, it reads again.
MAX_REMEMBERED_SERVICES = 10_000


class PostgresStore(SqlReads, Store):
    """The store on a PostgreSQL database, shared by any number of server replicas.

    `dsn` is a libpq URL (`postgresql://user@host:5432/db`). Reads use a small connection pool
    (autocommit: each sees every committed write); writes go through one writer thread and
    its own connection (see the module's docstring for the consistency rules).
    """

    PARAMETER = "%s"
    LAST_SEQUENCE = "SELECT last AS bound FROM sequence_counter"

    def __init__(self, dsn: str, *, pool_size: int = 8, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._listeners: list[CommitListener] = []
        # The sequences this store's writer notified, while a listener skips its own commits.
        self._own_notified = OwnNotifications()
        self._writer = PostgresWriter(self.connect, self._own_notified, self._listeners)
        self._writes = GroupCommit(self._writer.commit)
        self._closed = True
        # Set when a read found PostgreSQL away, cleared by the next one that reaches it.
        self._away = False
        self._leader: psycopg.Connection[Any] | None = None
        self._services: dict[str, ServiceRecord] = {}
        self._leader_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r})"

    # -- connections -----------------------------------------------------------------

    def _options(self, name: str) -> dict[str, Any]:
        return connection_options(self.dsn, name, self.connect_timeout)

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to the store's database (StoreUnavailable when away)."""
        try:
            return psycopg.connect(self.dsn, autocommit=True, **self._options("tskcfg"))
        except UNREACHABLE as error:
            raise unavailable(error) from error

    def open(self) -> None:
        with self.connect() as connection:
            try:
                migrate(connection)
            except UNREACHABLE as error:
                raise unavailable(error) from error
        self._pool = ConnectionPool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, **self._options("tskcfg")},
            timeout=self.connect_timeout,
            reconnect_timeout=0,
            open=False,
            name="tskcfg-store",
        )
        try:
            self._pool.open(wait=True, timeout=self.connect_timeout)
        except UNREACHABLE as error:
            self._pool.close()
            self._pool = None
            raise unavailable(error) from error
        self._writer.open()
        self._closed = False
        self._writes.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._leader_lock:
            if self._leader is not None:
                self._leader.close()
                self._leader = None
        self._writes.stop()
        self._writer.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self._pool
        if self._closed or pool is None:
            raise RuntimeError("the store is closed")
        if self._away:
            # Known to be away: one direct attempt fails at once (connection refused) where
            # the pool would wait its whole timeout for a connection.
            self.connect().close()
            self._away = False
        try:
            try:
                connection = pool.getconn(timeout=QUICK_POOL_WAIT)
            except PoolTimeout:
                # Busy, or PostgreSQL away: a direct attempt tells which, at once.
                self.connect().close()
                connection = pool.getconn()
        except StoreUnavailable:
            self._away = True
            raise
        except UNREACHABLE as error:
            self._away = True
            raise unavailable(error) from error
        try:
            yield connection
        except UNREACHABLE as error:
            if connection.broken and not self._closed:
                # The connection broke (PostgreSQL restarted since it was made, or went away):
                # the pool drops it when it comes back; the caller may try another.
                raise StaleConnection(error) from error
            self._away = True
            raise unavailable(error) from error
        finally:
            pool.putconn(connection)

    def _query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        # Pooled connections are not checked before use (a round trip per read): one that a
        # restart of PostgreSQL broke fails, is dropped, and the read tries the next one.
        for _ in range(self.pool_size + 1):
            try:
                with self._connection() as connection:
                    return dict_rows(connection, sql, params)
            except StaleConnection:
                continue
        self._away = True
        raise StoreUnavailable("the PostgreSQL store cannot be reached (every connection failed)")

    def check(self) -> None:
        self._query("SELECT 1 AS ok")
        if not self._writes.running():
            raise RuntimeError("the store's writer is not running")

    def lead(self) -> bool:
        """True while this process holds the store's lease on work that must run in one
        process (LEADER_LOCK, on a connection of its own); takes it when it is free. Lost
        with that connection (PostgreSQL restarted, this process ended): then another
        process, or this one again, takes it."""
        with self._leader_lock:
            if self._closed:
                return False
            held = self._leader
            if held is not None:
                try:
                    held.execute("SELECT 1")
                    return True
                except UNREACHABLE:
                    held.close()
                    self._leader = None
            try:
                connection = self.connect()
            except StoreUnavailable:
                return False
            try:
                row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            except UNREACHABLE:
                connection.close()
                return False
            if row is not None and row[0]:
                self._leader = connection
                return True
            connection.close()
            return False

    def change_signal(self) -> PostgresChanges:
        """A new signal of the commits of every process sharing this store."""
        if self._closed:
            raise RuntimeError("the store is closed")
        return PostgresChanges(self)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """`listener(created)` after each of this store's commits that created versions, in
        commit order, on the writer thread. Other replicas' commits: see `listen`."""
        self._listeners.append(listener)

    def listen(
        self,
        on_sequence: Callable[[int], None],
        on_connected: Callable[[], None],
        retry_every: float = 0.5,
        on_change: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        own_commits: bool = True,
    ) -> Listening:
        """Follow every replica's commits: LISTEN on `CHANNEL` on a connection of its own.

        `on_sequence(s)` runs (on the listening thread) for each commit that created versions,
        `s` its last sequence; read `versions_after(last seen)` to catch up. `on_change(kind)`
        runs for each commit that changed tokens, schemas or services (`kind`: one of
        CHANGE_KINDS): read them again. `on_connected()`
        runs each time the connection is made (again), after LISTEN: notifications may have
        been missed while it was down, so catch up from the last sequence seen. `on_lost()` runs
        as soon as the connection is lost (notifications may be missed from then on). While
        PostgreSQL is away it tries again every `retry_every` seconds. Returns a handle whose
        `stop()` ends it.

        `own_commits=False`: `on_sequence` is not called for the commits of this store object's
        own writer (its caller hands those on from a commit listener, so reading them back
        would be wasted work).
        """
        return follow(
            lambda: psycopg.connect(self.dsn, autocommit=True, **self._options("tskcfg-listen")),
            self._own_notified,
            on_sequence,
            on_connected,
            retry_every,
            on_change,
            on_lost,
            own_commits,
        )

    # -- the writer ------------------------------------------------------------------

    def write(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> T:
        return self.submit(operation, exclusive).result()

    def submit(self, operation: Callable[[Transaction], T], exclusive: bool = False) -> Future[T]:
        if self._closed:
            raise RuntimeError("the store is closed")
        return self._writes.submit(operation, exclusive)

    # -- versions and services (the other reads are SqlReads') ------------------------

    def last_sequence(self) -> int:
        # The table sequence_counter, where SQLite has its own counter (sqlite_sequence).
        return int(self._query(self.LAST_SEQUENCE)[0]["bound"])

    def service(self, name: str) -> ServiceRecord | None:
        # A service's row never changes and is never deleted (retiring a service retires its
        # documents), so one found is remembered: a push asks for its service every time.
        known = self._services.get(name)
        if known is not None:
            return known
        record = super().service(name)
        if record is not None and len(self._services) < MAX_REMEMBERED_SERVICES:
            self._services[name] = record
        return record
