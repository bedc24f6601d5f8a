"""Last-known-good files: written atomically, verified by hash on read, damage ignored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from clienttest import ROOT, SERVICE, wait_for
from flowtest import DOCUMENT

from config_service import tsk
from tskcfg._lkg import read_lkg, write_lkg

# ---------------------------------------------------------------------------- last-known-good


def test_lkg_round_trip_is_atomic_and_verified(tmp_path: Path) -> None:
    data = tsk.loads(DOCUMENT)
    path = tmp_path / "cache" / SERVICE / "development.json"
    wire = tsk.to_wire(data)
    write_lkg(
        path,
        service=SERVICE,
        environment="development",
        version=3,
        hash=tsk.document_hash(data),
        wire=wire,
    )
    assert [entry.name for entry in path.parent.iterdir()] == [
        "development.json"
    ]  # no temp file left
    stored = read_lkg(path, service=SERVICE, environment="development")
    assert stored is not None and stored["version"] == 3 and stored["config"] == wire
    assert read_lkg(path, service="other-service", environment="development") is None


def test_lkg_write_syncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync file")
        real_fsync(descriptor)

    def replace(source: Any, target: Any) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    data = tsk.loads("a: 1\n")
    write_lkg(
        tmp_path / SERVICE / "development.json",
        service=SERVICE,
        environment="development",
        version=1,
        hash=tsk.document_hash(data),
        wire=tsk.to_wire(data),
    )
    assert events == ["fsync file", "rename", "fsync dir"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace('"pool_size": 2', '"pool_size": 200'),  # tampered
        lambda text: "",
        lambda text: "[]",
        lambda text: '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}",  # nested past the stack
        lambda text: text.replace(
            '"config": {', '"config": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1
        ),
    ],
)
def test_a_damaged_lkg_file_is_ignored(
    tmp_path: Path, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    data = tsk.loads(DOCUMENT)
    path = tmp_path / "development.json"
    write_lkg(
        path,
        service=SERVICE,
        environment="development",
        version=1,
        hash=tsk.document_hash(data),
        wire=tsk.to_wire(data),
    )
    path.write_text(damage(path.read_text()))
    assert read_lkg(path, service=SERVICE, environment="development") is None
    assert "ignored" in caplog.text


LKG_WRITER = """
import sys
from pathlib import Path
from tskcfg._lkg import write_lkg
from config_service import tsk

path = Path(sys.argv[1])
documents = [tsk.loads(f"[bench]\\ncounter: {n}\\npadding: \\"{'x' * 20000}\\"\\n") for n in range(2)]
print("writing", flush=True)
for number in range(100000):
    data = documents[number % 2]
    write_lkg(path, service="user-service", environment="development", version=number + 1,
              hash=tsk.document_hash(data), wire=tsk.to_wire(data))
"""


def test_a_writer_killed_mid_write_leaves_a_whole_lkg_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "cache" / SERVICE / "development.json"
    process = subprocess.Popen(
        [sys.executable, "-c", LKG_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    # The first write may wait on a busy disk: kill only once there is a file to damage.
    wait_for(path.exists, timeout=10)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    stored = read_lkg(path, service=SERVICE, environment="development")
    assert stored is not None and stored["version"] >= 1
    assert stored["config"]["bench"]["counter"] == (stored["version"] - 1) % 2
    leftovers = [entry.name for entry in path.parent.iterdir() if entry.name != "development.json"]
    assert len(leftovers) <= 1  # at most the temporary file of the write that was cut short
