"""`tskcfg rollout start|status|pause|resume|abort|complete` against a real `tskcfg serve`:
output for people, --json shapes, exit codes, and status --watch following the event stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import Server

ROLLOUT_KEYS = {
    "id", "service", "environment", "state", "candidate", "stable", "steps", "step", "percent",
    "bake_seconds", "max_failed", "started_at", "updated_at", "step_started_at", "baked_seconds",
    "counts", "reason", "author",
}


def document(server: Server, service: str) -> None:
    with server.http() as client:
        client.post("/v1/services", json={"service": service})
        response = client.put(
            f"/v1/configs/{service}/production", content=b"level = 1\n", headers={"Content-Type": "text/x-tsk"}
        )
        assert response.status_code == 201, response.text


def test_start_status_pause_resume_and_abort(server: Server, tmp_path: Path) -> None:
    document(server, "gradual")
    candidate = tmp_path / "new.tsk"
    candidate.write_text("level = 2\n", encoding="utf-8")
    started = server.cli(
        "rollout", "start", "gradual", "production", str(candidate),
        "--steps", "25,100", "--bake", "600", "--max-failed", "2", "-m", "level two",
    )
    assert started.exit_code == 0, started.output
    assert started.stdout.startswith("gradual/production: rollout 1 running at 25 % (step 1 of 2, steps 25/100)")
    assert "candidate version 2" in started.stdout and "failed 0 (max 2)" in started.stdout
    status = server.cli("--json", "rollout", "status", "gradual", "production")
    assert status.exit_code == 0
    body = json.loads(status.stdout)
    assert set(body) == ROLLOUT_KEYS
    assert (body["state"], body["steps"], body["bake_seconds"], body["max_failed"]) == ("running", [25, 100], 600, 2)
    paused = server.cli("rollout", "pause", "gradual", "production")
    assert paused.exit_code == 0 and " paused at 25 %" in paused.stdout
    again = server.cli("rollout", "pause", "gradual", "production")
    assert again.exit_code == 1 and "paused already" in again.stderr
    resumed = server.cli("rollout", "resume", "gradual", "production", "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["state"] == "running"
    refused = server.cli("push", "gradual", "production", "-", input="level = 3\n")
    assert refused.exit_code == 1 and "rollout 1" in refused.stderr
    aborted = server.cli("rollout", "abort", "gradual", "production")
    assert aborted.exit_code == 0 and "rollout 1 aborted" in aborted.stdout and "aborted by admin" in aborted.stdout
    finished = server.cli("rollout", "status", "gradual", "production", "--watch")
    assert finished.exit_code == 0 and "aborted" in finished.stdout  # over: --watch returns at once


def test_start_from_a_version_or_a_promotion_and_complete(server: Server) -> None:
    document(server, "promoted")
    with server.http() as client:
        client.put("/v1/configs/promoted/staging", content=b"level = 5\n", headers={"Content-Type": "text/x-tsk"})
    started = server.cli("--json", "rollout", "start", "promoted", "production", "--from", "staging", "--bake", "600")
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["candidate"]["version"] == 2
    completed = server.cli("rollout", "complete", "promoted", "production")
    assert completed.exit_code == 0 and "completed" in completed.stdout
    source = server.cli("get", "promoted", "production")
    assert source.stdout == "level = 5\n"
    again = server.cli("rollout", "start", "promoted", "production", "--version", "1", "--steps", "100", "--bake", "600")
    assert again.exit_code == 0 and "candidate version 3" in again.stdout


def test_bad_arguments_exit_with_usage_or_refused(server: Server, tmp_path: Path) -> None:
    document(server, "refusing")
    neither = server.cli("rollout", "start", "refusing", "production")
    assert neither.exit_code == 2 and "one of FILE, --version N or --from ENV" in neither.output
    steps = server.cli("rollout", "start", "refusing", "production", "--version", "1", "--steps", "50,10,100")
    assert steps.exit_code == 2 and "'steps' must increase" in steps.stderr  # a 400 is a usage error
    words = server.cli("rollout", "start", "refusing", "production", "--version", "1", "--steps", "ten")
    assert words.exit_code == 2 and "10,50,100" in words.output
    broken = tmp_path / "broken.tsk"
    broken.write_text("level = \n", encoding="utf-8")
    invalid = server.cli("rollout", "start", "refusing", "production", str(broken))
    assert invalid.exit_code == 1 and "broken.tsk:1:" in invalid.stderr
    none = server.cli("rollout", "abort", "refusing", "production")
    assert none.exit_code == 1 and "no running or paused rollout" in none.stderr
    missing = server.cli("rollout", "status", "refusing", "production")
    assert missing.exit_code == 1


def test_status_watch_follows_until_the_rollout_ends(server: Server) -> None:
    document(server, "followed")
    started = server.cli("rollout", "start", "followed", "production", "--version", "1", "--steps", "50,100", "--bake", "600")
    assert started.exit_code == 1  # version 1 is the current source: nothing to roll out
    with server.http() as client:
        response = client.post(
            "/v1/configs/followed/production/rollouts",
            json={"source": "level = 2\n", "steps": [50, 100], "bake_seconds": 1.5},
        )
        assert response.status_code == 201, response.text
    watcher = subprocess.run(
        [
            str(Path(sys.executable).with_name("tskcfg")), "--server", server.url, "--token", server.admin_token,
            "rollout", "status", "followed", "production", "--watch", "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert watcher.returncode == 0, watcher.stderr
    lines = [json.loads(line) for line in watcher.stdout.splitlines()[1:] if line.startswith("{")]
    first = json.loads("\n".join(watcher.stdout.splitlines()[: watcher.stdout.splitlines().index("}") + 1]))
    assert first["state"] == "running"
    seen = [(first["state"], first["percent"])] + [(line["state"], line["percent"]) for line in lines]
    # Each change once, in order, ending with the completion (the command then returns).
    assert seen[-1] == ("completed", 100)
    assert seen == sorted(set(seen), key=[("running", 50), ("running", 100), ("completed", 100)].index)
