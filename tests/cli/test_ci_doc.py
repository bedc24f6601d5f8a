"""The pipeline in docs/ci.md, run as written (bash) against a real server with a scoped CI token."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Server

STAGE = re.compile(r"```sh\n# stage: (?P<name>[a-z-]+)\n(?P<script>.*?)```", re.DOTALL)


def stages() -> dict[str, str]:
    text = (ROOT / "docs" / "ci.md").read_text("utf-8")
    return {match["name"]: match["script"] for match in STAGE.finditer(text)}


def run_stage(script: str, checkout: Path, server: Server, token: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(checkout),
        "TSKCFG_SERVER": server.url,
        "TSKCFG_TOKEN": token,
        "CI_COMMIT_SHA": "3f2a9c1",
    }
    return subprocess.run(
        ["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "environments", tmp_path / "environments")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    return tmp_path


def ci_token(server: Server) -> str:
    result = server.cli(
        "token", "create", "ci", "--role", "writer", "--service", "*",
        "--env", "development", "--env", "staging",
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_the_documented_pipeline_runs_as_written(server: Server, checkout: Path) -> None:
    scripts = stages()
    assert list(scripts) == ["pull-request", "merge", "promote-staging"]
    token = ci_token(server)

    for name in scripts:
        result = run_stage(scripts[name], checkout, server, token)
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        assert token not in result.stdout + result.stderr

    development = json.loads(server.cli("get", "user-service", "development", "--json").stdout)
    staging = json.loads(server.cli("get", "user-service", "staging", "--json").stdout)
    assert development["message"] == "3f2a9c1"
    assert staging["promoted_from"] == {"environment": "development", "version": development["version"]}
    # Staging got development's document with its own environment-local values kept.
    assert staging["kept_local"] and "/database/url" in staging["kept_local"]
    assert "db.staging.internal" in staging["config"]["database"]["url"]["default"]
    assert staging["config"]["version"] == development["config"]["version"]

    # Running the merge and promote stages again creates nothing new: staging has its first
    # push (its own values) and the promotion.
    for name in ("merge", "promote-staging"):
        assert run_stage(scripts[name], checkout, server, token).returncode == 0
    history = json.loads(server.cli("history", "user-service", "staging", "--json").stdout)
    assert [version["kind"] for version in history["versions"]] == ["promote", "push"]

    # The CI token cannot reach production.
    refused = server.cli("promote", "user-service", "--from", "staging", "--to", "production", token=token)
    assert refused.exit_code == 1


def test_a_broken_document_fails_the_pull_request_stage(server: Server, checkout: Path) -> None:
    path = checkout / "environments" / "staging" / "user-service.tsk"
    path.write_text(path.read_text("utf-8").replace("ttl: 120", "ttl: -5"), encoding="utf-8")
    result = run_stage(stages()["pull-request"], checkout, server, ci_token(server))
    assert result.returncode == 1
    assert "environments/staging/user-service.tsk: /cache/ttl: -5 is less than the minimum of 0" in result.stderr
