"""Atomic file replacement: the new content with its mode, or the old file untouched."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config_service.atomic_file import replacing, write_atomically


def test_a_file_is_replaced_with_its_mode_and_nothing_left_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.tsk"
    path.write_text("old\n")
    write_atomically(path, b"new\n", mode=0o640)
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    write_atomically(tmp_path / "secret", b"s\n")
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["secret", "settings.tsk"]


def test_a_block_that_raises_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), replacing(path, b"new\n"):
        assert path.read_text() == "old\n"  # not published before the block ends
        raise RuntimeError("the store refused")
    assert path.read_text() == "old\n"
    assert [entry.name for entry in tmp_path.iterdir()] == ["admin.token"]
