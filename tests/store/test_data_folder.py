"""End-to-end: the data folder is private (0700, files 0600) and held by one server process;
a second `tskcfg serve` on it refuses to start, naming the folder and the holder."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import httpx

from tests.serving import TSKCFG, USER_SERVICE, ServerProcess, free_port, make_root, push


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_folder_and_its_files_are_private(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync", open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201
        data = server.data_dir
        assert _mode(data) == 0o700
        files = ("config.db", "config.db-wal", "config.db-shm", "admin.token", "server.lock")
        assert {name: oct(_mode(data / name)) for name in files} == {name: "0o600" for name in files}
    finally:
        server.stop()


def test_a_folder_the_operator_made_keeps_its_mode_and_is_warned_about(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "data").mkdir(mode=0o755)
    (root / "data").chmod(0o755)
    server = ServerProcess(root, "--no-sync", open_services=True).start()
    try:
        assert _mode(server.data_dir) == 0o755
        assert _mode(server.data_dir / "config.db") == 0o600
        assert "has mode 755" in server.log() and "chmod 700" in server.log()
    finally:
        server.stop()


def _serve(root: Path) -> subprocess.CompletedProcess[str]:
    """A second `tskcfg serve` on `root`'s data folder, run until it exits (at most 30 s)."""
    return subprocess.run(
        [
            str(TSKCFG), "serve", "--no-sync", "--host", "127.0.0.1", "--port", str(free_port()),
            "--data-dir", str(root / "data"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_second_server_on_the_same_data_folder_refuses_to_start(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    first = ServerProcess(root, "--no-sync", open_services=True).start()
    try:
        assert first.process is not None
        holder = first.process.pid
        second = _serve(root)
        assert second.returncode != 0
        assert str(root / "data") in second.stderr and f"process {holder}" in second.stderr, second.stderr
        assert httpx.get(first.url + "/health").status_code == 200
        # kill -9 runs no shutdown code; the kernel still drops the lock with the process.
        first.kill()
        again = ServerProcess(root, "--no-sync", open_services=True).start()
        try:
            with again.client(again.admin_token) as admin:
                assert admin.get("/v1/services").status_code == 200
        finally:
            again.stop()
    finally:
        first.stop()
