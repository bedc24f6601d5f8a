"""Resolving `@env` references in the process that uses the config (never on the server)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final

from config_service.tsk._types import (
    EnvRef,
    TSKDecodeError,
    TSKResolveError,
    copy_data,
    holds_env,
    pointer_token,
)

INT_RE: Final = re.compile(r"[+-]?[0-9]+\Z")
FLOAT_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
TRUE_WORDS: Final = frozenset({"true", "1", "yes"})
FALSE_WORDS: Final = frozenset({"false", "0", "no"})


def resolve(data: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of `data` with every `EnvRef` replaced by its variable, converted to its default's type.

    Raises `TSKResolveError` (with `.name`) for an unset variable without default
    and for a value that does not convert.
    """
    env = os.environ if environ is None else environ
    return _resolve(data, env)


def _resolve(data: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(data, dict):
        return {key: _resolve(value, environ) for key, value in data.items()}
    if isinstance(data, list):
        return [_resolve(item, environ) for item in data]
    if isinstance(data, EnvRef):
        return resolve_reference(data, environ)
    return data


def resolve_reference(ref: EnvRef, environ: Mapping[str, str]) -> Any:
    """The value of one `@env` reference in `environ`."""
    raw = environ.get(ref.name)
    if raw is None:
        if ref.has_default:
            return copy_data(ref.default)
        raise TSKResolveError(
            ref.name,
            f"environment variable {ref.name} is not set and its @env has no default",
        )
    return convert(ref.name, raw.strip(), ref.default)


def convert(name: str, text: str, default: Any) -> Any:
    """`text` converted to the type of `default` (str when it is a string, null or missing)."""
    if isinstance(default, bool):
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise _unconvertible(name, text, "a boolean (true/false/1/0/yes/no)")
    if isinstance(default, int):
        if INT_RE.match(text) and len(text.lstrip("+-")) <= 19:
            return int(text)
        raise _unconvertible(name, text, "an integer")
    if isinstance(default, float):
        if FLOAT_RE.match(text):
            return float(text)
        raise _unconvertible(name, text, "a number")
    if isinstance(default, list | dict):
        expected = "an array" if isinstance(default, list) else "an object"
        return _inline_value(name, text, list if isinstance(default, list) else dict, expected)
    return text


def _inline_value(name: str, text: str, kind: type, expected: str) -> Any:
    from config_service.tsk._parser import loads  # a cycle at import time otherwise

    try:
        value = loads(f"value: {text}\n")["value"]
    except TSKDecodeError as error:
        raise TSKResolveError(
            name,
            f"environment variable {name} is {text!r}, expected {expected} written in TSK "
            f"({error.msg})",
        ) from None
    if not isinstance(value, kind) or holds_env(value):
        raise _unconvertible(name, text, f"{expected} written in TSK")
    return value


def _unconvertible(name: str, text: str, expected: str) -> TSKResolveError:
    return TSKResolveError(name, f"environment variable {name} is {text!r}, expected {expected}")


def validation_view(data: Any, skipped: list[str] | None = None) -> Any:
    """The data as the server validates it: each `@env` stands for its default.

    A reference without a default is left out (of its object, or of its array),
    and its JSON pointer is appended to `skipped` when given, so that a validator
    can skip that path, a missing required key included (docs/tsk.md, `@env`).
    """
    if isinstance(data, dict | list):
        return _validation_view(data, (), skipped)
    if isinstance(data, EnvRef):
        return copy_data(data.default)
    return data


def _validation_view(
    data: dict[str, Any] | list[Any], path: tuple[str | int, ...], skipped: list[str] | None
) -> Any:
    # Every push goes through here: a pointer is made only for a reference left out, and
    # values that are neither containers nor references are taken as they are.
    if isinstance(data, dict):
        view: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict | list):
                view[key] = _validation_view(value, (*path, key), skipped)
            elif not isinstance(value, EnvRef):
                view[key] = value
            elif value.has_default:
                view[key] = copy_data(value.default)
            elif skipped is not None:
                skipped.append(_pointer((*path, key)))
        return view
    items: list[Any] = []
    for index, item in enumerate(data):
        if isinstance(item, dict | list):
            items.append(_validation_view(item, (*path, index), skipped))
        elif not isinstance(item, EnvRef):
            items.append(item)
        elif item.has_default:
            items.append(copy_data(item.default))
        elif skipped is not None:
            skipped.append(_pointer((*path, index)))
    return items


def _pointer(path: tuple[str | int, ...]) -> str:
    """The JSON pointer of a path of keys and indexes."""
    return "".join(f"/{pointer_token(part) if isinstance(part, str) else part}" for part in path)
