"""The CLI's view of the shared test server (tests/serving.py): a real `tskcfg serve` on a free
127.0.0.1 port with a temporary data dir, plus a way to run `tskcfg` against it in-process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# pytest puts tests/ first on sys.path for the packages under it (this one, tests/server); then
# `import client` would find the folder tests/client (a namespace package) before the real client
# package, which the editable install serves through an import hook consulted later. Putting the
# repository first keeps `client` the real package for every test collected after this one.
# (pyproject's `[tool.pytest.ini_options] pythonpath = ["."]` would do the same for the whole suite.)
_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_REPOSITORY_ROOT]:
    sys.path.insert(0, _REPOSITORY_ROOT)

import httpx  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner, Result  # noqa: E402

from config_service.cli import main  # noqa: E402
from tests.serving import REPOSITORY, ServerProcess, free_port, make_root  # noqa: E402

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
    """One server per test module, with the repository's schemas and no documents."""
    process = ServerProcess(make_root(tmp_path_factory.mktemp("tskcfg-cli"))).start()
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
