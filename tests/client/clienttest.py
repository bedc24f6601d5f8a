"""Helpers the client tests import (pytest puts this directory on sys.path): a real server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from config_service.http.app import create_app
from config_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "user-service"
# The development document with quieter logging: its DEBUG level would flood the test output.
DEVELOPMENT = (
    (ROOT / "environments" / "development" / f"{SERVICE}.tsk")
    .read_text(encoding="utf-8")
    .replace('level: "DEBUG"', 'level: "WARNING"')
)


def document_path(environments: Path, environment: str = "development") -> Path:
    return environments / environment / f"{SERVICE}.tsk"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, step: float = 0.01) -> Any:
    """Poll `predicate` until it is truthy, at most `timeout` seconds; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


class LiveServer:
    """The real config server (create_app + uvicorn) on a free 127.0.0.1 port, in a thread.

    Stopping and starting again keeps the data directory and the port, like a restart.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (directory / "environments").mkdir(parents=True, exist_ok=True)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        settings = Settings(
            host="127.0.0.1",
            port=self.port,
            data_dir=self.directory / "data",
            environments_dir=self.directory / "environments",
            schemas_dir=ROOT / "schemas",
            access_log=False,
            log_level="warning",
            open_services=True,
        )
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server is not None and self._server.started, timeout=15)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def token(self) -> str:
        return (self.directory / "data" / "admin.token").read_text().strip()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def push(
        self, source: str, environment: str = "development", service: str = SERVICE
    ) -> dict[str, Any]:
        response = self.request(
            "PUT",
            f"/v1/configs/{service}/{environment}",
            content=source.encode(),
            headers={"Content-Type": "text/x-tsk"},
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    def instances(
        self, environment: str = "development", service: str = SERVICE
    ) -> list[dict[str, Any]]:
        response = self.request("GET", f"/v1/configs/{service}/{environment}/instances")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["instances"]
        return found

    def instance(
        self, instance_id: str, environment: str = "development", service: str = SERVICE
    ) -> dict[str, Any] | None:
        for entry in self.instances(environment, service):
            if entry["instance_id"] == instance_id:
                return entry
        return None
