"""Replacing a file atomically: a crash leaves the old file or the new one, never half of either.

Standard library only: the server (the admin token file), the CLI (`tskcfg fmt`) and the
client (last-known-good files) all write through it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` (file mode `mode`): see `replacing`."""
    with replacing(path, data, mode):
        pass


@contextmanager
def replacing(path: Path, data: bytes, mode: int = 0o600) -> Iterator[None]:
    """Write `data` to a temporary file beside `path` and fsync it, run the block, then rename
    the file over `path` and fsync the folder.

    When the block raises, the temporary file is removed and `path` is left as it was: a
    caller that must record something first (a token whose secret the file holds) does it in
    the block, so no file ever names what was not recorded.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        yield
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # The rename is durable once the folder is: after a power cut the file is complete or absent.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
