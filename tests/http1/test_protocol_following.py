"""The hot path of `tskcfg serve` in a process that shares its store with another (a worker):
a read naming a version only the other process has seen is answered after reading the store,
and a long poll whose time runs out while the process is catching up waits for the catch-up.

The app's `Core` follows a real SQLite file that a second `Core` writes to; its follower
thread is stopped, so it catches up only when the test says.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from config_service.core.access import Principal
from config_service.core.wiring import Core
from config_service.http.app import create_app
from config_service.settings import Settings
from tests.http1.test_protocol import ENVIRONMENT, SERVICE, Harness

ADMIN = Principal(None, "tests", "admin", ("*",), ("*",))


def run(tmp_path: Path, scenario) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path / "data", environments_dir=tmp_path / "none", schemas_dir=tmp_path / "none",
        sync=False, access_log=False, open_services=True, workers=2,
    )  # fmt: skip
    other = Core(settings)
    other.start()
    served = Core(settings)
    app = create_app(settings, served)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            assert served.follower is not None
            served.follower.stop()
            harness = Harness(app, settings.admin_token_path.read_text().strip())
            await asyncio.wait_for(scenario(harness, other, served), 20)

    try:
        asyncio.run(main())
    finally:
        other.stop()


def push(core: Core, n: int) -> int:
    rendered, _ = core.documents.push(ADMIN, SERVICE, ENVIRONMENT, f"n: {n}\n")
    return rendered.version


def test_a_read_naming_a_version_only_the_store_has_is_not_answered_from_memory(tmp_path: Path) -> None:
    async def scenario(harness: Harness, other: Core, served: Core) -> None:
        push(other, 1)
        connection = harness.connect()
        connection.send(harness.request())
        (first,) = await connection.wait_for(1)
        assert first.headers["etag"] == '"1"'
        assert push(other, 2) == 2  # this process has not followed
        connection.send(harness.request(headers={"If-None-Match": '"2"'}))
        _, named = await connection.wait_for(2)
        assert (named.status, named.headers["etag"]) == (304, '"2"')
        cached = served.versions.cached(SERVICE, ENVIRONMENT)
        assert cached is not None and cached.version == 2

    run(tmp_path, scenario)


def test_a_long_poll_timing_out_while_catching_up_gets_the_version_caught_up(tmp_path: Path) -> None:
    async def scenario(harness: Harness, other: Core, served: Core) -> None:
        push(other, 1)
        connection = harness.connect()
        connection.send(harness.request())
        await connection.wait_for(1)
        assert served.follower is not None
        served.follower.missed()  # as after a lost connection to the store
        push(other, 2)
        connection.send(harness.long_poll(1, wait=0.2))
        await asyncio.sleep(0.5)
        assert len(connection.responses()) == 1  # its time ran out, but it waits: lagging
        caught_up = threading.Thread(target=served.catch_up)
        caught_up.start()
        _, woken = await connection.wait_for(2)
        caught_up.join()
        assert (woken.status, woken.json()["version"]) == (200, 2)

    run(tmp_path, scenario)
