"""Writing data back as TSK text, so that `loads(dumps(x)) == x` for anything the parser makes."""

from __future__ import annotations

import math
import re
from typing import Any, Final

from config_service.tsk._types import EnvRef

IDENT_FULL_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# Characters a basic string must escape: the quote, the backslash and every control character.
NEEDS_ESCAPE_RE: Final = re.compile(r'["\\\x00-\x1f\x7f]')
CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
RESERVED_WORDS: Final = frozenset({"true", "false", "null"})
SHORT_ESCAPES: Final = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\b": "\\b",
    "\f": "\\f",
}
INDENT: Final = "    "


def dumps(data: dict[str, Any]) -> str:
    """Write data as a TSK document: top-level values, then one `[section]` per table."""
    if not isinstance(data, dict):
        raise TypeError(f"a TSK document is a dict, not {type(data).__name__}")
    lines: list[str] = []
    blocks: list[tuple[str, dict[str, Any]]] = []
    sections: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        _check_key(key)
        if not isinstance(value, dict):
            lines.append(f"{_key(key)}: {_value(value)}")
        elif IDENT_FULL_RE.match(key):
            sections.append((key, value))
        else:
            blocks.append((key, value))
    # A quoted name cannot be a [section] header: it is written as a block before the
    # first header, where it still belongs to the top level.
    for key, table in blocks:
        _write_block(lines, key, table, "")
    for name, table in sections:
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        _write_table(lines, table, "")
    return "\n".join(lines) + "\n" if lines else ""


def _write_table(lines: list[str], table: dict[str, Any], indent: str) -> None:
    for key, value in table.items():
        _check_key(key)
        if isinstance(value, dict):
            _write_block(lines, key, value, indent)
        else:
            lines.append(f"{indent}{_key(key)}: {_value(value)}")


def _write_block(lines: list[str], key: str, table: dict[str, Any], indent: str) -> None:
    lines.append(f"{indent}{_key(key)} {{")
    _write_table(lines, table, indent + INDENT)
    lines.append(f"{indent}}}")


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"keys must be strings, not {type(key).__name__}: {key!r}")
    if key.startswith("$"):
        raise ValueError(f"key {key!r} starts with '$', which TSK reserves for variables")


def _key(key: str) -> str:
    if IDENT_FULL_RE.match(key):
        return key
    return _basic(key)


def _value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written: JSON cannot carry inf or nan")
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = []
        for key, item in value.items():
            _check_key(key)
            items.append(f"{_key(key)}: {_value(item)}")
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, EnvRef):
        if value.has_default:
            return f"@env({_basic(value.name)}, {_value(value.default)})"
        return f"@env({_basic(value.name)})"
    raise TypeError(f"cannot write {type(value).__name__} as TSK: {value!r}")


def _string(text: str) -> str:
    """The shortest correct quoting for `text`."""
    if "\n" in text and not CONTROL_RE.search(text):
        if "\\" in text and "'''" not in text and not text.endswith("'"):
            return "'''\n" + text + "'''"
        if '"""' not in text and not text.endswith('"'):
            return '"""\n' + text.replace("\\", "\\\\") + '"""'
    if NEEDS_ESCAPE_RE.search(text) is None:
        return '"' + text + '"'
    if "'" not in text and "\n" not in text and not CONTROL_RE.search(text):
        return "'" + text + "'"
    return _basic(text)


def _basic(text: str) -> str:
    return '"' + NEEDS_ESCAPE_RE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"
