"""The wire form of TSK data (JSON, `@env` as `{"$env": ...}`), its canonical bytes and hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from config_service.tsk._types import MISSING, SURROGATE_RE, EnvRef, holds_env, json_pointer

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
    """The inverse of `to_wire`; raises ValueError on a `$` key that is not a well-formed `$env`,
    and on a lone surrogate (JSON's `"\\ud800"`), which no TSK document or hash can hold."""
    if isinstance(obj, str):
        if SURROGATE_RE.search(obj):
            raise ValueError(_surrogate_message(obj))
        return obj
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
            if SURROGATE_RE.search(key):
                raise ValueError(_surrogate_message(key))
            result[key] = from_wire(value)
        return result
    if isinstance(obj, list):
        return [from_wire(item) for item in obj]
    return obj


def canonical_json(data: Any) -> bytes:
    """Wire JSON with sorted keys and no insignificant whitespace, UTF-8 (docs/server.md, "Get")."""
    return _canonical(to_wire(data))


def document_hash(data: Any) -> str:
    """Hex SHA-256 of the canonical form: the same on the server and in every client."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


def wire_hash(wire: Any) -> str:
    """`document_hash` of data already in wire form (what `to_wire` returns, or JSON)."""
    return hashlib.sha256(_canonical(wire)).hexdigest()


def _canonical(wire: Any) -> bytes:
    text = json.dumps(
        wire, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        where = _surrogate_path(wire, [])
        raise ValueError(
            f"no canonical form: {_surrogate_message(text)}, at "
            f"{json_pointer(where or []) or 'the top level'}"
        ) from None


def _surrogate_message(text: str) -> str:
    found = SURROGATE_RE.search(text)
    code = ord(found.group()) if found is not None else 0
    return f"a string holds the lone surrogate U+{code:04X}, which is not Unicode text"


def _surrogate_path(value: Any, path: list[str | int]) -> list[str | int] | None:
    """Where the first lone surrogate stands (a key counts as its own place)."""
    if isinstance(value, str):
        return path if SURROGATE_RE.search(value) else None
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and SURROGATE_RE.search(key):
                return path
            items.append((key, item))
    elif isinstance(value, list):
        items = list(enumerate(value))
    for part, item in items:
        found = _surrogate_path(item, [*path, part])
        if found is not None:
            return found
    return None


def section_hashes(data: dict[str, Any]) -> dict[str, str]:
    """One hash per top-level key, so a client applies only the sections that changed."""
    return {key: document_hash(value) for key, value in data.items()}
