"""A process that may have missed other processes' versions (it lost the store's notifications)
does not answer a long poll "no change" before it has caught up with the store.

Two `Core`s share one real SQLite file (two workers); the second serves HTTP through the real
app. Its follower thread is stopped, so it catches up only when the test says.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from config_service.core.access import Principal
from config_service.core.wiring import Core
from config_service.http.app import create_app
from config_service.http.read import LAG_CHECK_SECONDS, LAG_CHECKS
from config_service.settings import Settings

ADMIN = Principal(None, "tests", "admin", ("*",), ("*",))
DOCUMENT = "/v1/configs/orders/development"


Check = Callable[[Core, Core, httpx.AsyncClient], Awaitable[None]]


def with_pair(tmp_path: Path, check: Check) -> None:
    settings = Settings(data_dir=tmp_path / "data", sync=False, workers=2, access_log=False, open_services=True)
    first = Core(settings)
    first.start()
    second = Core(settings)
    app = create_app(settings, second)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            token = settings.admin_token_path.read_text().strip()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {token}"}
            ) as client:
                assert second.follower is not None
                second.follower.stop()  # from here on it catches up only when told
                await check(first, second, client)

    try:
        asyncio.run(main())
    finally:
        first.stop()


def test_a_long_poll_ends_with_the_version_caught_up_not_with_no_change(tmp_path: Path) -> None:
    with_pair(tmp_path, _caught_up)


async def _caught_up(first: Core, second: Core, client: httpx.AsyncClient) -> None:
    first.documents.push(ADMIN, "orders", "development", "value: 1\n")
    assert (await client.get(DOCUMENT)).json()["version"] == 1
    assert second.follower is not None
    second.follower.missed()  # as after a lost connection to the store
    assert second.lagging
    first.documents.push(ADMIN, "orders", "development", "value: 2\n")
    threading.Timer(0.6, second.catch_up).start()
    started = time.monotonic()
    answer = await client.get(DOCUMENT + "?wait=0.2", headers={"If-None-Match": '"1"'})
    took = time.monotonic() - started
    # The time ran out at 0.2 s, but the answer waited for the catch-up at 0.6 s.
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2
    assert 0.5 < took < 0.2 + LAG_CHECKS * LAG_CHECK_SECONDS
    # The catch-up counts as done once it read to the end (just after handing on version 2).
    for _ in range(100):
        if not second.lagging:
            break
        await asyncio.sleep(0.01)
    assert not second.lagging


def test_no_change_once_caught_up_and_at_last_while_never_catching_up(tmp_path: Path) -> None:
    with_pair(tmp_path, _never_caught_up)


async def _never_caught_up(first: Core, second: Core, client: httpx.AsyncClient) -> None:
    first.documents.push(ADMIN, "orders", "development", "value: 1\n")
    assert (await client.get(DOCUMENT)).json()["version"] == 1
    started = time.monotonic()
    answer = await client.get(DOCUMENT + "?wait=0.2", headers={"If-None-Match": '"1"'})
    assert answer.status_code == 304
    assert time.monotonic() - started < 1.0  # not lagging: no extra wait
    assert second.follower is not None
    second.follower.missed()
    started = time.monotonic()
    answer = await client.get(DOCUMENT + "?wait=0.2", headers={"If-None-Match": '"1"'})
    # Never caught up: "no change" after the bounded extra wait, from memory.
    assert answer.status_code == 304
    assert time.monotonic() - started >= 0.2 + LAG_CHECKS * LAG_CHECK_SECONDS * 0.9
