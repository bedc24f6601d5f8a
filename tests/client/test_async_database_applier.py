"""The async client's database applier in a worker thread: failures of connect and
check, cancellations at every point (repeated ones too), and nothing left running after."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from clienttest import DEVELOPMENT, LiveServer

from tskcfg import AsyncConfigClient, ConfigClient, DatabaseApplier

BIGGER = DEVELOPMENT.replace("pool_size: 2", "pool_size: 6")


class Connection:
    def __init__(self, section: Any) -> None:
        self.pool_size = section["pool_size"]
        self.thread = threading.get_ident()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def others(loop_thread: int) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.ident != loop_thread]


@pytest.mark.parametrize("failing", ["connect", "check"])
def test_a_failing_connect_or_check_is_an_apply_failure_and_the_old_connection_stays(
    server: LiveServer, tmp_path: Path, failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[Connection] = []

    def connect(section: Any) -> Connection:
        if made and failing == "connect":
            raise ConnectionRefusedError("the database is down")
        made.append(Connection(section))
        return made[-1]

    def check(connection: Connection) -> None:
        if connection.pool_size == 6 and failing == "check":
            raise TimeoutError("select 1 timed out")

    service = f"database-applier-{failing}"

    async def scenario() -> None:
        await asyncio.to_thread(server.push, DEVELOPMENT, "staging", service)
        database = DatabaseApplier(connect, check=check)
        client = AsyncConfigClient(
            service, "staging", server=server.url, token=server.token,
            cache_dir=tmp_path, database=database,
        )
        first = await client.load()
        await asyncio.to_thread(server.push, BIGGER, "staging", service)
        await client.refresh()  # a refresh reports a failed apply, it does not raise it
        expected = "ConnectionRefusedError" if failing == "connect" else "TimeoutError"
        failures = [
            record.getMessage() for record in caplog.records
            if "failed in the built-in database applier" in record.getMessage()
        ]
        assert failures and expected in failures[-1] and "version 1 stays current" in failures[-1]
        assert database.current is made[0] and made[0].closed == 0
        if failing == "check":
            assert len(made) == 2 and made[1].closed == 1  # what it made is closed, once
        assert client.config is first
        await client.stop()

    asyncio.run(scenario())


def test_repeated_cancels_during_connect_and_its_undo_undo_it_once(
    server: LiveServer, tmp_path: Path
) -> None:
    connecting, release_connect = threading.Event(), threading.Event()
    closing, release_close = threading.Event(), threading.Event()
    made: list[Connection] = []

    def connect(section: Any) -> Connection:
        if made:
            connecting.set()
            release_connect.wait(5)
        made.append(Connection(section))
        return made[-1]

    def close(connection: Connection) -> None:
        closing.set()
        release_close.wait(5)  # the undo, held in its thread
        connection.close()

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        await asyncio.to_thread(server.push, DEVELOPMENT, "staging", "database-applier-cancels")
        database = DatabaseApplier(connect, close=close)
        client = AsyncConfigClient(
            "database-applier-cancels", "staging", server=server.url, token=server.token,
            cache_dir=tmp_path, database=database,
        )
        first = await client.load()
        await asyncio.to_thread(server.push, BIGGER, "staging", "database-applier-cancels")
        applying = asyncio.create_task(client.refresh())
        assert await asyncio.to_thread(connecting.wait, 5)
        for _ in range(3):
            applying.cancel()
            await asyncio.sleep(0.02)
        assert not applying.done()
        release_connect.set()
        assert await asyncio.to_thread(closing.wait, 5)  # undoing what the connect made
        applying.cancel()
        await asyncio.sleep(0.02)
        assert not applying.done()
        release_close.set()
        with pytest.raises(asyncio.CancelledError):
            await applying
        assert [connection.closed for connection in made] == [0, 1]
        assert database.current is made[0] and client.config is first
        # The client still works: the next refresh applies the new version.
        assert await client.refresh()
        assert database.current.pool_size == 6 and made[0].closed == 1
        await client.stop()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return loop_thread

    asyncio.run(scenario())
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("asyncio_")]


def test_a_cancel_during_the_database_revert_waits_for_it(server: LiveServer, tmp_path: Path) -> None:
    closing, release_close = threading.Event(), threading.Event()
    made: list[Connection] = []

    def connect(section: Any) -> Connection:
        made.append(Connection(section))
        return made[-1]

    def close(connection: Connection) -> None:
        if connection.pool_size == 6:
            closing.set()
            release_close.wait(5)
        connection.close()

    async def scenario() -> None:
        await asyncio.to_thread(server.push, DEVELOPMENT, "staging", "database-applier-revert")
        database = DatabaseApplier(connect, close=close)
        client = AsyncConfigClient(
            "database-applier-revert", "staging", server=server.url, token=server.token,
            cache_dir=tmp_path, database=database,
        )

        @client.on("features")
        def refuse(new: Any, old: Any) -> None:
            if old is not None:
                raise RuntimeError("features refused")

        first = await client.load()
        changed = BIGGER.replace("[features]", "[features]\nchanged_flag: true")
        await asyncio.to_thread(server.push, changed, "staging", "database-applier-revert")
        applying = asyncio.create_task(client.refresh())
        assert await asyncio.to_thread(closing.wait, 5)  # the handler failed: reverting the database
        applying.cancel()
        await asyncio.sleep(0.05)
        assert not applying.done()
        release_close.set()
        with pytest.raises(asyncio.CancelledError):
            await applying
        assert [connection.closed for connection in made] == [0, 1]
        assert database.current is made[0] and client.config is first
        await client.stop()

    asyncio.run(scenario())


def test_the_sync_client_connects_in_the_calling_thread(server: LiveServer, tmp_path: Path) -> None:
    made: list[Connection] = []

    def connect(section: Any) -> Connection:
        made.append(Connection(section))
        return made[-1]

    server.push(DEVELOPMENT, "staging", "database-applier-sync")
    database = DatabaseApplier(connect)
    with ConfigClient(
        "database-applier-sync", "staging", server=server.url, token=server.token,
        cache_dir=tmp_path, database=database, mode="poll",
    ) as client:
        assert client.config is not None
        assert made[0].thread == threading.get_ident()
