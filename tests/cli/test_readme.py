"""The README's first session and its service snippet, run as written (bash, python) against a real
server started the way `make run` starts it: in a copy of the repository, with its environments/ and
schemas/, data in ./data."""

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

from .conftest import ROOT, ServerProcess

README = (ROOT / "README.md").read_text("utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


@pytest.fixture()
def fresh_run(tmp_path: Path) -> Iterator[ServerProcess]:
    """`make run` in a fresh clone: the shipped documents and schemas, no data yet."""
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    # `. .venv/bin/activate`: this test's interpreter stands for the clone's virtual environment.
    activate = tmp_path / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'PATH="{Path(sys.executable).parent}{os.pathsep}$PATH"\nexport PATH\n', encoding="utf-8")
    process = ServerProcess(tmp_path).start()
    try:
        yield process
    finally:
        process.stop()


def run(script: str, server: ServerProcess) -> subprocess.CompletedProcess[str]:
    # The README's server is http://localhost:8005; this one listens on a free port.
    script = script.replace("localhost:8005", f"127.0.0.1:{server.port}")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(server.root),
        "TSKCFG_SERVER": server.url,
        "CONFIG_STORE": server.url,
    }
    return subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script],
        cwd=server.root, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_first_session_and_the_service_snippet_work_as_written(fresh_run: ServerProcess) -> None:
    session = blocks(section("A first session"), "sh")
    service_shell = blocks(section("In a service"), "sh")
    service_python = blocks(section("In a service"), "python")
    assert len(session) == 2 and len(service_shell) == 1 and len(service_python) == 1
    (fresh_run.root / "service.py").write_text(service_python[0], encoding="utf-8")

    result = run("\n".join([*session, *service_shell, "python service.py"]), fresh_run)
    assert result.returncode == 0, (result.stdout, result.stderr)
    output = result.stdout
    assert fresh_run.admin_token not in output + result.stderr
    # The CLI's push and the curl push each change something.
    assert re.search(r"^user-service/development: version 2 \(hash \w+\) created$", output, re.MULTILINE)
    assert "unchanged" not in output
    assert "~ /database/pool_size: 2 -> 4" in output
    curl_push = next(line for line in output.splitlines() if line.startswith("{") and '"version":2' in line)
    assert json.loads(curl_push)["message"] == "raise the pool"
    # The service, with its own reader token, loads the document pushed above.
    assert output.rstrip().splitlines()[-1] == "4"

    with fresh_run.client(fresh_run.admin_token) as admin:
        tokens = {item["name"]: item for item in admin.get("/v1/tokens").json()["tokens"]}
        production = admin.get("/v1/configs/user-service/production").json()
    reader = tokens["user-service-dev"]
    assert (reader["role"], reader["services"], reader["environments"]) == (
        "reader", ["user-service"], ["development"]
    )
    assert production["version"] == 2 and production["config"]["database"]["pool_size"] == 30
