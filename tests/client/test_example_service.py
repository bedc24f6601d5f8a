"""examples/user_service in a real process against a real server: pushes change its behaviour live."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clienttest import DEVELOPMENT, ROOT, LiveServer, free_port, wait_for

APP = ROOT / "examples" / "user_service" / "app.py"


@pytest.fixture
def service(server: LiveServer, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    server.push(DEVELOPMENT)
    port = free_port()
    env = {
        **os.environ,
        "CONFIG_STORE": server.url,
        "CONFIG_TOKEN": server.token,
        "SERVICE_ENV": "development",
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'users.db'}",
        "HOME": str(tmp_path),  # the last-known-good cache goes under ~/.cache
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, str(APP)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return False

    try:
        wait_for(healthy, timeout=15, step=0.05)
        yield url, process
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_the_example_service_follows_pushes(
    server: LiveServer, service: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    url, _ = service
    health = httpx.get(f"{url}/health").json()
    current = server.request("GET", "/v1/configs/user-service/development").json()
    assert health["config"] == {
        "version": current["version"],
        "hash": current["hash"],
        "source": "server",
    }
    assert (
        health["database"] == f"sqlite:///{tmp_path / 'users.db'}"
    )  # @env resolved in the service

    created = httpx.post(f"{url}/users", json={"name": "Ada", "email": "ada@example.com"})
    assert created.status_code == 201
    first = httpx.get(f"{url}/users", headers={"Origin": "http://localhost:3000"})
    assert first.json()["users"][0]["name"] == "Ada" and first.json()["cached"] is False
    assert first.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert httpx.get(f"{url}/users").json()["cached"] is True

    changed = DEVELOPMENT.replace('"http://localhost:3000",', '"https://new.example.com",')
    changed = changed.replace("signup_enabled: true", "signup_enabled: false").replace(
        "ttl: 30", "ttl: 5"
    )
    pushed = server.push(changed)
    wait_for(lambda: httpx.get(f"{url}/health").json()["config"]["version"] == pushed["version"])
    assert httpx.get(f"{url}/health").json()["cache"]["ttl"] == 5
    refused = httpx.post(f"{url}/users", json={"name": "Bob", "email": "bob@example.com"})
    assert refused.status_code == 403
    cors = httpx.get(f"{url}/users", headers={"Origin": "http://localhost:3000"})
    assert "access-control-allow-origin" not in cors.headers
    allowed = httpx.options(
        f"{url}/users",
        headers={"Origin": "https://new.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert (
        allowed.status_code == 204
        and allowed.headers["access-control-allow-origin"] == "https://new.example.com"
    )
    report = wait_for(
        lambda: [entry for entry in server.instances() if entry["version"] == pushed["version"]]
    )
    assert report[0]["status"] == "applied"
    assert (tmp_path / ".cache" / "tskcfg" / "user-service" / "development.json").is_file()

    # A new database url: the applier opens and checks the new SQLite file, swaps it in, and the
    # service's own handler empties the cache that held rows of the old one.
    other = tmp_path / "other.db"
    moved = server.push(
        changed.replace(
            'url: @env("DATABASE_URL", "sqlite:///./data/user-service.db")',
            f'url: "sqlite:///{other}"',
        )
    )
    wait_for(lambda: httpx.get(f"{url}/health").json()["config"]["version"] == moved["version"])
    assert httpx.get(f"{url}/health").json()["database"] == f"sqlite:///{other}"
    assert httpx.get(f"{url}/users").json() == {"users": [], "cached": False}
    assert other.is_file()
