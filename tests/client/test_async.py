"""AsyncConfigClient does what ConfigClient does, on an event loop: same core, same results."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from clienttest import DEVELOPMENT, SERVICE, LiveServer, free_port

from tskcfg import AsyncConfigClient, NotFound, RetryPolicy


def with_rate(rate: int) -> str:
    return DEVELOPMENT.replace("rate_limit_per_minute: 10000", f"rate_limit_per_minute: {rate}")


async def tasks_left(timeout: float = 1.0) -> set[asyncio.Task[Any]]:
    """Tasks other than this one still running after `timeout`: what a stopped client left behind.

    Waiting a moment lets the loop finish closing what was cancelled (httpx's stream readers
    are async generators, closed in a task of their own when the collector finds them).
    """
    deadline = time.monotonic() + timeout
    while True:
        left = asyncio.all_tasks() - {asyncio.current_task()}
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.01)


async def until(predicate: Any, timeout: float = 5.0) -> Any:
    async def poll() -> Any:
        while not (value := predicate()):
            await asyncio.sleep(0.01)
        return value

    return await asyncio.wait_for(poll(), timeout)


def test_async_client_applies_pushes_and_reverts_failures(
    server: LiveServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        server.push(with_rate(1), "staging", service="async-check")
        client = AsyncConfigClient(
            "async-check",
            "staging",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            environments_dir=tmp_path,
            instance_id="test:async",
        )
        applied: list[int] = []

        @client.on("features")
        async def record(new: Any, old: Any) -> None:
            await asyncio.sleep(0)
            applied.append(new["rate_limit_per_minute"])

        @client.on("features")
        def refuse_zero(new: Any, old: Any) -> None:
            if new["rate_limit_per_minute"] == 0:
                raise RuntimeError("zero")

        async with client:
            assert client.config.version == 1 and applied == [1]
            pushed = await asyncio.to_thread(server.push, with_rate(2), "staging", "async-check")
            await until(lambda: client.config.version == pushed["version"])
            assert applied == [1, 2]
            bad = await asyncio.to_thread(
                server.push, with_rate(0).replace("ttl: 30", "ttl: 77"), "staging", "async-check"
            )
            report = await until(
                lambda: (
                    (entry := server.instance("test:async", "staging", "async-check"))
                    and entry["status"] == "failed"
                    and entry
                )
            )
            # What the instance still runs; the refused version is its failed_version.
            assert report["version"] == pushed["version"] != bad["version"]
            assert report["failed_version"] == bad["version"] and report["version"] == pushed["version"]
            assert applied == [1, 2, 0, 2] and client.config.version == pushed["version"]
            assert client.cache.ttl == 30
        assert (tmp_path / "async-check" / "staging.json").is_file()

    asyncio.run(scenario())


def test_async_client_falls_back_and_raises_like_the_sync_one(
    tmp_path: Path, environments: Path, server: LiveServer
) -> None:
    async def scenario() -> None:
        down = AsyncConfigClient(
            SERVICE,
            "development",
            server=f"http://127.0.0.1:{free_port()}",
            cache_dir=tmp_path,
            environments_dir=environments,
            retry=RetryPolicy(base=0.01),
        )
        config = await down.load()
        assert config.source == "file" and down.config is config
        await down.stop()
        with pytest.raises(NotFound):
            async with AsyncConfigClient(
                "missing-service",
                "development",
                server=server.url,
                token=server.token,
                cache_dir=tmp_path,
            ):
                pass

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["watch", "poll", "sse"])
def test_async_client_follows_pushes_in_every_mode(
    server: LiveServer, tmp_path: Path, mode: str
) -> None:
    service = f"async-{mode}"

    async def scenario() -> None:
        await asyncio.to_thread(server.push, with_rate(1), "development", service)
        async with AsyncConfigClient(
            service,
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            mode=mode,
            poll_interval=0.1,
        ) as client:
            pushed = await asyncio.to_thread(server.push, with_rate(2), "development", service)
            await until(lambda: client.config.version == pushed["version"])
            assert client.config.get("features.rate_limit_per_minute") == 2
        assert await tasks_left() == set()

    asyncio.run(scenario())


def test_a_task_cancelled_mid_apply_leaves_nothing_half_applied(
    server: LiveServer, tmp_path: Path
) -> None:
    """stop() cancels the watch task while an async handler is awaiting: what ran before is reverted."""

    async def scenario() -> None:
        await asyncio.to_thread(server.push, with_rate(1), "development", "async-cancel")
        client = AsyncConfigClient(
            "async-cancel",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            environments_dir=tmp_path,
        )
        calls: list[tuple[Any, Any]] = []
        blocked = asyncio.Event()

        @client.on("features")
        def record(new: Any, old: Any) -> None:
            calls.append((new["rate_limit_per_minute"], old and old["rate_limit_per_minute"]))

        @client.on("features")
        async def slow(new: Any, old: Any) -> None:
            if new["rate_limit_per_minute"] == 2:
                blocked.set()
                await asyncio.sleep(3600)  # still applying when the task is cancelled

        await client.start()
        first = client.config
        ttl = client.cache.ttl
        await asyncio.to_thread(
            server.push, with_rate(2).replace("ttl: 30", "ttl: 77"), "development", "async-cancel"
        )
        await asyncio.wait_for(blocked.wait(), 5)
        assert client.cache.ttl == 77  # the built-in cache applier ran before the handler
        await client.stop()
        assert client.config is first
        assert client.cache.ttl == ttl  # reverted, not left half applied
        assert calls == [(1, None), (2, 1), (1, 2)]  # the handler before was called back
        assert await tasks_left() == set()

    asyncio.run(scenario())


class UnansweredReports(httpx.AsyncHTTPTransport):
    """Instance reports that never get an answer: a server that accepts and then hangs."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            await asyncio.sleep(3600)
        return await super().handle_async_request(request)


