"""No server: the local TSK file, hot-reloaded with watchfiles, in this process and in a real one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clienttest import ROOT, SERVICE, document_path, wait_for

from tskcfg import AsyncConfigClient, ConfigClient, ConfigError


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_files_mode_applies_edits_and_skips_broken_ones(
    environments: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = document_path(environments, "staging")
    client = ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files")
    limits: list[Any] = []
    client.on("features")(lambda new, old: limits.append(new["rate_limit_per_minute"]))
    with client:
        first = client.config
        assert first.source == "file" and first.version is None
        edit(path, "rate_limit_per_minute: 1200", "rate_limit_per_minute: 5")
        wait_for(lambda: client.config.get("features.rate_limit_per_minute") == 5)
        applied_hash = client.config.hash

        edit(path, "pool_size: 10", "pool_size: [")  # does not parse
        wait_for(lambda: "not applied" in caplog.text)
        assert client.config.hash == applied_hash
        assert f"{path}:" in caplog.text  # the message carries file, line and column

        edit(path, "pool_size: [", "pool_size: 6")
        wait_for(lambda: client.config.get("database.pool_size") == 6)
    assert limits[0] == 1200 and limits[1] == 5
    assert client.config.get("database.pool_size") == 6


def test_files_mode_without_the_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        ConfigClient(SERVICE, "staging", environments_dir=tmp_path, mode="files").load()


def test_async_files_mode_follows_the_file(environments: Path) -> None:
    async def scenario() -> None:
        path = document_path(environments, "staging")
        async with AsyncConfigClient(
            SERVICE, "staging", environments_dir=environments, mode="files"
        ) as client:
            edit(path, "ttl: 120", "ttl: 121")

            async def changed() -> None:
                while client.cache.ttl != 121:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(changed(), 5)

    assert "ttl: 120" in document_path(environments, "staging").read_text()
    asyncio.run(scenario())


WATCHER = """
import json, logging, sys, time
from tskcfg import load_config

config = load_config("user-service", watch_files=True)
root = logging.getLogger()

def state():
    return {
        "port": config["port"],
        "root": logging.getLevelName(root.level),
        "http": logging.getLevelName(logging.getLogger("user_service.http").level),
        "format": root.handlers[0].formatter._fmt,
    }

print(json.dumps(state()), flush=True)
deadline = time.monotonic() + 15
while root.level == logging.INFO and time.monotonic() < deadline:
    time.sleep(0.01)
print(json.dumps(state()), flush=True)
"""


def test_watch_files_reloads_logging_in_a_real_process(environments: Path) -> None:
    path = document_path(environments, "staging")
    env = {**os.environ, "SERVICE_ENV": "staging", "PORT": "9200", "PYTHONPATH": str(ROOT)}
    env.pop("CONFIG_STORE", None)
    process = subprocess.Popen(
        [sys.executable, "-c", WATCHER],
        cwd=environments.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        before = json.loads(process.stdout.readline())
        assert before["port"] == 9200  # @env resolved in the service's own process, typed
        assert before["root"] == "INFO"
        edit(path, "pool_size: 10", "pool_size: 10 10")  # broken: logged, not applied
        time.sleep(0.3)
        edit(path, "pool_size: 10 10", "pool_size: 10")
        edit(path, 'level: "INFO"', 'level: "ERROR"')
        edit(path, "%(asctime)s %(levelname)s", "[%(levelname)s]")
        after = json.loads(process.stdout.readline())
        _, errors = process.communicate(timeout=15)
    finally:
        process.kill()
    assert after["root"] == "ERROR" and after["format"].startswith("[%(levelname)s]")
    assert after["http"] == before["http"]
    assert re.search(
        r"staging/user-service\.tsk:22:\d+: .* not applied|not applied: .*staging/user-service\.tsk:22:\d+: ",
        errors,
    ), errors


def test_a_stopped_client_does_not_start_again(environments: Path) -> None:
    client = ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files")
    with client:
        assert client.config.source == "file"
    with pytest.raises(RuntimeError, match="make a new one"):
        client.start()


def test_a_file_that_cannot_be_read_for_a_moment_does_not_end_the_watch(
    environments: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = document_path(environments, "staging")
    text = path.read_text(encoding="utf-8")
    with ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files") as client:
        path.unlink()
        path.mkdir()  # a directory where the document was: reading it fails with an OSError
        wait_for(lambda: "not applied" in caplog.text)
        path.rmdir()
        path.write_text(text.replace("pool_size: 10", "pool_size: 4"), encoding="utf-8")
        wait_for(lambda: client.config.get("database.pool_size") == 4)


def with_schemas(environments: Path) -> Path:
    """The project's schemas in `schemas/` beside `environments/`, where files mode looks for them."""
    import shutil

    target = environments.parent / "schemas"
    shutil.copytree(ROOT / "schemas", target)
    return target


def test_files_mode_validates_edits_against_the_schemas_beside_the_environments(
    environments: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with_schemas(environments)
    path = document_path(environments, "staging")
    with ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files") as client:
        first = client.config
        edit(path, "pool_size: 10", "pool_size: 0")  # the server refuses it: minimum 1
        wait_for(lambda: "not applied" in caplog.text)
        assert client.config is first
        assert "/database/pool_size" in caplog.text
        assert f"file {path}" in caplog.text and "version None" not in caplog.text
        edit(path, "pool_size: 0", "pool_size: 4")
        wait_for(lambda: client.config.get("database.pool_size") == 4)


def test_files_mode_refuses_an_invalid_file_at_start_naming_it(environments: Path) -> None:
    from tskcfg import InvalidConfig

    with_schemas(environments)
    path = document_path(environments, "staging")
    edit(path, "pool_size: 10", "pool_size: 0")
    with pytest.raises(InvalidConfig) as caught:
        ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files").load()
    assert str(caught.value).startswith(f"file {path} does not pass the {SERVICE} schema")
    assert caught.value.details[0]["path"] == "/database/pool_size"


def test_files_mode_takes_the_schemas_from_schemas_dir(environments: Path, tmp_path: Path) -> None:
    from tskcfg import InvalidConfig

    elsewhere = with_schemas(environments).rename(tmp_path / "elsewhere")
    edit(document_path(environments, "staging"), "pool_size: 10", "pool_size: 0")
    # Without schemas there is nothing to check against: the file is applied as it is.
    assert ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files").load()
    with pytest.raises(InvalidConfig, match="/database/pool_size"):
        ConfigClient(
            SERVICE, "staging", environments_dir=environments, schemas_dir=elsewhere, mode="files"
        ).load()


def test_files_mode_refuses_a_schema_the_server_would_refuse(environments: Path) -> None:
    from tskcfg import InvalidConfig

    schemas = with_schemas(environments)
    (schemas / f"{SERVICE}.json").write_text('{"type": "no-such-type"}')
    with pytest.raises(InvalidConfig, match=f"{SERVICE}.json"):
        ConfigClient(SERVICE, "staging", environments_dir=environments, mode="files").load()
