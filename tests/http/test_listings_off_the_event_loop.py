"""A listing that reads the store (history, services, instances, audit, tokens, schema history)
does so in a worker thread: while one is slow, the same server still answers `/health`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from config_service.core.wiring import Core
from config_service.http.app import create_app
from config_service.settings import Settings
from config_service.store import SqliteStore
from tests.serving import USER_SERVICE, free_port

LISTINGS = (
    "list_versions",
    "current_versions",
    "list_instances",
    "list_audit",
    "list_tokens",
    "list_schemas",
)


class GatedStore(SqliteStore):
    """A real SQLite store whose listings, once armed, wait until the test releases them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def _gate(self) -> None:
        if self.armed:
            self.entered.set()
            self.released.wait(10)


def _gated(name: str) -> Any:
    original = getattr(SqliteStore, name)

    def listing(self: GatedStore, *args: Any, **kwargs: Any) -> Any:
        self._gate()
        return original(self, *args, **kwargs)

    return listing


for _name in LISTINGS:
    setattr(GatedStore, _name, _gated(_name))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, GatedStore, dict[str, str]]]:
    root = tmp_path_factory.mktemp("gated")
    port = free_port()
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=root / "data",
        sync=False,
        access_log=False,
        log_level="warning",
        open_services=True,
    )
    store = GatedStore(settings.database_path)
    app = create_app(settings, Core(settings, store))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {(root / 'data' / 'admin.token').read_text().strip()}"}
    pushed = httpx.put(
        f"{url}/v1/configs/user-service/staging",
        content=USER_SERVICE,
        headers={**headers, "Content-Type": "text/x-tsk"},
    )
    assert pushed.status_code == 201, pushed.text
    report = {"instance_id": "i-1", "service": "user-service", "environment": "staging"}
    reported = httpx.post(
        f"{url}/v1/instances", json={**report, "status": "applied", "version": 1}, headers=headers
    )
    assert reported.status_code == 204, reported.text
    try:
        yield url, store, headers
    finally:
        store.released.set()
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/configs/user-service/staging/versions",
        "/v1/services",
        "/v1/configs/user-service/staging/instances",
        "/v1/audit",
        "/v1/tokens",
        "/v1/schemas/user-service/versions",
    ],
)
def test_a_slow_listing_does_not_stall_health(
    live: tuple[str, GatedStore, dict[str, str]], path: str
) -> None:
    url, store, headers = live
    store.entered.clear()
    store.released.clear()
    store.armed = True
    try:
        with ThreadPoolExecutor(1) as pool:
            listing = pool.submit(httpx.get, url + path, headers=headers, timeout=20)
            assert store.entered.wait(5), "the listing never read the store"
            started = time.monotonic()
            health = httpx.get(url + "/health", timeout=3)
            assert health.status_code == 200
            assert time.monotonic() - started < 1
            assert not listing.done()
            store.armed = False
            store.released.set()
            assert listing.result(timeout=10).status_code == 200
    finally:
        store.armed = False
        store.released.set()
