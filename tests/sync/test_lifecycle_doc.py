"""docs/lifecycle.md's example of a sync conflict and both ways out of it, run as written (bash)
against a real server started the way `make run` starts it: in a copy of the repository's
environments/ and schemas/, with its real file watcher."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import REPOSITORY, ServerProcess

LIFECYCLE = (REPOSITORY / "docs" / "lifecycle.md").read_text("utf-8")


def _example() -> str:
    start = LIFECYCLE.index("\n### One source of truth per document\n")
    end = LIFECYCLE.index("\n## ", start)
    (script,) = re.findall(r"```sh\n(.*?)```", LIFECYCLE[start:end], re.DOTALL)
    return str(script)


@pytest.fixture
def fresh_run(tmp_path: Path) -> Iterator[ServerProcess]:
    shutil.copytree(REPOSITORY / "environments", tmp_path / "environments")
    shutil.copytree(REPOSITORY / "schemas", tmp_path / "schemas")
    process = ServerProcess(tmp_path).start()
    try:
        yield process
    finally:
        process.stop()


def test_the_sync_conflict_example_works_as_written(fresh_run: ServerProcess) -> None:
    script = _example().replace("localhost:8005", f"127.0.0.1:{fresh_run.port}")
    result = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script],
        cwd=fresh_run.root,
        env={
            # This test's interpreter stands for the checkout's virtual environment.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(fresh_run.root),
            "TSKCFG_SERVER": fresh_run.url,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    output = result.stdout
    tables = [line.split() for line in output.splitlines() if line.startswith("user-service ")]
    assert tables[0] == ["user-service", "v1", "file", "v2", "CONFLICT", "v1", "file"], output
    assert tables[-1] == ["user-service", "v1", "file", "v4", "file", "v1", "file"], output
    assert "user-service/staging: sync conflict: staging/user-service.tsk changed" in output
    listing = json.loads(next(line for line in output.splitlines() if line.startswith('{"services"')))
    assert listing["services"][0]["environments"]["staging"]["sync"] == {
        "state": "conflict", "file": "staging/user-service.tsk", "file_version": 1, "current_version": 2
    }
    assert "user-service/staging: the file is now version 3" in output
    with fresh_run.client(fresh_run.admin_token) as admin:
        history = admin.get("/v1/configs/user-service/staging/versions").json()["versions"]
        assert [(entry["version"], entry["kind"]) for entry in history] == [
            (4, "push"), (3, "sync"), (2, "push"), (1, "sync")
        ]
        conflicts = admin.get("/v1/audit", params={"action": "sync_conflict"}).json()["entries"]
        assert [entry["detail"]["current_version"] for entry in conflicts] == [4, 2]
        taken = admin.get("/v1/audit", params={"action": "sync_take_file"}).json()["entries"]
        assert [entry["version"] for entry in taken] == [3]
