"""Writing data back as TSK text, so that `loads(dumps(x)) == x` for anything the parser makes."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
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


@dataclass
class Note:
    """Comments kept with one key or table when `tsk.format` rewrites a document."""

    leading: list[str] = field(default_factory=list)  # comment lines above it
    trailing: str | None = None  # the comment at the end of its line
    closing: list[str] = field(default_factory=list)  # a table's last lines, before it ends
    following: list[str] = field(default_factory=list)  # comment lines just below it
    closer: str | None = None  # the comment after a block's closing `}`
    blank_before: bool = False  # a blank line stood above it (or above its comments)


@dataclass
class Notes:
    """Every kept comment of a document: by path (keys from the root), plus its head and foot."""

    by_path: dict[tuple[str, ...], Note] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)

    def at(self, path: tuple[str, ...]) -> Note:
        note = self.by_path.get(path)
        if note is None:
            note = self.by_path[path] = Note()
        return note


def dumps(data: dict[str, Any]) -> str:
    """Write data as a TSK document: top-level values, then one `[section]` per table."""
    return write(data, None)


def write(data: dict[str, Any], notes: Notes | None) -> str:
    """`dumps`, with the comments in `notes` put back beside the keys they belong to."""
    if not isinstance(data, dict):
        raise TypeError(f"a TSK document is a dict, not {type(data).__name__}")
    writer = _Writer(notes)
    return writer.document(data)


class _Writer:
    def __init__(self, notes: Notes | None) -> None:
        self.lines: list[str] = []
        self.notes = notes
        self.fresh = True  # nothing written yet in the current table
        self.statement_end = 0  # how many lines there were after the last statement's line

    def document(self, data: dict[str, Any]) -> str:
        lines = self.lines
        notes = self.notes
        if notes is not None and notes.header:
            lines.extend(notes.header)
            lines.append("")
        blocks: list[tuple[str, dict[str, Any]]] = []
        sections: list[tuple[str, dict[str, Any]]] = []
        for key, value in data.items():
            _check_key(key)
            if not isinstance(value, dict):
                self.item((key,), f"{_key(key)}: {_value(value)}", "")
                self.following((key,), "")
            elif IDENT_FULL_RE.match(key):
                sections.append((key, value))
            else:
                blocks.append((key, value))
        # A quoted name cannot be a [section] header: it is written as a block before the
        # first header, where it still belongs to the top level.
        for key, table in blocks:
            self.block((key,), key, table, "")
        self.closing((), "")
        for name, table in sections:
            if lines and lines[-1] != "":
                lines.append("")
            self.fresh = True
            self.item((name,), f"[{name}]", "")
            self.fresh = True
            self.table((name,), table, "")
            self.closing((name,), "")
            note = notes.by_path.get((name,)) if notes is not None else None
            if note is not None and note.closer is not None:
                # A top-level block written as a [section] has no closing line to carry
                # the closer's comment: it ends the section on a line of its own.
                lines.append(note.closer)
            self.following((name,), "")
        if notes is not None and notes.footer:
            if lines and lines[-1] != "":
                lines.append("")
            lines.extend(notes.footer)
        end = self.statement_end
        if 0 < end < len(lines) and lines[end] != "":
            # Comment lines that end the file are read back as its foot, which stands
            # apart: so they do here too (else a second run would move them).
            lines.insert(end, "")
        while lines and lines[-1] == "":  # a head comment with nothing below it
            lines.pop()
        return "\n".join(lines) + "\n" if lines else ""

    def item(self, path: tuple[str, ...], line: str, indent: str) -> None:
        """One line for `path`, with its comments when there are notes."""
        note = self.notes.by_path.get(path) if self.notes is not None else None
        if note is not None:
            if note.blank_before and not self.fresh and self.lines and self.lines[-1] != "":
                self.lines.append("")
            self.lines.extend(_indented(indent, note.leading))
            if note.trailing is not None:
                line += "  " + note.trailing
        self.lines.append(line)
        self.statement_end = len(self.lines)
        self.fresh = False

    def closing(self, path: tuple[str, ...], indent: str) -> None:
        note = self.notes.by_path.get(path) if self.notes is not None else None
        if note is not None and note.closing:
            self.lines.extend(_indented(indent, note.closing))

    def following(self, path: tuple[str, ...], indent: str) -> None:
        note = self.notes.by_path.get(path) if self.notes is not None else None
        if note is not None and note.following:
            self.lines.extend(_indented(indent, note.following))

    def table(self, path: tuple[str, ...], table: dict[str, Any], indent: str) -> None:
        for key, value in table.items():
            _check_key(key)
            if isinstance(value, dict):
                self.block((*path, key), key, value, indent)
            else:
                self.item((*path, key), f"{indent}{_key(key)}: {_value(value)}", indent)
                self.following((*path, key), indent)

    def block(self, path: tuple[str, ...], key: str, table: dict[str, Any], indent: str) -> None:
        self.item(path, f"{indent}{_key(key)} {{", indent)
        inner = indent + INDENT
        self.fresh = True
        self.table(path, table, inner)
        self.closing(path, inner)
        closer = f"{indent}}}"
        note = self.notes.by_path.get(path) if self.notes is not None else None
        if note is not None and note.closer is not None:
            closer += "  " + note.closer
        self.lines.append(closer)
        self.statement_end = len(self.lines)
        self.fresh = False
        self.following(path, indent)


def _indented(indent: str, comments: list[str]) -> list[str]:
    """Comment lines at `indent`; an empty string stands for a blank line kept between them."""
    return [indent + comment if comment else "" for comment in comments]


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
