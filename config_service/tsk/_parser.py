"""The TSK parser: one pass over the text with an integer position, one function per rule.

Every function takes the source and a position and returns the new position
(and a value); every error is built by `_error` so it carries line and column
the same way. The grammar is docs/tsk.md; anything outside it is an error that
names the construct, never a silent guess.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import IO, Any, Final

from config_service.tsk._types import (
    ENV_NAME_RE,
    MISSING,
    EnvRef,
    TSKDecodeError,
    copy_data,
    holds_env,
)

MAX_DEPTH: Final = 64
MAX_VALUES: Final = 1_000_000
MAX_CHARS: Final = 16 * 1024 * 1024
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

IDENT_START: Final = frozenset(string.ascii_letters + "_")
IDENT_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_-")
NUMBER_START: Final = frozenset(string.digits + "+-")
EXPRESSION_CHARS: Final = frozenset("+-*/%?!=<>&|^~")
END_OF_LINE: Final = frozenset("\n#")
ESCAPES: Final = {
    "\\": "\\",
    '"': '"',
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
}

WS_RE: Final = re.compile(r"[ \t]*")
IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
OP_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.]*")
NUMBER_RE: Final = re.compile(
    r"[+-]?(?:0|[1-9](?:_?[0-9])*)(\.[0-9](?:_?[0-9])*)?([eE][+-]?[0-9](?:_?[0-9])*)?"
)
# Control characters, and lone surrogates (a `str` may hold them; UTF-8 text cannot).
ILLEGAL_CHAR_RE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
BASIC_STOP_RE: Final = re.compile(r'["\\\n]')
LITERAL_STOP_RE: Final = re.compile(r"['\n]")
HEX4_RE: Final = re.compile(r"[0-9A-Fa-f]{4}")
HEX8_RE: Final = re.compile(r"[0-9A-Fa-f]{8}")

# How a table came to be; decides whether a `[header]` may open it.
IMPLICIT: Final = 0  # created as the parent of a dotted header, e.g. `a` by `[a.b]`
HEADER: Final = 1  # opened by a `[header]`
BLOCK: Final = 2  # opened by `name {` or `name >`

# What a layout records (see `Layout`): statements ...
SECTION: Final = "section"
BLOCK_OPEN: Final = "block"
CLOSE: Final = "close"
PAIR: Final = "pair"
VARIABLE: Final = "variable"
# ... and comments: on a line of their own, after a statement, or inside a value.
LINE: Final = "line"
AFTER: Final = "after"
INSIDE: Final = "inside"


class Layout:
    """Where a document's statements and comments stand, recorded during a parse for `tsk.reformat`.

    `statements`: (position, path, kind), path being the keys from the root to the table a
    section or block opens, to the key a pair defines, or to the table a closer ends; a
    variable definition's path is its table's followed by `$name` (no key starts with `$`).
    `comments`: (position of the `#`, where), in the order they appear.
    `variables`: each variable's value, with the variables it uses kept as `VariableUse`.
    `spans`: where each pair's value stands in the text, (start, end), by the pair's path.
    `definition_ends`: where each variable definition's value ends, by the position of its `$`.

    A parse that records a layout returns each use of a variable as a `VariableUse`, so
    that `reformat` can write `$name` back where it stood.
    """

    __slots__ = ("statements", "comments", "variables", "spans", "definition_ends")

    def __init__(self) -> None:
        self.statements: list[tuple[int, tuple[str, ...], str]] = []
        self.comments: list[tuple[int, str]] = []
        self.variables: dict[str, Any] = {}
        self.spans: dict[tuple[str, ...], tuple[int, int]] = {}
        self.definition_ends: dict[int, int] = {}


@dataclass(frozen=True, slots=True)
class VariableUse:
    """`$name` in value position, as a parse that records a layout returns it."""

    name: str
# Tables not registered at all were written as inline objects.

BOOLEAN_WORDS: Final = frozenset({"True", "False", "TRUE", "FALSE", "yes", "no", "on", "off"})
NULL_WORDS: Final = frozenset({"None", "nil", "NULL", "Null", "none"})


def loads(text: str, *, max_chars: int = MAX_CHARS) -> dict[str, Any]:
    """Parse a TSK document into plain data (dict, list, str, int, float, bool, None, EnvRef)."""
    if not isinstance(text, str):
        raise TypeError(f"expected str, not {type(text).__name__} (use tsk.load for bytes)")
    if len(text) > max_chars:
        raise TSKDecodeError(
            f"document too large: {len(text)} characters, the limit is {max_chars}",
            text,
            0,
            lineno=1,
            colno=1,
        )
    src = text[1:] if text.startswith("\ufeff") else text
    if "\r\n" in src:
        src = src.replace("\r\n", "\n")
    try:
        return _Parser(src).parse()
    except TSKDecodeError as error:
        if src is text:
            raise
        raise TSKDecodeError(
            error.msg,
            text,
            _original_position(text, src, error.pos),
            lineno=error.lineno,
            colno=error.colno,
        ) from None


def load(binary_file: IO[bytes], *, max_chars: int = MAX_CHARS) -> dict[str, Any]:
    """Parse a TSK document from a binary file; bytes that are not UTF-8 are a TSKDecodeError."""
    data = binary_file.read(max_chars * 4 + 4)
    if not isinstance(data, bytes):
        raise TypeError("tsk.load needs a file opened in binary mode ('rb')")
    return loads(decode(data, max_chars=max_chars), max_chars=max_chars)


def decode(data: bytes, *, max_chars: int = MAX_CHARS) -> str:
    """Decode TSK bytes as UTF-8, raising TSKDecodeError at the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8")
        doc = data.decode("utf-8", errors="replace")
        pos = len(good)
        src = good[1:] if good.startswith("\ufeff") else good
        lineno = src.count("\n") + 1
        colno = len(src) - src.rfind("\n")
        raise TSKDecodeError(
            f"invalid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded",
            doc,
            pos,
            lineno=lineno,
            colno=colno,
        ) from None


