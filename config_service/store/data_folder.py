"""The server's data folder: created private (folder 0700, files 0600) and held by one process."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

LOCK_NAME = "server.lock"


class DataFolderInUse(Exception):
    """Another process holds the data folder: a second server on it would diverge silently."""

    def __init__(self, folder: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"the data folder {folder} is in use by {holder} (a tskcfg server holds "
            f"{folder / LOCK_NAME}); stop that server, or give this one another --data-dir"
        )
        self.folder = folder
        self.pid = pid


def make_private_folder(folder: Path) -> bool:
    """Create `folder` (and missing parents) with mode 0700; True when it was created.

    A folder that exists is left as it is: the operator chose its mode.
    """
    if folder.is_dir():
        return False
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return True


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (an empty file is a valid SQLite database)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)


def open_to_others(path: Path) -> int | None:
    """The mode of `path` when group or others may use it, else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & 0o077 else None


class DataFolderLock:
    """An exclusive `flock` on `<data folder>/server.lock`, which holds the holder's pid.

    The kernel drops it when the process ends, however it ends (kill -9 too), so a stale
    lock file never keeps a server from starting.
    """

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor releases the lock
            self._descriptor = None


def lock_data_folder(folder: Path) -> DataFolderLock:
    """Hold `folder` for this process, or raise DataFolderInUse naming the process holding it.

    One function, taken once per server: with several worker processes the parent takes it.
    """
    make_private_folder(folder)
    path = folder / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(descriptor)
        os.close(descriptor)
        raise DataFolderInUse(folder, holder) from None
    except BaseException:
        os.close(descriptor)
        raise
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    return DataFolderLock(path, descriptor)


def try_lock_file(path: Path, wait: bool = False) -> DataFolderLock | None:
    """An exclusive `flock` on `path` (made 0600, the holder's pid written in it), or None when
    another process holds it (`wait`: once it is released). Released by `release` or when the
    process ends."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(descriptor)
        return None
    except BaseException:
        os.close(descriptor)
        raise
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
    return DataFolderLock(path, descriptor)


def _read_pid(descriptor: int) -> int | None:
    text = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None