def test_stop_leaves_no_task_behind_even_with_a_report_in_flight(
    server: LiveServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        await asyncio.to_thread(server.push, with_rate(1), "development", "async-leak")
        async with AsyncConfigClient(
            "async-leak",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            transport=UnansweredReports(),
        ) as client:
            assert client.config.version == 1
        assert await tasks_left() == set()

    asyncio.run(scenario())


def test_a_client_stopped_while_starting_does_not_start_watching(
    server: LiveServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        await asyncio.to_thread(server.push, with_rate(1), "development", "async-stop-start")
        client = AsyncConfigClient(
            "async-stop-start",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
        )
        applying = asyncio.Event()

        @client.on("features")
        async def slow(new: Any, old: Any) -> None:
            applying.set()
            await asyncio.sleep(0.2)

        starting = asyncio.create_task(client.start())
        await asyncio.wait_for(applying.wait(), 5)
        await client.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            await starting
        assert await tasks_left() == set()

    asyncio.run(scenario())


def test_a_handler_may_stop_its_own_client(server: LiveServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        await asyncio.to_thread(server.push, with_rate(1), "development", "async-self-stop")
        client = AsyncConfigClient(
            "async-self-stop",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
        )

        @client.on("features")
        async def shut_down_on_zero(new: Any, old: Any) -> None:
            if new["rate_limit_per_minute"] == 0:
                await client.stop()

        await client.start()
        await asyncio.to_thread(server.push, with_rate(0), "development", "async-self-stop")
        await until(lambda: client._http.is_closed)
        assert await tasks_left() == set()  # the watch task ends once the handler has returned

    asyncio.run(scenario())


class SlowFirstReport(httpx.AsyncHTTPTransport):
    """The first instance report takes a while to reach the server; the ones after it do not.
    Config answers arrive damaged (their data no longer matches their hash)."""

    def __init__(self) -> None:
        super().__init__()
        self.reports = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            self.reports += 1
            if self.reports == 1:
                await asyncio.sleep(0.3)
        response = await super().handle_async_request(request)
        if request.url.path.startswith("/v1/configs/") and response.status_code == 200:
            import json

            body = json.loads(await response.aread())
            body["config"]["name"] = "damaged"
            return httpx.Response(200, json=body)
        return response


def test_reports_reach_the_server_in_the_order_they_were_made(
    server: LiveServer, tmp_path: Path, environments: Path
) -> None:
    """Refused at start: `failed`, then `fallback`; the server must end up with `fallback`."""
    server.push(DEVELOPMENT, "production")

    async def scenario() -> None:
        async with AsyncConfigClient(
            SERVICE,
            "production",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            environments_dir=environments,
            instance_id="test:async-order",
            transport=SlowFirstReport(),
        ) as client:
            assert client.config.source == "file"
            await asyncio.sleep(0.6)
            # Checked while it runs: stop() reports `stopped` after everything else.
            entry = await asyncio.to_thread(server.instance, "test:async-order", "production")
            assert entry is not None and entry["status"] == "fallback", entry
        entry = await asyncio.to_thread(server.instance, "test:async-order", "production")
        assert entry is not None and entry["status"] == "stopped", entry

    asyncio.run(scenario())


def test_a_handler_that_reloads_its_own_client_fails_instead_of_hanging(
    server: LiveServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        await asyncio.to_thread(server.push, with_rate(1), "development", "async-reentrant")
        client = AsyncConfigClient(
            "async-reentrant",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
        )
        errors: list[BaseException] = []

        @client.on("features")
        async def reload_on_two(new: Any, old: Any) -> None:
            if new["rate_limit_per_minute"] == 2:
                try:
                    await client.refresh()
                except BaseException as error:
                    errors.append(error)
                    raise

        async with client:
            first = client.config
            await asyncio.to_thread(server.push, with_rate(2), "development", "async-reentrant")
            await until(lambda: errors)
            assert isinstance(errors[0], RuntimeError) and "handler" in str(errors[0])
            assert client.config is first

    asyncio.run(scenario())


class Connection:
    def __init__(self, section: Any) -> None:
        self.pool_size = section["pool_size"]
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_slow_database_connect_does_not_stall_the_event_loop(server: LiveServer, tmp_path: Path) -> None:
    from tskcfg import DatabaseApplier

    def slow_connect(section: Any) -> Connection:
        time.sleep(0.4)  # a blocking driver, or a database that answers slowly
        return Connection(section)

    async def scenario() -> None:
        await asyncio.to_thread(server.push, DEVELOPMENT, "staging", "async-slow-db")
        database = DatabaseApplier(slow_connect)
        client = AsyncConfigClient(
            "async-slow-db", "staging", server=server.url, token=server.token,
            cache_dir=tmp_path, database=database,
        )
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            async with client:
                assert isinstance(database.current, Connection)
        finally:
            ticker.cancel()
        # 0.4 s of connecting: a loop stalled by it would have ticked a handful of times at most.
        assert ticks >= 20, ticks

    asyncio.run(scenario())


def test_cancelling_an_apply_during_a_database_connect_undoes_it(server: LiveServer, tmp_path: Path) -> None:
    import threading

    from tskcfg import DatabaseApplier

    started, release = threading.Event(), threading.Event()
    made: list[Connection] = []

    def connect(section: Any) -> Connection:
        if made:  # the second connect waits until the test lets it finish
            started.set()
            release.wait(5)
        made.append(Connection(section))
        return made[-1]

    async def scenario() -> None:
        await asyncio.to_thread(server.push, DEVELOPMENT, "staging", "async-cancel-db")
        database = DatabaseApplier(connect)
        client = AsyncConfigClient(
            "async-cancel-db", "staging", server=server.url, token=server.token,
            cache_dir=tmp_path, database=database,
        )
        first = await client.load()
        assert database.current is made[0]
        await asyncio.to_thread(
            server.push, DEVELOPMENT.replace("pool_size: 2", "pool_size: 6"), "staging", "async-cancel-db"
        )
        applying = asyncio.create_task(client.refresh())
        assert await asyncio.to_thread(started.wait, 5)
        applying.cancel()
        await asyncio.sleep(0.05)
        assert not applying.done()  # it waits for the connect it cannot stop
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await applying
        assert len(made) == 2 and made[1].pool_size == 6
        assert made[1].closed and not made[0].closed  # the new one undone, the old one kept
        assert database.current is made[0]
        assert client.config is first
        await client.stop()

    asyncio.run(scenario())


def test_stop_right_after_an_apply_returns_after_its_last_known_good_write(
    server: LiveServer, tmp_path: Path
) -> None:
    import json

    stored = tmp_path / "cache" / "lkg-async" / "development.json"

    async def scenario(round: int) -> None:
        await asyncio.to_thread(server.push, with_rate(100 + round), "development", "lkg-async")
        client = AsyncConfigClient(
            "lkg-async",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / "cache",
        )
        await client.start()
        pushed = await asyncio.to_thread(
            server.push, with_rate(200 + round), "development", "lkg-async"
        )
        while client.config.version != pushed["version"]:
            await asyncio.sleep(0)
        await client.stop()
        assert json.loads(stored.read_text())["version"] == pushed["version"], round

    for round in range(6):
        asyncio.run(asyncio.wait_for(scenario(round), 10))


class ReportRecorder(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            import json

            self.reports.append(json.loads(await request.aread()))
        return await super().handle_async_request(request)


def test_async_reports_say_what_runs_what_failed_and_that_the_instance_stopped(
    server: LiveServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        running = await asyncio.to_thread(server.push, with_rate(3), "development", "async-report")
        transport = ReportRecorder()
        client = AsyncConfigClient(
            "async-report",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            transport=transport,
        )

        @client.on("features")
        async def refuse_zero(new: Any, old: Any) -> None:
            if new["rate_limit_per_minute"] == 0:
                raise RuntimeError("zero")

        async with client:
            refused = await asyncio.to_thread(
                server.push, with_rate(0), "development", "async-report"
            )
            await until(lambda: any(report["status"] == "failed" for report in transport.reports))
        statuses = [
            (report["status"], report["version"], report.get("failed_version"))
            for report in transport.reports
        ]
        assert statuses == [
            ("applied", running["version"], None),
            ("failed", running["version"], refused["version"]),
            ("stopped", running["version"], None),
        ]
        assert transport.reports[1]["failed_hash"] == refused["hash"]

    asyncio.run(scenario())


def test_a_quiet_async_instance_reports_its_state_again_every_interval(
    server: LiveServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        running = await asyncio.to_thread(server.push, with_rate(3), "development", "async-again")
        transport = ReportRecorder()
        async with AsyncConfigClient(
            "async-again",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            transport=transport,
            report_interval=0.3,
        ):
            await until(lambda: len(transport.reports) >= 4)
        statuses = [(report["status"], report["version"]) for report in transport.reports]
        assert statuses[:4] == [("applied", running["version"])] * 4 and statuses[-1][0] == "stopped"
        count = len(transport.reports)
        await asyncio.sleep(0.7)
        assert len(transport.reports) == count  # nothing after `stopped`

    asyncio.run(scenario())
