"""docs/rollouts.md's walk-through, run as written: two instances of examples/user_service, a
rollout of a database URL one of them cannot apply, and the rollout going back on its own."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clienttest import ROOT, LiveServer, free_port, wait_for

APP = ROOT / "examples" / "user_service" / "app.py"
GUIDE = (ROOT / "docs" / "rollouts.md").read_text("utf-8")
DOCUMENT = ROOT / "environments" / "development" / "user-service.tsk"
TSKCFG = Path(sys.executable).with_name("tskcfg")


def guide_command(starting: str) -> str:
    """The walk-through's console command that starts with `starting` (continuation lines joined)."""
    for block in re.findall(r"```console\n(.*?)```", GUIDE, re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.startswith(f"$ {starting}"):
                return line[2:]
    raise AssertionError(f"docs/rollouts.md has no command starting {starting!r}")


@pytest.fixture
def instances(server: LiveServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The two instances the guide starts, by instance id: their URLs."""
    response = server.request(
        "PUT",
        "/v1/configs/user-service/development",
        content=DOCUMENT.read_bytes(),
        headers={"Content-Type": "text/x-tsk"},
    )
    assert response.status_code in (200, 201), response.text
    processes: list[subprocess.Popen[str]] = []
    urls: dict[str, str] = {}
    for name in ("web-1", "web-4"):
        line = guide_command(f"CONFIG_INSTANCE_ID={name} ")
        assert line.endswith("examples/user_service/app.py &")
        port = free_port()
        env = {
            **os.environ,
            "CONFIG_STORE": server.url,
            "CONFIG_TOKEN": server.token,
            "CONFIG_INSTANCE_ID": name,
            "PORT": str(port),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(APP)], cwd=tmp_path, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            )
        )
        urls[name] = f"http://127.0.0.1:{port}"

    def healthy(url: str) -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        for url in urls.values():
            wait_for(lambda url=url: healthy(url), timeout=20, step=0.05)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.communicate(timeout=10)


def test_the_walk_through_rolls_back_on_its_own(
    server: LiveServer, instances: dict[str, str], tmp_path: Path
) -> None:
    # The guide's sed, on the repository's document, makes the candidate.
    sed = guide_command("sed ")
    script = re.search(r"sed '(.*?)'", sed)
    assert script is not None
    candidate = subprocess.run(
        ["sed", script.group(1), str(DOCUMENT)], capture_output=True, text=True, check=True
    ).stdout
    assert 'url: "postgresql://db.internal:5432/users"' in candidate
    (tmp_path / "candidate.tsk").write_text(candidate, encoding="utf-8")
    wait_for(lambda: len(server.instances()) >= 2, timeout=10)

    start = shlex.split(guide_command(".venv/bin/tskcfg rollout start"))[1:]
    result = subprocess.run(
        [str(TSKCFG), "--server", server.url, "--token", server.token, *start],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "user-service/development: rollout 1 running at 50 % (step 1 of 2, steps 50/100); candidate version 2"
    )

    def rolled_back() -> str:
        status = subprocess.run(
            [str(TSKCFG), "--server", server.url, "--token", server.token,
             "rollout", "status", "user-service", "development"],
            capture_output=True, text=True, timeout=30,
        )
        return status.stdout if "rolled_back" in status.stdout else ""

    status = wait_for(rolled_back, timeout=20, step=0.2)
    assert "cohort applied 0, failed 1 (max 0)" in status
    assert "1 instance failed to apply version 2 (max_failed 0); last: web-4: " in status
    assert "sqlite:///" in status  # the example's own error, as web-4 reported it
    for url in instances.values():
        assert httpx.get(f"{url}/health").json()["config"]["version"] == 1
    listed = {item["instance_id"]: item for item in server.instances()}
    assert listed["web-4"]["status"] == "failed" and listed["web-4"]["failed_version"] == 2
    assert listed["web-1"]["version"] == 1 and listed["web-1"]["failed_version"] is None