def _original_position(text: str, src: str, pos: int) -> int:
    """Map a position in the normalised text (no BOM, `\\n` newlines) back to the original."""
    line = src.count("\n", 0, pos)
    column = pos - (src.rfind("\n", 0, pos) + 1)
    start = 1 if text.startswith("\ufeff") else 0
    for _ in range(line):
        start = text.index("\n", start) + 1
    return start + column


class _Parser:
    """The state of one parse: the text, the variables, and where each key was defined."""

    __slots__ = ("src", "end", "values", "variables", "kinds", "positions", "layout")

    def __init__(self, src: str, layout: Layout | None = None) -> None:
        self.src = src
        self.end = len(src)
        self.values = 0
        # Where statements and comments stand, for `tsk.reformat` (None when nobody asks).
        self.layout = layout
        # name -> (value, first position, number of values, nesting height)
        self.variables: dict[str, tuple[Any, int, int, int]] = {}
        # id(table) -> how it was created; id(table) -> {key: position of its definition}
        self.kinds: dict[int, int] = {}
        self.positions: dict[int, dict[str, int]] = {}

    # -- errors ---------------------------------------------------------------

    def error(self, pos: int, msg: str) -> TSKDecodeError:
        return TSKDecodeError(msg, self.src, pos)

    def line_of(self, pos: int) -> int:
        return self.src.count("\n", 0, pos) + 1

    # -- whitespace and line ends ----------------------------------------------

    def skip_ws(self, pos: int) -> int:
        return WS_RE.match(self.src, pos).end()  # type: ignore[union-attr]

    def skip_comment(self, pos: int) -> int:
        newline = self.src.find("\n", pos)
        return self.end if newline == -1 else newline

    def skip_blank(self, pos: int) -> int:
        """Skip spaces, tabs, newlines and comments (inside arrays and objects)."""
        src, end = self.src, self.end
        while pos < end:
            c = src[pos]
            if c in " \t\n":
                pos += 1
            elif c == "#":
                if self.layout is not None:
                    self.layout.comments.append((pos, INSIDE))
                pos = self.skip_comment(pos)
            else:
                break
        return pos

    def end_of_line(self, pos: int, what: str, *, terminator: bool) -> int:
        """After a statement: optional `;`/`,` (for pairs), a comment, then the newline."""
        src, end = self.src, self.end
        pos = self.skip_ws(pos)
        if pos < end and terminator and src[pos] in ";,":
            pos = self.skip_ws(pos + 1)
        if pos >= end:
            return pos
        c = src[pos]
        if c == "\n":
            return pos + 1
        if c == "#":
            if self.layout is not None:
                self.layout.comments.append((pos, AFTER))
            return self.skip_comment(pos)
        if terminator and c in EXPRESSION_CHARS or c == ":" and what == "value":
            raise self.error(pos, _expression_message(c))
        raise self.error(pos, f"expected the end of the line after the {what}, found {c!r}")

    # -- the document ------------------------------------------------------------

    def parse(self) -> dict[str, Any]:
        src, end = self.src, self.end
        bad = ILLEGAL_CHAR_RE.search(src)
        if bad is not None:
            code = ord(bad.group())
            if 0xD800 <= code <= 0xDFFF:
                raise self.error(
                    bad.start(), f"lone surrogate U+{code:04X}: the text is not Unicode (TSK is UTF-8)"
                )
            raise self.error(
                bad.start(),
                f"control character U+{code:04X} is not allowed"
                " (write it as an escape inside a basic string)",
            )
        root: dict[str, Any] = {}
        self.kinds[id(root)] = HEADER
        self.positions[id(root)] = {}
        section = root
        section_depth = 0
        table = root
        # open blocks: (table, closing character, position of the opener, name)
        blocks: list[tuple[dict[str, Any], str, int, str]] = []
        layout = self.layout
        path: tuple[str, ...] = ()  # of the current table, kept only for a layout
        pos = 0
        while True:
            pos = self.skip_ws(pos)
            if pos >= end:
                break
            c = src[pos]
            if c == "\n":
                pos += 1
                continue
            if c == "#":
                if layout is not None:
                    line_start = src.rfind("\n", 0, pos) + 1
                    alone = not src[line_start:pos].strip()
                    layout.comments.append((pos, LINE if alone else AFTER))
                pos = self.skip_comment(pos)
                continue
            if c == "[":
                if blocks:
                    _, closer, opened, name = blocks[-1]
                    raise self.error(
                        pos,
                        f"a [section] header cannot stand inside the block {name!r} opened on "
                        f"line {self.line_of(opened)}: close the block with {closer!r} first",
                    )
                header_pos = pos
                pos, section, section_depth = self.parse_section(pos, root)
                table = section
                if layout is not None:
                    path = tuple(name.strip() for name in src[header_pos + 1 : pos - 1].split("."))
                    layout.statements.append((header_pos, path, SECTION))
                pos = self.end_of_line(pos, "section header", terminator=False)
            elif c == "}" or c == "<":
                if not blocks:
                    raise self.error(pos, f"{c!r} closes nothing: no block is open here")
                _, closer, opened, name = blocks[-1]
                if c != closer:
                    raise self.error(
                        pos,
                        f"expected {closer!r} to close the block {name!r} opened on line "
                        f"{self.line_of(opened)}, found {c!r}",
                    )
                blocks.pop()
                table = blocks[-1][0] if blocks else section
                if layout is not None:
                    layout.statements.append((pos, path, CLOSE))
                    path = path[:-1]
                pos = self.end_of_line(pos + 1, "block closer", terminator=False)
            elif c == "$":
                if layout is not None:
                    found = IDENT_RE.match(src, pos + 1)
                    variable = f"${found.group() if found is not None else ''}"
                    layout.statements.append((pos, (*path, variable), VARIABLE))
                pos = self.parse_variable_definition(pos, section_depth + len(blocks))
            else:
                key_pos = pos
                key, pos = self.parse_key(pos)
                pos = self.skip_ws(pos)
                c = src[pos] if pos < end else ""
                if c == ":" or c == "=":
                    pos = self.skip_ws(pos + 1)
                    if pos >= end or src[pos] in END_OF_LINE:
                        raise self.error(pos, f"missing value after {key!r}{c}")
                    value_pos = pos
                    value, pos = self.parse_value(pos, section_depth + len(blocks))
                    self.define(table, key, value, key_pos)
                    if layout is not None:
                        layout.statements.append((key_pos, (*path, key), PAIR))
                        layout.spans[(*path, key)] = (value_pos, pos)
                    pos = self.end_of_line(pos, "value", terminator=True)
                elif c == "{" or c == ">":
                    depth = section_depth + len(blocks) + 1
                    if depth > MAX_DEPTH:
                        raise self.error(key_pos, f"nesting deeper than {MAX_DEPTH} levels")
                    block: dict[str, Any] = {}
                    self.define(table, key, block, key_pos)
                    self.kinds[id(block)] = BLOCK
                    self.positions[id(block)] = {}
                    closer = "}" if c == "{" else "<"
                    after = self.skip_ws(pos + 1)
                    if after < end and src[after] not in END_OF_LINE:
                        raise self.error(
                            after,
                            f"a block opened with {c!r} must end its line, its content on the "
                            f"lines below and {closer!r} alone on the last"
                            + (
                                f" (or write {key}: {{ ... }} for an inline object)"
                                if c == "{"
                                else ""
                            ),
                        )
                    blocks.append((block, closer, key_pos, key))
                    table = block
                    if layout is not None:
                        path = (*path, key)
                        layout.statements.append((key_pos, path, BLOCK_OPEN))
                    pos = after
                elif c == ".":
                    raise self.error(
                        pos, "dotted keys are not supported: use a [section] or a block"
                    )
                elif c == "" or c in END_OF_LINE:
                    raise self.error(pos, f"expected ':' or '=' and a value after the key {key!r}")
                else:
                    raise self.error(pos, f"expected ':' or '=' after the key {key!r}, found {c!r}")
        if blocks:
            _, closer, opened, name = blocks[-1]
            raise self.error(
                opened,
                f"the block {name!r} opened on line {self.line_of(opened)} is never closed "
                f"(expected {closer!r} on a line of its own)",
            )
        return root

    def define(self, table: dict[str, Any], key: str, value: Any, pos: int) -> None:
        positions = self.positions.setdefault(id(table), {})
        if key in table:
            raise self.error(
                pos,
                f"duplicate key {key!r} (first defined on line {self.line_of(positions[key])})",
            )
        table[key] = value
        positions[key] = pos

    # -- statements --------------------------------------------------------------

    def parse_section(self, pos: int, root: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
        src, end = self.src, self.end
        opened = pos
        names: list[str] = []
        name_positions: list[int] = []
        pos += 1
        while True:
            pos = self.skip_ws(pos)
            match = IDENT_RE.match(src, pos)
            if match is None:
                found = repr(src[pos]) if pos < end and src[pos] != "\n" else "the end of the line"
                raise self.error(
                    pos,
                    f"expected a section name (a letter or '_', then letters, digits, '_' or '-'),"
                    f" found {found}",
                )
            names.append(match.group())
            name_positions.append(pos)
            pos = self.skip_ws(match.end())
            if pos < end and src[pos] == "]":
                pos += 1
                break
            if pos < end and src[pos] == ".":
                pos += 1
                continue
            found = repr(src[pos]) if pos < end and src[pos] != "\n" else "the end of the line"
            raise self.error(pos, f"expected '.' or ']' in the section header, found {found}")
        if len(names) > MAX_DEPTH:
            raise self.error(opened, f"nesting deeper than {MAX_DEPTH} levels")
        header = "[" + ".".join(names) + "]"
        table = root
        for index, name in enumerate(names):
            last = index == len(names) - 1
            positions = self.positions[id(table)]
            if name not in table:
                child: dict[str, Any] = {}
                table[name] = child
                positions[name] = name_positions[index] if last else opened
                self.kinds[id(child)] = HEADER if last else IMPLICIT
                self.positions[id(child)] = {}
                table = child
                continue
            child = table[name]
            first = self.line_of(positions[name])
            if not isinstance(child, dict):
                raise self.error(
                    name_positions[index],
                    f"cannot open {header}: {name!r} is already a value (defined on line {first})",
                )
            kind = self.kinds.get(id(child))
            if kind is None:
                raise self.error(
                    name_positions[index],
                    f"cannot open {header}: {name!r} was written as an inline object on line {first}",
                )
            if last:
                if kind == HEADER:
                    raise self.error(
                        opened, f"repeated section {header} (first opened on line {first})"
                    )
                if kind == BLOCK:
                    raise self.error(
                        opened,
                        f"cannot reopen {name!r} as {header}: it is a block opened on line {first}",
                    )
                self.kinds[id(child)] = HEADER
            table = child
        return pos, table, len(names)

    def parse_variable_definition(self, pos: int, depth: int) -> int:
        src, end = self.src, self.end
        match = IDENT_RE.match(src, pos + 1)
        if match is None:
            raise self.error(pos + 1, "expected a variable name after '$'")
        name = match.group()
        pos = self.skip_ws(match.end())
        c = src[pos] if pos < end else ""
        if c != ":" and c != "=":
            raise self.error(pos, f"expected ':' or '=' after the variable ${name}")
        if name in self.variables:
            first = self.line_of(self.variables[name][1])
            raise self.error(
                match.start() - 1, f"variable ${name} is already defined (on line {first})"
            )
        pos = self.skip_ws(pos + 1)
        if pos >= end or src[pos] in END_OF_LINE:
            raise self.error(pos, f"missing value after ${name}{c}")
        before = self.values
        value, pos = self.parse_value(pos, depth)
        self.variables[name] = (value, match.start() - 1, self.values - before, _height(value))
        if self.layout is not None:
            self.layout.variables[name] = value
            self.layout.definition_ends[match.start() - 1] = pos
        return self.end_of_line(pos, "value", terminator=True)

    def parse_key(self, pos: int) -> tuple[str, int]:
        src = self.src
        c = src[pos]
        if c in IDENT_START:
            match = IDENT_RE.match(src, pos)
            assert match is not None
            return match.group(), match.end()
        if c == '"' or c == "'":
            if src.startswith(c * 3, pos):
                raise self.error(pos, "a key cannot be a multi-line string")
            key, end = self.parse_basic_string(pos) if c == '"' else self.parse_literal_string(pos)
            if key.startswith("$"):
                raise self.error(
                    pos, "a quoted key may not start with '$' (reserved for variables and @env)"
                )
            return key, end
        if c in "@{[" or c in NUMBER_START:
            raise self.error(pos, f"expected a key before the value, found {c!r}")
        raise self.error(
            pos,
            f"unexpected {c!r}: expected a key, a [section] header, a $variable or a block closer",
        )

    # -- values ---------------------------------------------------------------

    def parse_value(self, pos: int, depth: int, in_env: bool = False) -> tuple[Any, int]:
        src = self.src
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.error(pos, f"too many values: a document holds at most {MAX_VALUES:,}")
        c = src[pos]
        if c == '"':
            if src.startswith('"""', pos):
                return self.parse_multiline_string(pos, '"""')
            return self.parse_basic_string(pos)
        if c == "'":
            if src.startswith("'''", pos):
                return self.parse_multiline_string(pos, "'''")
            return self.parse_literal_string(pos)
        if c in NUMBER_START:
            return self.parse_number(pos)
        if c == "[":
            return self.parse_array(pos, depth, in_env)
        if c == "{":
            return self.parse_object(pos, depth, in_env)
        if c == "$":
            return self.parse_variable_reference(pos, depth, in_env)
        if c == "@":
            return self.parse_operator(pos, depth, in_env)
        if c in IDENT_START:
            match = IDENT_RE.match(src, pos)
            assert match is not None
            word = match.group()
            if word == "true":
                return True, match.end()
            if word == "false":
                return False, match.end()
            if word == "null":
                return None, match.end()
            raise self.error(pos, _bare_word_message(_shorten(word)))
        if c == ".":
            raise self.error(pos, "a number must start with a digit (write 0.5, not .5)")
        if c in "\n#":
            raise self.error(pos, "missing value")
        raise self.error(pos, f"unexpected {c!r}: expected a value")

    def parse_number(self, pos: int) -> tuple[int | float, int]:
        src, end = self.src, self.end
        match = NUMBER_RE.match(src, pos)
        if match is None:
            raise self.error(pos, f"{src[pos]!r} must be followed by a number")
        after = match.end()
        if after < end:
            c = src[after]
            if c == "-" and after + 1 < end and src[after + 1].isdigit():
                word = _token_at(src, pos)
                low, _, high = word.partition("-")
                raise self.error(
                    pos,
                    f'ranges are not supported: write "{word}" or [{low}, {high}]',
                )
            if c in IDENT_CHARS or c == ".":
                word = _token_at(src, pos)
                raise self.error(pos, _number_message(word, match.group(), c))
        text = match.group()
        if match.group(1) is None and match.group(2) is None:
            digits = text.replace("_", "") if "_" in text else text
            # More than 19 digits cannot fit; checking first also keeps int() from refusing
            # (it converts at most sys.get_int_max_str_digits() digits).
            value = int(digits) if len(digits.lstrip("+-")) <= 19 else INT64_MAX + 1
            if not INT64_MIN <= value <= INT64_MAX:
                raise self.error(
                    pos, f"integer {_shorten(text)} is out of range (it must fit in 64 bits)"
                )
            return value, after
        number = float(text.replace("_", "")) if "_" in text else float(text)
        if number in (float("inf"), float("-inf")):
            raise self.error(pos, f"float {_shorten(text)} is out of range")
        return number, after

    def parse_basic_string(self, pos: int) -> tuple[str, int]:
        src = self.src
        parts: list[str] = []
        start = pos + 1
        while True:
            match = BASIC_STOP_RE.search(src, start)
            if match is None or match.group() == "\n":
                raise self.error(
                    pos,
                    f"unclosed string opened on line {self.line_of(pos)}: a basic string must end "
                    'on the line where it starts (use """ for text over several lines)',
                )
            stop = match.start()
            if match.group() == '"':
                if not parts:
                    return src[start:stop], stop + 1
                parts.append(src[start:stop])
                return "".join(parts), stop + 1
            parts.append(src[start:stop])
            char, start = self.parse_escape(stop)
            parts.append(char)

    def parse_escape(self, pos: int) -> tuple[str, int]:
        """`pos` is at a backslash; returns the character it stands for and the position after."""
        src = self.src
        kind = src[pos + 1] if pos + 1 < self.end else ""
        if kind in ESCAPES:
            return ESCAPES[kind], pos + 2
        if kind == "u" or kind == "U":
            size = 4 if kind == "u" else 8
            match = (HEX4_RE if size == 4 else HEX8_RE).match(src, pos + 2)
            if match is None:
                raise self.error(pos, f"\\{kind} must be followed by {size} hexadecimal digits")
            code = int(match.group(), 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise self.error(pos, f"\\{kind}{match.group()} is not a Unicode scalar value")
            return chr(code), match.end()
        shown = f"'\\{kind}'" if kind and kind != "\n" else "(a backslash at the end of the line)"
        raise self.error(
            pos,
            f"invalid escape {shown}: use \\\\ for a backslash, or a '...' literal string",
        )

    def parse_literal_string(self, pos: int) -> tuple[str, int]:
        match = LITERAL_STOP_RE.search(self.src, pos + 1)
        if match is None or match.group() == "\n":
            raise self.error(
                pos,
                f"unclosed string opened on line {self.line_of(pos)}: a literal string must end "
                "on the line where it starts (use ''' for text over several lines)",
            )
        return self.src[pos + 1 : match.start()], match.end()

    def parse_multiline_string(self, pos: int, quotes: str) -> tuple[str, int]:
        src = self.src
        start = pos + 3
        if src.startswith("\n", start):
            start += 1
        stop = src.find(quotes, start)
        if stop == -1:
            raise self.error(
                pos,
                f"unclosed {quotes} string opened on line {self.line_of(pos)}",
            )
        if quotes == "'''" or "\\" not in src[start:stop]:
            return src[start:stop], stop + 3
        parts: list[str] = []
        while True:
            backslash = src.find("\\", start, stop)
            if backslash == -1:
                parts.append(src[start:stop])
                return "".join(parts), stop + 3
            parts.append(src[start:backslash])
            if backslash + 1 == stop:
                raise self.error(
                    backslash,
                    f"invalid escape: the backslash before the closing {quotes} escapes nothing",
                )
            char, start = self.parse_escape(backslash)
            parts.append(char)

    def parse_array(self, pos: int, depth: int, in_env: bool) -> tuple[list[Any], int]:
        src, end = self.src, self.end
        opened = pos
        depth += 1
        if depth > MAX_DEPTH:
            raise self.error(pos, f"nesting deeper than {MAX_DEPTH} levels")
        items: list[Any] = []
        pos += 1
        while True:
            pos = self.skip_blank(pos)
            if pos >= end:
                raise self.unclosed(opened, "array", "]")
            if src[pos] == "]":
                return items, pos + 1
            value, pos = self.parse_value(pos, depth, in_env)
            items.append(value)
            pos = self.skip_blank(pos)
            if pos >= end:
                raise self.unclosed(opened, "array", "]")
            c = src[pos]
            if c == ",":
                pos += 1
            elif c == "]":
                return items, pos + 1
            elif c in EXPRESSION_CHARS or c == ":":
                raise self.error(pos, _expression_message(c))
            else:
                raise self.error(
                    pos,
                    f"expected ',' or ']' after an item of the array opened on line "
                    f"{self.line_of(opened)}, found {c!r}",
                )

    def parse_object(self, pos: int, depth: int, in_env: bool) -> tuple[dict[str, Any], int]:
        src, end = self.src, self.end
        opened = pos
        depth += 1
        if depth > MAX_DEPTH:
            raise self.error(pos, f"nesting deeper than {MAX_DEPTH} levels")
        table: dict[str, Any] = {}
        positions: dict[str, int] = {}
        pos += 1
        while True:
            pos = self.skip_blank(pos)
            if pos >= end:
                raise self.unclosed(opened, "object", "}")
            if src[pos] == "}":
                return table, pos + 1
            key_pos = pos
            key, pos = self.parse_key(pos)
            if key in table:
                raise self.error(
                    key_pos,
                    f"duplicate key {key!r} (first defined on line {self.line_of(positions[key])})",
                )
            pos = self.skip_ws(pos)
            c = src[pos] if pos < end else ""
            if c != ":" and c != "=":
                raise self.error(pos, f"expected ':' or '=' after the key {key!r} in the object")
            pos = self.skip_ws(pos + 1)
            if pos >= end or src[pos] in END_OF_LINE:
                raise self.error(
                    pos, f"the value of {key!r} must stand on the same line as its key"
                )
            value, pos = self.parse_value(pos, depth, in_env)
            table[key] = value
            positions[key] = key_pos
            pos = self.skip_ws(pos)
            c = src[pos] if pos < end else ""
            if c == ",":
                pos += 1
            elif c == "}":
                return table, pos + 1
            elif c == "\n" or c == "#":
                continue
            elif c == "":
                raise self.unclosed(opened, "object", "}")
            elif c in EXPRESSION_CHARS or c == ":":
                raise self.error(pos, _expression_message(c))
            else:
                raise self.error(
                    pos,
                    f"expected ',', a new line or '}}' after the value of {key!r}, found {c!r}",
                )

    def unclosed(self, opened: int, what: str, closer: str) -> TSKDecodeError:
        return self.error(
            opened,
            f"unclosed {what} opened on line {self.line_of(opened)} (expected {closer!r})",
        )

    def parse_variable_reference(self, pos: int, depth: int, in_env: bool) -> tuple[Any, int]:
        match = IDENT_RE.match(self.src, pos + 1)
        if match is None:
            raise self.error(pos, "expected a variable name after '$'")
        name = match.group()
        if name not in self.variables:
            raise self.error(
                pos, f"undefined variable ${name} (a variable must be defined before it is used)"
            )
        value, _, count, height = self.variables[name]
        if depth + height > MAX_DEPTH:
            raise self.error(pos, f"nesting deeper than {MAX_DEPTH} levels")
        if in_env and holds_env(value):
            raise self.error(pos, f"${name} holds an @env reference: a nested @env is not allowed")
        self.values += count - 1
        if self.values > MAX_VALUES:
            raise self.error(pos, f"too many values: a document holds at most {MAX_VALUES:,}")
        if self.layout is not None:
            return VariableUse(name), match.end()
        return copy_data(value), match.end()

    def parse_operator(self, pos: int, depth: int, in_env: bool) -> tuple[EnvRef, int]:
        src, end = self.src, self.end
        match = OP_NAME_RE.match(src, pos + 1)
        assert match is not None
        name = match.group()
        after = match.end()
        if name != "env" or after >= end or src[after] != "(":
            if not name:
                raise self.error(pos, "'@' must be followed by env(\"NAME\")")
            construct = "cross-file references" if ".tsk." in f"{name}." else f"@{name}"
            raise self.error(
                pos,
                f"{construct} {'are' if construct.startswith('cross') else 'is'} not supported"
                f"{f' (@{name})' if construct.startswith('cross') else ''}: a config document "
                "is data, and only @env is resolved (in the service that loads it)",
            )
        if in_env:
            raise self.error(pos, "a nested @env is not allowed inside @env(...)")
        name_pos = self.skip_ws(after + 1)
        c = src[name_pos] if name_pos < end else ""
        rule = 'the name must be a quoted [A-Za-z_][A-Za-z0-9_]*, as in @env("PORT", 8001)'
        if c == '"' and not src.startswith('"""', name_pos):
            variable, pos_after = self.parse_basic_string(name_pos)
        elif c == "'" and not src.startswith("'''", name_pos):
            variable, pos_after = self.parse_literal_string(name_pos)
        else:
            raise self.error(name_pos, rule)
        if not ENV_NAME_RE.match(variable):
            raise self.error(name_pos, f"invalid @env name {variable!r}: {rule}")
        pos_after = self.skip_ws(pos_after)
        c = src[pos_after] if pos_after < end else ""
        default: Any = MISSING
        if c == ",":
            value_pos = self.skip_ws(pos_after + 1)
            if value_pos >= end or src[value_pos] in END_OF_LINE or src[value_pos] == ")":
                raise self.error(value_pos, "expected a default value after ',' in @env(...)")
            default, pos_after = self.parse_value(value_pos, depth, in_env=True)
            pos_after = self.skip_ws(pos_after)
            c = src[pos_after] if pos_after < end else ""
        if c != ")":
            found = repr(c) if c and c != "\n" else "the end of the line"
            raise self.error(
                pos_after,
                f"expected ')' to close @env( opened at column {pos - src.rfind(chr(10), 0, pos)}"
                f", found {found} (@env takes a name and at most one default)",
            )
        return EnvRef(variable, default), pos_after + 1


# -- helpers ----------------------------------------------------------------------


def _token_at(src: str, pos: int, limit: int = 40) -> str:
    """The run of number-ish characters at `pos` (at most `limit` of them), for messages."""
    end = pos
    stop = min(len(src), pos + limit)
    while end < stop and (src[end] in IDENT_CHARS or src[end] in ".+"):
        end += 1
    return src[pos:end]


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _number_message(word: str, number: str, after: str) -> str:
    if after == "." and word.endswith("."):
        return f"a float needs digits after '.' (write {word}0)"
    if after == "_" or "__" in word:
        return f"invalid number {word!r}: '_' may only stand between digits"
    if number.lstrip("+-") == "0" and after.isdigit():
        return f"invalid number {word!r}: leading zeros are not allowed"
    if after == "-":
        return f"invalid number {word!r}: expressions are not supported; values are data"
    return f'invalid number {word!r}: quote it if it is text ("{word}")'


def _bare_word_message(word: str) -> str:
    if word in ("inf", "nan"):
        return f"{word} is not supported: JSON cannot carry it"
    if word in BOOLEAN_WORDS:
        return f"bare word {word!r}: booleans are written true or false"
    if word in NULL_WORDS:
        return f"bare word {word!r}: the empty value is written null"
    return f'bare word {word!r}: quote the string ("{word}"), or use ${word} for a variable'


def _expression_message(c: str) -> str:
    return f"unexpected {c!r}: expressions are not supported; values are data"


def _height(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_height(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_height(item) for item in value), default=0)
    return 0
