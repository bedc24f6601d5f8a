"""The values and errors of the TSK data model: EnvRef, MISSING and the two error types."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# A lone surrogate is no Unicode text: it has no UTF-8 form, so no document or hash can hold it.
SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")


class _Missing:
    """The type of `MISSING`: an `@env` reference without a default."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class EnvRef:
    """`@env("NAME", default)`: an environment variable of the process that loads the config.

    The server stores and serves it unresolved; `tsk.resolve` replaces it in the
    service's own process.
    """

    name: str
    default: Any = MISSING

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not ENV_NAME_RE.match(self.name):
            raise ValueError(
                f"invalid environment variable name {self.name!r}: "
                "it must match [A-Za-z_][A-Za-z0-9_]*"
            )

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def __repr__(self) -> str:
        if self.has_default:
            return f"EnvRef({self.name!r}, {self.default!r})"
        return f"EnvRef({self.name!r})"


class TSKDecodeError(ValueError):
    """A TSK document that is not valid; says where (line and column) and what is wrong."""

    def __init__(
        self,
        msg: str,
        doc: str,
        pos: int,
        *,
        lineno: int | None = None,
        colno: int | None = None,
    ) -> None:
        if lineno is None or colno is None:
            lineno = doc.count("\n", 0, pos) + 1
            colno = pos - doc.rfind("\n", 0, pos)
        self.msg = msg
        self.doc = doc
        self.pos = pos
        self.lineno = lineno
        self.colno = colno
        super().__init__(f"line {lineno}, column {colno}: {msg}")

    def __reduce__(self) -> Any:
        return (
            _rebuild_decode_error,
            (self.msg, self.doc, self.pos, self.lineno, self.colno),
        )


def _rebuild_decode_error(msg: str, doc: str, pos: int, lineno: int, colno: int) -> TSKDecodeError:
    return TSKDecodeError(msg, doc, pos, lineno=lineno, colno=colno)


class TSKResolveError(ValueError):
    """An `@env` reference that cannot be resolved: unset without default, or not convertible."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


def pointer_token(key: str) -> str:
    """One JSON pointer reference token (RFC 6901): `~` becomes `~0`, `/` becomes `~1`."""
    return key.replace("~", "~0").replace("/", "~1")


def pointer_key(token: str) -> str:
    """The key one JSON pointer reference token stands for: `~1` becomes `/`, `~0` becomes `~`."""
    return token.replace("~1", "/").replace("~0", "~")


def pointer_parts(pointer: str) -> list[str]:
    """The reference tokens of a JSON pointer (RFC 6901), each as the key it stands for;
    ValueError (saying why) for text that is not a pointer: it must be "" or start with "/",
    and `~` must be followed by 0 or 1."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/', like /database/pool_size, not {pointer!r}")
    tokens = pointer[1:].split("/")
    for token in tokens:
        if "~" in token.replace("~0", "").replace("~1", ""):
            raise ValueError(f"in a JSON pointer '~' must be followed by 0 or 1 ({pointer!r})")
    return [pointer_key(token) for token in tokens]


def value_at(data: Any, parts: Iterable[str]) -> tuple[bool, Any]:
    """(True, the value) at the pointer `parts` of JSON-like data, or (False, None) when it
    has none; list items by index (`0`, `12`; no sign or leading zero)."""
    for part in parts:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and part.isascii() and (part == "0" or part[0] != "0"):
            index = int(part)
            if index >= len(data):
                return False, None
            data = data[index]
        else:
            return False, None
    return True, data


def json_pointer(parts: Iterable[str | int]) -> str:
    """The JSON pointer (RFC 6901) of a path of keys and indexes; `""` for the document itself."""
    return "".join(f"/{pointer_token(part) if isinstance(part, str) else part}" for part in parts)


def copy_data(value: Any) -> Any:
    """A deep copy of parsed data (dicts and lists; leaves are immutable)."""
    if isinstance(value, dict):
        return {key: copy_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_data(item) for item in value]
    return value


def holds_env(value: Any) -> bool:
    """Whether `value` is or contains an `EnvRef`."""
    if isinstance(value, EnvRef):
        return True
    if isinstance(value, dict):
        return any(holds_env(item) for item in value.values())
    if isinstance(value, list):
        return any(holds_env(item) for item in value)
    return False
