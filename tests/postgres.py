"""A real PostgreSQL for tests: initialised in a temporary folder, listening on 127.0.0.1 on a
free port, started and stopped by the tests (which may also stop, kill -9 and restart it).

PostgreSQL refuses to run as root, so as root the programs run as the `postgres` user
(`runuser`), in a folder that user owns. The programs are found with `pg_config --bindir` or
under /usr/lib/postgresql/*/bin. When they are missing a test skips, unless `CI` is set: then it
fails (`.ci/run` installs them).

Fixtures: `postgres` (one server for the session) and `postgres_dsn` (a fresh, empty database
on it for one test). Other tests import them from here:

    from tests.postgres import postgres, postgres_dsn  # noqa: F401  (fixtures)
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import free_port

SOCKET_FOLDER = "sockets"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: no pgrep needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def find_binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            answer = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(answer.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def binaries_or_skip() -> Path:
    """The binaries' folder; skips the test when they are missing, fails instead under CI."""
    folder = find_binaries()
    if folder is None:
        message = (
            "PostgreSQL is not installed (no initdb under `pg_config --bindir` or "
            "/usr/lib/postgresql/*/bin); apt-get install postgresql"
        )
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: this must not be skipped)")
        pytest.skip(message)
    return folder


class PostgresServer:
    """One PostgreSQL cluster in its own temporary folder: init, start, stop, kill, restart."""

    _databases = itertools.count(1)

    def __init__(self, binaries: Path, *, fsync: bool = False) -> None:
        self.binaries = binaries
        # fsync off by default: tests kill processes, not the machine, and the page cache
        # survives a killed server. Benchmarks pass fsync=True to count real commits.
        self.fsync = fsync
        self.folder = Path(tempfile.mkdtemp(prefix="tskcfg-postgres-"))
        self.data = self.folder / "data"
        self.sockets = self.folder / SOCKET_FOLDER
        self.log_path = self.folder / "postgres.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.sockets.mkdir()
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-instructions", "--no-sync",
        )

    def _command(self, program: str, *arguments: str) -> list[str]:
        command = [str(self.binaries / program), *arguments]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def _run(self, program: str, *arguments: str, timeout: float = 60) -> str:
        answer = subprocess.run(
            self._command(program, *arguments), capture_output=True, text=True, timeout=timeout,
            cwd=self.folder,
        )
        if answer.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({answer.returncode}): {answer.stderr.strip()}\n{self.log()}"
            )
        return answer.stdout

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def dsn(self) -> str:
        """The DSN of the `postgres` database (for administration)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60) -> PostgresServer:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200 "
            "-c shared_buffers=64MB"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path), "-w",
            "-t", str(int(timeout)), "-o", options, timeout=timeout + 10,
        )
        return self

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def pid(self) -> int | None:
        """The postmaster's process id, from its postmaster.pid (None when it is not running)."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except OSError:
            return None
        return int(first) if first.isdigit() else None

    def stop(self, mode: str = "fast") -> None:
        """Stop it cleanly (`fast`: open connections are ended)."""
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w")

    def kill(self) -> None:
        """kill -9 the postmaster and its children, as a crash would (the next start recovers)."""
        pid = self.pid()
        if pid is None:
            return
        for target in (pid, *_children(pid)):
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def create_database(self, prefix: str = "tskcfg_test") -> str:
        """A new empty database; its DSN."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def remove(self) -> None:
        """Stop it (kill when it will not stop) and delete its folder."""
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.SubprocessError):
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(*, fsync: bool = False) -> PostgresServer:
    """A started server in a new folder (skips when PostgreSQL is missing and CI is unset)."""
    server = PostgresServer(binaries_or_skip(), fsync=fsync)
    try:
        return server.start()
    except BaseException:
        server.remove()
        raise


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session; a test that stops or kills it must start it again (or
    leave that to `postgres_dsn`, which starts it when it is down)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_dsn(postgres: PostgresServer) -> str:
    """The DSN of a fresh, empty database on the session's PostgreSQL."""
    postgres.ensure_running()
    return postgres.create_database()
