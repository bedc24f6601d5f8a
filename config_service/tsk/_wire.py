"""The wire form of TSK data (JSON, `@env` as `{"$env": ...}`), its canonical bytes and hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from config_service.tsk._types import MISSING, EnvRef, holds_env

ENV_KEY = "$env"
DEFAULT_KEY = "default"


def to_wire(data: Any) -> Any:
    """Plain JSON-ready data: every `EnvRef` becomes `{"$env": name, "default": value}`."""
    if isinstance(data, dict):
        return {key: to_wire(value) for key, value in data.items()}
    if isinstance(data, list):
        return [to_wire(item) for item in data]
    if isinstance(data, EnvRef):
        if data.has_default:
            return {ENV_KEY: data.name, DEFAULT_KEY: to_wire(data.default)}
        return {ENV_KEY: data.name}
    return data


def from_wire(obj: Any) -> Any:
    """The inverse of `to_wire`; raises ValueError on a `$` key that is not a well-formed `$env`."""
    if isinstance(obj, dict):
        if ENV_KEY in obj:
            extra = set(obj) - {ENV_KEY, DEFAULT_KEY}
            if extra:
                raise ValueError(
                    f"an $env object holds only '$env' and 'default', not {sorted(extra)}"
                )
            name = obj[ENV_KEY]
            if not isinstance(name, str):
                raise ValueError(f"'$env' must be a string, not {type(name).__name__}")
            default = from_wire(obj[DEFAULT_KEY]) if DEFAULT_KEY in obj else MISSING
            if holds_env(default):
                raise ValueError(f"the default of $env {name!r} holds another $env")
            return EnvRef(name, default)
        result = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"keys must be strings, not {type(key).__name__}")
            if key.startswith("$"):
                raise ValueError(f"key {key!r} starts with '$', which is reserved")
            result[key] = from_wire(value)
        return result
    if isinstance(obj, list):
        return [from_wire(item) for item in obj]
    return obj


def canonical_json(data: Any) -> bytes:
    """Wire JSON with sorted keys and no insignificant whitespace, UTF-8 (TSK.md section 5)."""
    return _canonical(to_wire(data))


def document_hash(data: Any) -> str:
    """Hex SHA-256 of the canonical form: the same on the server and in every client."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


def wire_hash(wire: Any) -> str:
    """`document_hash` of data already in wire form (what `to_wire` returns, or JSON)."""
    return hashlib.sha256(_canonical(wire)).hexdigest()


def _canonical(wire: Any) -> bytes:
    return json.dumps(
        wire, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def section_hashes(data: dict[str, Any]) -> dict[str, str]:
    """One hash per top-level key, so a client applies only the sections that changed."""
    return {key: document_hash(value) for key, value in data.items()}
