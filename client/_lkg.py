"""Last-known-good files: each applied config, written atomically and verified by hash on read."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from config_service import tsk
from config_service.atomic_file import write_atomically

logger = logging.getLogger("tskcfg")


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "tskcfg"


def lkg_path(cache_dir: Path, service: str, environment: str) -> Path:
    return cache_dir / service / f"{environment}.json"


def write_lkg(
    path: Path,
    *,
    service: str,
    environment: str,
    version: int | None,
    hash: str,
    wire: dict[str, Any],
    schemas: dict[str, Any] | None = None,
) -> None:
    """Write `{service, environment, version, hash, config, schema}` so that a crash leaves the
    old file or the new one.

    `schema` holds the schemas the config was validated against, by name (the service's
    and the section schemas it refers to), or null when it was validated on the server only:
    a later start validates the cached config against them, exactly as a server answer.

    Temp file in the same directory, fsync, rename over the old one, fsync the directory:
    after a power cut the file is complete or absent, never half written.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = json.dumps(
        {
            "service": service,
            "environment": environment,
            "version": version,
            "hash": hash,
            "config": wire,
            "schema": schemas,
        },
        ensure_ascii=False,
        sort_keys=True,
    ).encode("utf-8")
    write_atomically(path, payload)


def read_lkg(path: Path, *, service: str, environment: str) -> dict[str, Any] | None:
    """The stored `{version, hash, config}` when the file is intact and its hash checks; else None.

    A missing file is normal; a damaged, tampered or foreign file is logged and ignored,
    never applied.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.warning("last-known-good %s cannot be read: %s", path, error)
        return None
    try:
        stored = json.loads(raw)
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise ValueError("not a last-known-good record")
        if stored.get("service") != service or stored.get("environment") != environment:
            raise ValueError(
                f"it belongs to {stored.get('service')!r}/{stored.get('environment')!r}"
            )
        version = stored.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValueError("its version is not an integer")
        actual = tsk.document_hash(tsk.from_wire(stored["config"]))
        if actual != stored.get("hash"):
            raise ValueError("its hash does not match its content")
    # RecursionError: nesting deeper than the parser's stack, which no real config has.
    except (ValueError, TypeError, RecursionError) as error:
        logger.warning("last-known-good %s ignored: %s", path, error)
        return None
    return stored
