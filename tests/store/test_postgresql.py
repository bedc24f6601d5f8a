"""What only the PostgreSQL store does: its schema version, NOTIFY to every replica, and
refusing (then resuming) while PostgreSQL is stopped or killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from config_service.store import (
    NewVersion,
    StoreNewerThanServer,
    StoreUnavailable,
    TokenRecord,
    Transaction,
    VersionRecord,
)
from config_service.store.postgresql import SCHEMA_VERSION, PostgresStore
from tests.postgres import PostgresServer, start_postgres


def _new(service: str, source: str) -> NewVersion:
    return NewVersion(service, "production", source, "{}", "hash-" + source, "tester", None, "")


def _push(store: PostgresStore, service: str, source: str) -> VersionRecord:
    record, created = store.write(
        lambda transaction: transaction.append_version(_new(service, source), None, None)
    )
    assert created
    return record


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_tables_carry_a_schema_version_and_a_newer_store_is_refused(postgres_dsn: str) -> None:
    # Two servers opening an empty database together create the tables once.
    stores = [PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)]
    threads = [threading.Thread(target=store.open) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        _push(stores[0], "svc", "a")
        assert stores[1].current_version("svc", "production").version == 1  # type: ignore[union-attr]
    finally:
        for store in stores:
            store.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        connection.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    newer = PostgresStore(postgres_dsn)
    with pytest.raises(StoreNewerThanServer, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        newer.open()


def test_every_replica_hears_each_commit_and_catches_up_after_connecting(postgres_dsn: str) -> None:
    writer, follower = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    writer.open()
    follower.open()
    heard: list[int] = []
    changes: list[str] = []
    connected = threading.Event()
    listening = follower.listen(heard.append, connected.set, on_change=changes.append)
    try:
        assert connected.wait(10)
        records = [_push(writer, "svc", f"n{number}") for number in range(3)]
        _wait_for(lambda: len(heard) == 3)
        assert heard == [record.sequence for record in records]
        # What the follower reads for the last sequence it heard is what was committed.
        assert [r.version for r in follower.versions_after(heard[0], 10)] == [2, 3]
        # A write that creates nothing (an identical source) notifies nobody.
        writer.write(lambda transaction: transaction.append_version(_new("svc", "n2"), None, None))
        time.sleep(0.5)
        assert len(heard) == 3
        # Tokens, schemas and services: one notification per kind a commit changed, none for
        # an operation that was undone.
        token = TokenRecord("t1", "ci", "writer", ("*",), ("*",), "h", "2026-01-01T00:00:00.000Z")
        writer.write(lambda transaction: transaction.insert_token(token, None))
        writer.write(lambda transaction: transaction.append_schema("svc", "{}", "h", "a", None, None))

        def refused(transaction: Transaction) -> None:
            transaction.create_service("other", "api", "admin", None)
            raise ValueError("undone")

        with pytest.raises(ValueError):
            writer.write(refused)
        writer.write(lambda transaction: transaction.create_service("billing", "api", "admin", None))
        _wait_for(lambda: len(changes) == 3)
        assert changes == ["tokens", "schemas", "services"]
        assert len(heard) == 3
    finally:
        listening.stop()
        writer.close()
        follower.close()


def test_a_listener_may_skip_the_commits_of_its_own_store(postgres_dsn: str) -> None:
    own, other = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    own.open()
    other.open()
    skipping: list[int] = []
    everything: list[int] = []
    connected = threading.Barrier(3)
    listenings = [
        own.listen(skipping.append, lambda: connected.wait(10), own_commits=False),
        own.listen(everything.append, lambda: connected.wait(10)),
    ]
    try:
        connected.wait(10)
        mine = _push(own, "svc", "mine")
        theirs = _push(other, "svc", "theirs")
        also_mine = _push(own, "svc", "also mine")
        _wait_for(lambda: len(everything) == 3)
        assert everything == [mine.sequence, theirs.sequence, also_mine.sequence]
        _wait_for(lambda: skipping == [theirs.sequence])
        time.sleep(0.3)
        assert skipping == [theirs.sequence]
        assert not own._own_notified.sequences  # every one it remembered was heard and forgotten
    finally:
        for listening in listenings:
            listening.stop()
        own.close()
        other.close()


def test_a_write_after_the_writers_connection_was_cut_while_idle_is_made_once(
    postgres_dsn: str,
) -> None:
    store = PostgresStore(postgres_dsn)
    store.open()
    try:
        first = _push(store, "svc", "first")
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            cut = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tskcfg' AND datname = current_database()"
            ).fetchall()
        assert cut
        # The batch found the connection gone before anything of it reached PostgreSQL: it
        # connects again and runs once.
        second = _push(store, "svc", "second")
        assert (second.version, second.sequence) == (first.version + 1, first.sequence + 1)
        assert [record.version for record in store.versions_after(0, 10)] == [1, 2]
    finally:
        store.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, to stop and kill without disturbing the others."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_writes_are_refused_while_postgresql_is_away_and_resume_after(
    own_postgres: PostgresServer, outage: str
) -> None:
    dsn = own_postgres.create_database()
    store = PostgresStore(dsn, connect_timeout=2)
    store.open()
    connections: list[int] = []
    heard: list[int] = []
    listening = store.listen(heard.append, lambda: connections.append(1), retry_every=0.2)
    try:
        _wait_for(lambda: len(connections) == 1)
        before = _push(store, "svc", "before")
        own_postgres.stop() if outage == "stop" else own_postgres.kill()
        with pytest.raises(StoreUnavailable, match="PostgreSQL store cannot be reached"):
            _push(store, "svc", "during")
        # Refused at once, not after waiting out a pool's timeout.
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.current_version("svc", "production")
            assert time.monotonic() - started < 2.0
        with pytest.raises(StoreUnavailable):
            store.check()
        own_postgres.start()
        # Back: the writer, the read pool and the listener reconnect by themselves.
        after = _push(store, "svc", "after")
        assert (after.version, after.sequence) == (before.version + 1, before.sequence + 1)
        assert store.current_version("svc", "production").source == "after"  # type: ignore[union-attr]
        store.check()
        _wait_for(lambda: len(connections) == 2)
        _push(store, "svc", "heard")
        _wait_for(lambda: bool(heard) and heard[-1] == after.sequence + 1)
        # Nothing refused was stored.
        assert [r.source for r in store.versions_after(0, 10)] == ["", "", ""]
        assert [store.get_version("svc", "production", n).source for n in (1, 2, 3)] == [  # type: ignore[union-attr]
            "before", "after", "heard"
        ]
    finally:
        listening.stop()
        store.close()


def test_a_server_cannot_open_a_store_that_is_away(own_postgres: PostgresServer) -> None:
    dsn = own_postgres.create_database()
    own_postgres.stop()
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        PostgresStore(dsn, connect_timeout=1).open()


def test_one_process_leads_and_another_takes_over_when_it_ends(postgres_dsn: str) -> None:
    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    first.open()
    second.open()
    try:
        assert first.lead() and first.lead()
        assert not second.lead()
        first.close()  # as the process ending would: its connection, and the lease, go
        _wait_for(second.lead)
    finally:
        first.close()
        second.close()


def test_a_change_signal_hears_every_process_commit(postgres_dsn: str) -> None:
    writer, follower = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    writer.open()
    follower.open()
    pokes: list[int] = []
    signal = follower.change_signal()
    signal.start(lambda: pokes.append(1))
    try:
        _wait_for(lambda: len(pokes) == 1)  # connected: catch up
        assert signal.changed() and not signal.changed()
        _push(writer, "svc", "a")
        _wait_for(lambda: len(pokes) == 2)
        assert signal.changed() and not signal.changed()
    finally:
        signal.close()
        writer.close()
        follower.close()


def test_the_store_clock_is_the_database_clock_written_as_the_store_writes_times(
    postgres_dsn: str,
) -> None:
    import re
    from datetime import UTC, datetime

    store = PostgresStore(postgres_dsn)
    store.open()
    try:
        now = store.write(lambda transaction: transaction.now())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now), now
        moment = datetime.strptime(now, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - moment).total_seconds()) < 5
    finally:
        store.close()


def test_a_lost_listening_connection_counts_as_missed_and_is_polled_until_it_is_back(
    postgres_dsn: str,
) -> None:
    import psycopg

    store = PostgresStore(postgres_dsn)
    store.open()
    pokes: list[int] = []
    missed: list[int] = []
    signal = store.change_signal()
    signal.start(lambda: pokes.append(1), lambda: missed.append(1))
    try:
        _wait_for(lambda: len(missed) == 1 and len(pokes) == 1)  # connected: catch up
        assert signal.changed() and not signal.changed()
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tskcfg-listen' AND datname = current_database()"
            )
        # Lost: possibly behind, and `changed` says so at every check until it is back.
        _wait_for(lambda: len(missed) >= 2)
        assert signal.changed() and signal.changed() or len(missed) >= 3
        # Back (it listens again): missed once more, so a catch-up after it is needed.
        _wait_for(lambda: len(missed) == 3)
        _wait_for(lambda: not signal.changed())
        assert not signal.changed()
    finally:
        signal.close()
        store.close()
