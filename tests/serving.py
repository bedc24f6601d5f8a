"""A real `tskcfg serve` process on a free loopback port with a temporary data dir, for end-to-end tests
(the `server` and `admin` fixtures are offered to every test by tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
TSKCFG = Path(sys.executable).with_name("tskcfg")

SECTION_SCHEMAS = ("database", "cache", "logging", "security")

USER_SERVICE = """\
name: "user-service"
version: "1.0.0"
port: @env("PORT", 8001)

[database]
url: @env("DATABASE_URL", "postgresql://db.internal:5432/users")
pool_size: 20
timeout: 5.0

[cache]
backend: "memory"
ttl: 300
max_size: 10_000
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """`tskcfg serve` as a child process: start, wait until healthy, stop or kill -9, restart.

    `open_services=True` starts it with `--open-services`, so a push creates the service it
    names: for tests about something else that push to services of their own. Without it,
    services exist on purpose (a schema, `create_service`, a file), as on a default server.
    """

    def __init__(
        self,
        root: Path,
        *arguments: str,
        environ: dict[str, str] | None = None,
        open_services: bool = False,
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.environments_dir = root / "environments"
        self.schemas_dir = root / "schemas"
        self.arguments = (*arguments, "--open-services") if open_services else arguments
        self.environ = environ or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def start(self, timeout: float = 15.0, port: int | None = None) -> ServerProcess:
        """Start it on `port` (default: a free one; a port it had, to start it again where a
        load balancer expects it) and wait until it answers /health."""
        self.port = port if port is not None else free_port()
        command = [
            str(TSKCFG),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--environments",
            str(self.environments_dir),
            "--schemas",
            str(self.schemas_dir),
            *self.arguments,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env={**os.environ, **self.environ},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tskcfg serve exited: {self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"tskcfg serve did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        options.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, headers=headers, **options)

    def create_service(self, name: str) -> None:
        """Make service `name` exist (`POST /v1/services` with the admin token)."""
        with self.client(self.admin_token) as admin:
            response = admin.post("/v1/services", json={"service": name})
            assert response.status_code in (200, 201), response.text

    def create_token(
        self, role: str, services: list[str], environments: list[str], name: str | None = None
    ) -> str:
        with self.client(self.admin_token) as admin:
            response = admin.post(
                "/v1/tokens",
                json={
                    "name": name or f"{role}-token",
                    "role": role,
                    "services": services,
                    "environments": environments,
                },
            )
            assert response.status_code == 201, response.text
            return str(response.json()["token"])


def copy_repository_schemas(target: Path, names: tuple[str, ...] = SECTION_SCHEMAS) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(REPOSITORY / "schemas" / f"{name}.json", target / f"{name}.json")


def make_root(root: Path, *, service_schema: bool = True) -> Path:
    """A server folder with the section schemas, user-service's schema, and empty environments."""
    copy_repository_schemas(root / "schemas")
    if service_schema:
        shutil.copy(REPOSITORY / "schemas" / "user-service.json", root / "schemas" / "user-service.json")
    for environment in ("development", "staging", "production"):
        (root / "environments" / environment).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module, with the standard schemas and no documents; open services
    (a push creates its service), since most tests are about something else."""
    root = make_root(tmp_path_factory.mktemp("server"))
    process = ServerProcess(root, open_services=True).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(server.admin_token) as client:
        yield client


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The response is the JSON error shape with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "details"}, body
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    return dict(body)


def push(
    client: httpx.Client,
    service: str,
    environment: str,
    source: str,
    message: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.put(
        f"/v1/configs/{service}/{environment}",
        content=source.encode("utf-8"),
        headers={"Content-Type": "text/x-tsk", "X-Config-Message": message, **(headers or {})},
    )
