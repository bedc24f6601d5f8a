"""The CLI's view of the shared test server (tests/serving.py): a real `tskcfg serve` on a free
127.0.0.1 port with a temporary data dir, plus a way to run `tskcfg` against it in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from config_service.cli import main
from tests.serving import REPOSITORY, ServerProcess, free_port, make_root

ROOT = REPOSITORY

__all__ = ["ROOT", "Server", "ServerProcess", "free_port", "make_root"]


@dataclass
class Server:
    process: ServerProcess

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def admin_token(self) -> str:
        return self.process.admin_token

    @property
    def root(self) -> Path:
        return self.process.root

    def cli(self, *args: str, token: str | None = None, input: str | bytes | None = None) -> Result:
        """Run `tskcfg --server URL --token TOKEN ARGS...` in-process (the admin token by default)."""
        chosen = self.admin_token if token is None else token
        return CliRunner().invoke(
            main,
            ["--server", self.url, "--token", chosen, *args],
            input=input,
            env={"TSKCFG_TOKEN": None, "TSKCFG_SERVER": None, "TSKCFG_DATA_DIR": None},
        )

    def http(self, token: str | None = None) -> httpx.Client:
        return self.process.client(token or self.admin_token)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module, with the repository's schemas and no documents; open
    services (a push creates its service), since most tests are about something else."""
    process = ServerProcess(make_root(tmp_path_factory.mktemp("tskcfg-cli")), open_services=True).start()
    try:
        yield Server(process)
    finally:
        process.stop()


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without data/admin.token and no TSKCFG_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in ("TSKCFG_TOKEN", "TSKCFG_SERVER", "TSKCFG_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path
