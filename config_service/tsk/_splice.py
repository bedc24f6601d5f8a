"""`write_values(text, values)`: a document with new values written in at some paths, the rest of
its text (comments, layout, `$variables`) as it was.

What promotion needs to keep environment-local values (docs/lifecycle.md): the promoted text
is the source environment's, with the target's data written in at the local paths.

- A key defined by a pair gets its value's text replaced (a `$name` use too: the use is
  replaced, never the variable's definition; a definition whose last use was written over
  goes, with its line, so no value the text no longer needs stays in it).
- A key inside a value written inline (an object, or a `$variable` standing for one) gets
  that whole value written anew, inline.
- A key the text lacks is added at the end of its table (a new top-level key after the last
  top-level pair, before the first `[section]`); a table the text lacks is added inline.
- A table (a `[section]` or a block) that gets an object is written key by key: keys it lacks
  are added, keys the new object lacks are removed with their lines.

The result must read back as the expected data, else ValueError: nothing half-written
leaves here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from config_service.tsk._parser import (
    BLOCK_OPEN,
    CLOSE,
    PAIR,
    SECTION,
    VARIABLE,
    Layout,
    VariableUse,
    _Parser,
    loads,
)
from config_service.tsk._types import EnvRef
from config_service.tsk._wire import to_wire
from config_service.tsk._writer import INDENT, _key, _Unwritable, _Writer

Path = tuple[str, ...]
_ABSENT = object()


def write_values(text: str, values: Mapping[Path, Any]) -> str:
    """`text` with the value at each path (keys from the root) set as `values` says.

    ValueError when the result would not read back as the data of `text` with those values
    set (a key that cannot be written where it must stand), naming the first path.
    """
    src = text[1:] if text.startswith("\ufeff") else text
    src = src.replace("\r\n", "\n")
    data = loads(src)
    layout = Layout()
    used = set(_uses(_Parser(src, layout).parse())).union(*map(_uses, layout.variables.values()))
    expected = copy.deepcopy(data)
    for path, value in values.items():
        _set(expected, path, value)
    splice = _Splice(src, layout, data, expected)
    for path in sorted(values):
        splice.put(path)
    result = splice.result()
    _check(result, expected, values)
    trimmed = _drop_unused_definitions(result, used)
    if trimmed != result:
        _check(trimmed, expected, values)
    return trimmed


def _check(result: str, expected: dict[str, Any], values: Mapping[Path, Any]) -> None:
    try:
        written = loads(result)
    except ValueError as error:
        raise ValueError(f"writing the values in made text that does not parse: {error}") from None
    if to_wire(written) != to_wire(expected):
        first = "/" + "/".join(sorted(values)[0]) if values else "/"
        raise ValueError(f"writing the values in did not give the expected data (near {first})")


def _uses(value: Any) -> Iterator[str]:
    """The name of every variable use in a value parsed with a layout (repeated per use)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, VariableUse):
            yield item.name
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, EnvRef):
            pending.append(item.default)


def _drop_unused_definitions(text: str, used: set[str]) -> str:
    """`text` without the definitions of the variables among `used` that nothing uses any more
    (their last use was written over): a value the text no longer needs does not stay in it.
    A variable the text never used is left as its author wrote it."""
    for _ in range(len(used) + 1):  # each round drops at least one definition, or ends
        layout = Layout()
        data = _Parser(text, layout).parse()
        # A use in another definition counts; once that definition goes, the next round
        # finds the variables it used.
        counts = set(_uses(data)).union(*(_uses(value) for value in layout.variables.values()))
        unused = {name for name in layout.variables if name in used and name not in counts}
        if not unused:
            return text
        cut = _Splice(text, layout, {}, {})
        for position, path, kind in layout.statements:
            if kind == VARIABLE and path[-1][1:] in unused:
                end = cut.line_end(cut.variable_end(position))
                cut.edits.append((cut.line_start(position), end, ""))
        text = cut.result()
    return text


