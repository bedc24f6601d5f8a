"""Writing data back as TSK text, so that `loads(dumps(x)) == x` for anything the parser makes.

What `loads` would refuse, `dumps` refuses too, with a ValueError naming where it stands:
integers outside 64 bits, inf and nan, nesting deeper than `MAX_DEPTH`, more than
`MAX_VALUES` values, text longer than `MAX_CHARS`, lone surrogates, an `@env` inside an
`@env` default, and keys starting with `$`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Final

from config_service.tsk._parser import (
    INT64_MAX,
    INT64_MIN,
    MAX_CHARS,
    MAX_DEPTH,
    MAX_VALUES,
    VariableUse,
)
from config_service.tsk._types import SURROGATE_RE, EnvRef, json_pointer

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
    """Every kept comment of a document: by path (keys from the root), plus its head and foot.

    `definitions`: the `$variables` to write back, by (table path, key they follow; None at
    the table's start), each as (name, value); their comments are under `(*table, "$name")`.
    """

    by_path: dict[tuple[str, ...], Note] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    definitions: dict[tuple[tuple[str, ...], str | None], list[tuple[str, Any]]] = field(
        default_factory=dict
    )

    def at(self, path: tuple[str, ...]) -> Note:
        note = self.by_path.get(path)
        if note is None:
            note = self.by_path[path] = Note()
        return note


class UsedBeforeDefinition(Exception):
    """The canonical order would put a use of `$name` above its definition."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Unwritable(ValueError):
    """Data `loads` would not read back; `path` gathers the keys and indexes on the way out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []  # innermost first


def dumps(data: dict[str, Any]) -> str:
    """Write data as a TSK document: top-level values, then one `[section]` per table.

    ValueError for data that `loads` would not read back (see the module's docstring).
    """
    return write(data, None)


def write(data: dict[str, Any], notes: Notes | None) -> str:
    """`dumps`, with the comments in `notes` put back beside the keys they belong to."""
    if not isinstance(data, dict):
        raise TypeError(f"a TSK document is a dict, not {type(data).__name__}")
    writer = _Writer(notes)
    try:
        text = writer.document(data)
    except _Unwritable as error:
        where = json_pointer(error.path[::-1]) or "the top level"
        raise ValueError(f"cannot write this data as TSK: {error.reason}, at {where}") from None
    if len(text) > MAX_CHARS:
        raise ValueError(
            f"cannot write this data as TSK: document too large: {len(text)} characters, "
            f"the limit is {MAX_CHARS}"
        )
    return text


class _Writer:
    def __init__(self, notes: Notes | None) -> None:
        self.lines: list[str] = []
        self.notes = notes
        self.fresh = True  # nothing written yet in the current table
        self.statement_end = 0  # how many lines there were after the last statement's line
        self.values = 0  # values written, counted as `loads` counts them
        self.defined: set[str] = set()  # the $variables written so far

    def document(self, data: dict[str, Any]) -> str:
        lines = self.lines
        notes = self.notes
        if notes is not None and notes.header:
            lines.extend(notes.header)
            lines.append("")
        self.definitions((), None, "", 0)
        blocks: list[tuple[str, dict[str, Any]]] = []
        sections: list[tuple[str, dict[str, Any]]] = []
        for key, value in data.items():
            key_text = _key(key)
            try:
                if not isinstance(value, dict):
                    self.item((key,), f"{key_text}: {self.value(value, 0)}", "")
                    self.following((key,), "")
                    self.definitions((), key, "", 0)
                elif IDENT_FULL_RE.match(key):
                    sections.append((key, value))
                else:
                    blocks.append((key, value))
            except _Unwritable as error:
                error.path.append(key)
                raise
        # A quoted name cannot be a [section] header: it is written as a block before the
        # first header, where it still belongs to the top level.
        for key, table in blocks:
            try:
                self.block((key,), key, table, "", 1)
            except _Unwritable as error:
                error.path.append(key)
                raise
        self.closing((), "")
        for name, table in sections:
            if lines and lines[-1] != "":
                lines.append("")
            self.fresh = True
            self.item((name,), f"[{name}]", "")
            self.fresh = True
            try:
                self.table((name,), table, "", 1)
            except _Unwritable as error:
                error.path.append(name)
                raise
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

    def table(self, path: tuple[str, ...], table: dict[str, Any], indent: str, depth: int) -> None:
        """The keys of a table that stands `depth` levels deep (a [section] is 1)."""
        self.definitions(path, None, indent, depth)
        for key, value in table.items():
            key_text = _key(key)
            try:
                if isinstance(value, dict):
                    self.block((*path, key), key, value, indent, depth + 1)
                else:
                    line = f"{indent}{key_text}: {self.value(value, depth)}"
                    self.item((*path, key), line, indent)
                    self.following((*path, key), indent)
            except _Unwritable as error:
                error.path.append(key)
                raise
            self.definitions(path, key, indent, depth)

    def definitions(self, path: tuple[str, ...], after: str | None, indent: str, depth: int) -> None:
        """The `$variables` of table `path` that stood after the key `after` (None: first)."""
        if self.notes is None:
            return
        for name, value in self.notes.definitions.get((path, after), ()):
            variable = f"${name}"
            line = f"{indent}{variable}: {self.value(value, depth)}"
            self.item((*path, variable), line, indent)
            self.following((*path, variable), indent)
            self.defined.add(name)

    def block(
        self, path: tuple[str, ...], key: str, table: dict[str, Any], indent: str, depth: int
    ) -> None:
        if depth > MAX_DEPTH:
            raise _Unwritable(f"nesting deeper than {MAX_DEPTH} levels")
        self.item(path, f"{indent}{_key(key)} {{", indent)
        inner = indent + INDENT
        self.fresh = True
        self.table(path, table, inner, depth)
        self.closing(path, inner)
        closer = f"{indent}}}"
        note = self.notes.by_path.get(path) if self.notes is not None else None
        if note is not None and note.closer is not None:
            closer += "  " + note.closer
        self.lines.append(closer)
        self.statement_end = len(self.lines)
        self.fresh = False
        self.following(path, indent)


    def value(self, value: Any, depth: int, in_env: bool = False) -> str:
        """One value standing `depth` levels deep, counted and checked as `loads` does."""
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Unwritable(f"too many values: a document holds at most {MAX_VALUES:,}")
        if isinstance(value, VariableUse):
            if value.name not in self.defined:
                raise UsedBeforeDefinition(value.name)
            return f"${value.name}"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if value is None:
            return "null"
        if isinstance(value, str):
            _check_text(value, "the string")
            return _string(value)
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                shown = str(value) if value.bit_length() <= 128 else f"of {value.bit_length()} bits"
                raise _Unwritable(f"integer {shown} is out of range (it must fit in 64 bits)")
            return int.__repr__(value)  # a subclass's own repr could be anything
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _Unwritable(f"{value!r} cannot be written: JSON cannot carry inf or nan")
            return float.__repr__(value)
        if isinstance(value, list | dict) and depth + 1 > MAX_DEPTH:
            raise _Unwritable(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(self.value(item, depth + 1, in_env))
                except _Unwritable as error:
                    error.path.append(index)
                    raise
            return "[" + ", ".join(items) + "]"
        if isinstance(value, dict):
            if not value:
                return "{}"
            pairs = []
            for key, item in value.items():
                key_text = _key(key)
                try:
                    pairs.append(f"{key_text}: {self.value(item, depth + 1, in_env)}")
                except _Unwritable as error:
                    error.path.append(key)
                    raise
            return "{ " + ", ".join(pairs) + " }"
        if isinstance(value, EnvRef):
            if in_env:
                raise _Unwritable("a nested @env is not allowed inside the default of an @env")
            if value.has_default:
                # The default stands where the reference stands: it adds no level.
                return f"@env({_basic(value.name)}, {self.value(value.default, depth, True)})"
            return f"@env({_basic(value.name)})"
        raise TypeError(f"cannot write {type(value).__name__} as TSK: {value!r}")


def _indented(indent: str, comments: list[str]) -> list[str]:
    """Comment lines at `indent`; an empty string stands for a blank line kept between them."""
    return [indent + comment if comment else "" for comment in comments]


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"keys must be strings, not {type(key).__name__}: {key!r}")
    if key.startswith("$"):
        raise _Unwritable(f"key {key!r} starts with '$', which TSK reserves for variables")
    if IDENT_FULL_RE.match(key):
        return key
    _check_text(key, "a key")
    return _basic(key)


def _check_text(text: str, what: str) -> None:
    surrogate = SURROGATE_RE.search(text)
    if surrogate is not None:
        raise _Unwritable(
            f"{what} holds the lone surrogate U+{ord(surrogate.group()):04X}, which is not "
            "Unicode text (a TSK document is UTF-8)"
        )


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
