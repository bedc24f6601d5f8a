"""A real `tskcfg serve` on a free 127.0.0.1 port with a temporary data dir, and a runner for the CLI."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from config_service.cli import main

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    admin_token: str
    root: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def cli(self, *args: str, token: str | None = None, input: str | bytes | None = None) -> Result:
        """Run `tskcfg --server URL --token TOKEN ARGS...` in-process (admin token by default)."""
        runner = CliRunner()
        chosen = self.admin_token if token is None else token
        return runner.invoke(
            main,
            ["--server", self.url, "--token", chosen, *args],
            input=input,
            env={"TSKCFG_TOKEN": None, "TSKCFG_SERVER": None},
        )

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=10.0,
        )


def start_server(root: Path, port: int | None = None) -> Server:
    """Start (or, with the same root and port, restart) a server whose files live under ROOT."""
    if not (root / "environments").exists():
        (root / "environments").mkdir()
        shutil.copytree(ROOT / "schemas", root / "schemas")
    port = port or free_port()
    command = [
        sys.executable, "-c", "from config_service.cli import main; main()", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(root / "data"),
        "--environments", str(root / "environments"),
        "--schemas", str(root / "schemas"),
        "--log-level", "warning", "--no-access-log",
    ]
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tskcfg serve exited: {(root / 'server.log').read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError(f"tskcfg serve did not answer within {START_TIMEOUT} s")
    token = (root / "data" / "admin.token").read_text().strip()
    return Server(url=url, admin_token=token, root=root, process=process)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("tskcfg-server"))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without data/admin.token and no TSKCFG_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in ("TSKCFG_TOKEN", "TSKCFG_SERVER"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


__all__ = ["Server"]