def _get(data: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return _ABSENT
        data = data[key]
    return data


def _set(data: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        child = data.get(key)
        if not isinstance(child, dict):
            child = data[key] = {}
        data = child
    data[path[-1]] = copy.deepcopy(value)


def _render(value: Any, depth: int) -> str:
    try:
        return _Writer(None).value(value, depth)
    except _Unwritable as error:
        raise ValueError(f"cannot write this value as TSK: {error.reason}") from None


class _Splice:
    """The edits to one text: (start, end, new text), applied at once at the end."""

    def __init__(self, src: str, layout: Layout, data: dict[str, Any], expected: dict[str, Any]) -> None:
        self.src = src
        self.data = data
        self.expected = expected
        self.statements = layout.statements
        self.spans = layout.spans
        self.definition_ends = layout.definition_ends
        self.pairs: dict[Path, int] = {}
        self.sections: dict[Path, int] = {}
        self.blocks: dict[Path, int] = {}
        self.closers: dict[Path, int] = {}
        for position, path, kind in layout.statements:
            if kind == PAIR:
                self.pairs[path] = position
            elif kind == SECTION:
                self.sections[path] = position
            elif kind == BLOCK_OPEN:
                self.blocks[path] = position
            elif kind == CLOSE:
                self.closers[path] = position
        self.edits: list[tuple[int, int, str]] = []
        self.rewritten: set[Path] = set()  # inline values written anew as a whole
        self.headed: set[Path] = set()  # implicit tables given a header at the end of the text
        self.final_newline = False  # the newline a text without one gets before a line is added

    # -- what to do at one path --------------------------------------------------------

    def put(self, path: Path) -> None:
        new = _get(self.expected, path)
        if path in self.spans:
            self.replace(path, new)
        elif path in self.sections or path in self.blocks or self.implicit(path):
            old = _get(self.data, path)
            if isinstance(new, dict):
                for key in new:
                    self.put((*path, key))
                for key in old:
                    if key not in new:
                        self.delete((*path, key))
            else:
                self.delete(path)
                self.add(path)
        elif _get(self.data, path) is not _ABSENT:
            self.rewrite_inline(path)
        else:
            self.add(path)

    def implicit(self, path: Path) -> bool:
        """A table made only as the parent of a dotted header (`a` of `[a.b]`)."""
        return bool(path) and any(len(other) > len(path) and other[: len(path)] == path for other in self.sections)

    def replace(self, path: Path, value: Any) -> None:
        start, end = self.spans[path]
        self.edits.append((start, end, _render(value, len(path) - 1)))

    def rewrite_inline(self, path: Path) -> None:
        """Write anew the inline value that holds `path`: the nearest ancestor with a span."""
        for size in range(len(path), 0, -1):
            ancestor = path[:size]
            if ancestor in self.spans:
                if ancestor not in self.rewritten:
                    self.rewritten.add(ancestor)
                    self.replace(ancestor, _get(self.expected, ancestor))
                return
        raise ValueError(f"cannot find where /{'/'.join(path)} is written")

    def add(self, path: Path) -> None:
        # The nearest table on the way that the text has; the rest goes in as one inline value.
        table: Path = ()
        for size in range(len(path) - 1, 0, -1):
            if isinstance(_get(self.data, path[:size]), dict):
                table = path[:size]
                break
        if table and table not in self.sections and table not in self.blocks:
            if table in self.spans or not self.implicit(table):
                self.rewrite_inline(path)
                return
        child = path[: len(table) + 1]
        value = _get(self.expected, child)
        if _get(self.data, child) is not _ABSENT:  # there, but not an object: written anew
            if child in self.spans:
                self.replace(child, value)
            else:
                self.put(child)
            return
        at, indent = self.end_of_table(table)
        line = f"{indent}{_key(child[-1])}: {_render(value, len(child) - 1)}\n"
        self.edits.append((at, at, line))

    def delete(self, path: Path) -> None:
        if path in self.spans:
            self.edits.append((self.line_start(self.pairs[path]), self.line_end(self.spans[path][1]), ""))
        elif path in self.blocks:
            self.edits.append(
                (self.line_start(self.blocks[path]), self.line_end(self.closers[path]), "")
            )
        elif path in self.sections or self.implicit(path):
            for section, position in self.sections.items():
                if section[: len(path)] == path:
                    self.edits.append((self.line_start(position), self.section_end(position), ""))
        else:
            self.rewrite_inline(path)

    # -- places in the text ------------------------------------------------------------

    def line_start(self, position: int) -> int:
        return self.src.rfind("\n", 0, position) + 1

    def line_end(self, position: int) -> int:
        """Just after the newline ending the line that holds `position` (or the text's end)."""
        newline = self.src.find("\n", position)
        return len(self.src) if newline == -1 else newline + 1

    def comments_above(self, position: int) -> int:
        """The start of the comment lines directly above the line holding `position`."""
        start = self.line_start(position)
        while start > 0:
            above = self.line_start(start - 1)
            if not self.src[above:start].lstrip().startswith("#"):
                break
            start = above
        return start

    def section_end(self, header: int) -> int:
        """Where the section opened at `header` ends: at the comments above the next header."""
        later = [position for position, _, kind in self.statements if kind == SECTION and position > header]
        return self.comments_above(min(later)) if later else len(self.src)

    def end_of_table(self, table: Path) -> tuple[int, str]:
        """Where a new key of `table` goes, and its indent: after the table's last statement."""
        if table in self.blocks:
            closer = self.closers[table]
            members = [
                (position, path, kind)
                for position, path, kind in self.statements
                if self.blocks[table] < position < closer and len(path) == len(table) + 1
            ]
            indent = self.indent_of(members[-1][0]) if members else self.indent_of(closer) + INDENT
            return self.line_start(closer), indent
        if table and table not in self.sections:
            # Only an implicit table: a header of its own at the end of the text (once).
            if table in self.headed:
                return len(self.src), ""
            self.headed.add(table)
            return self.append_text("\n[" + ".".join(table) + "]\n"), ""
        first_section = min(
            (position for position, path, kind in self.statements if kind == SECTION), default=None
        )
        if table:
            header = self.sections[table]
            end = self.section_end(header)
            members = [s for s in self.statements if header < s[0] < end and s[2] != SECTION]
        else:
            limit = first_section if first_section is not None else len(self.src) + 1
            members = [s for s in self.statements if s[0] < limit and len(s[1]) == 1]
            if not members:
                if first_section is None:
                    return self.append_text(""), ""
                return self.comments_above(first_section), ""
        if not members:
            return self.next_line(self.sections[table]), ""
        position, path, kind = members[-1]
        if kind == PAIR:
            after = self.next_line(self.spans[path][1])
        elif kind == VARIABLE:
            after = self.next_line(self.variable_end(position))
        else:
            after = self.next_line(position)
        direct = [s for s in members if len(s[1]) == len(table) + 1 and s[2] in (PAIR, VARIABLE, BLOCK_OPEN)]
        return after, self.indent_of(direct[-1][0]) if direct else ""

    def next_line(self, position: int) -> int:
        """Where a line after the one holding `position` starts: on the last line of a text
        without a final newline, one is added first, so what is written there is a line of its own."""
        end = self.line_end(position)
        return self.append_text("") if end == len(self.src) else end

    def variable_end(self, position: int) -> int:
        """The end of the value of the variable defined at `position` (`$name: value`)."""
        return self.definition_ends[position]

    def indent_of(self, position: int) -> str:
        start = self.line_start(position)
        return self.src[start:position]

    def append_text(self, prefix: str) -> int:
        """Make room at the end of the text (a newline first if it lacks one); where to write."""
        end = len(self.src)
        if self.src and not self.src.endswith("\n") and not self.final_newline:
            self.final_newline = True  # once, however many things are written after it
            self.edits.append((end, end, "\n"))
        if prefix:
            self.edits.append((end, end, prefix))
        return end

    # -- the result --------------------------------------------------------------------

    def result(self) -> str:
        outer = [
            (start, end) for path in self.rewritten for start, end in [self.spans[path]]
        ]
        kept = [
            edit
            for edit in self.edits
            if not any(start <= edit[0] and edit[1] <= end and (edit[0], edit[1]) != (start, end)
                       for start, end in outer)
        ]
        # Stable: edits at one place stay in the order they were made.
        ordered = sorted(enumerate(kept), key=lambda item: (item[1][0], item[1][1], item[0]))
        pieces: list[str] = []
        cursor = 0
        for _, (start, end, text) in ordered:
            if start < cursor:
                continue  # inside a range already removed
            pieces.append(self.src[cursor:start])
            pieces.append(text)
            cursor = end
        pieces.append(self.src[cursor:])
        return "".join(pieces)
