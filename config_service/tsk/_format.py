"""`reformat(text)`: a document rewritten in canonical TSK (as `dumps` writes it), comments kept.

The parser records where each statement and each comment stands (`Layout`); every comment
is then tied to a key or table by path, and written back beside it in the canonical
document:

- a comment at the end of a line stays at the end of that key's (or header's) line;
- comment lines directly above a key, a block or a `[section]` header stay above it;
- comment lines set apart from the next statement by a blank line stay below the key or
  block above them (below an empty section: at its end), and those standing before a
  block's closer at the end of the block; blank lines between comment lines are kept;
- a top-level block's closer comment ends its `[section]` on a line of its own;
- comment lines at the top of the file followed by a blank line stay at the top, and
  those after the last statement stay at the bottom, after a blank line.

`$variables` are kept as written: each definition stays in its table, after the key it
followed (at the top level: after the last key written as a line, since tables move below
those), and each use stays `$name`.

Formatting the output again gives the same text.

`reformat` raises `CannotFormat` rather than lose something: for comments inside a value
(an array or object written over several lines), and for a variable that the canonical
order would use above its definition (defined in a table that moves below a use).
"""

from __future__ import annotations

from typing import Any

from config_service.tsk._parser import (
    AFTER,
    BLOCK_OPEN,
    CLOSE,
    INSIDE,
    PAIR,
    SECTION,
    VARIABLE,
    Layout,
    _Parser,
    loads,
)
from config_service.tsk._writer import Notes, UsedBeforeDefinition, write


class CannotFormat(ValueError):
    """The document cannot be written in canonical form without losing something; `.reason` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot keep {reason}")
        self.reason = reason


def reformat(text: str) -> str:
    """`text` in canonical TSK with its comments; TSKDecodeError when it does not parse."""
    loads(text)  # errors with positions in `text` as given (BOM, CRLF)
    src = text[1:] if text.startswith("\ufeff") else text
    src = src.replace("\r\n", "\n")
    layout = Layout()
    data = _Parser(src, layout).parse()
    try:
        return write(data, _notes(src, layout, data))
    except UsedBeforeDefinition as error:
        variable = f"${error.name}"
        line = next(
            _line(src, position)
            for position, path, kind in layout.statements
            if kind == VARIABLE and path[-1] == variable
        )
        raise CannotFormat(
            f"{variable} (line {line}): the canonical order would use it above its definition"
        ) from None


def _line(src: str, position: int) -> int:
    return src.count("\n", 0, position) + 1


def _comment(src: str, position: int) -> str:
    end = src.find("\n", position)
    return (src[position:] if end == -1 else src[position:end]).rstrip()


def _blank_line_above(src: str, position: int) -> bool:
    """Whether the line above the one holding `position` is empty (or only spaces)."""
    line_start = src.rfind("\n", 0, position) + 1
    if line_start == 0:
        return False
    above_start = src.rfind("\n", 0, line_start - 1) + 1
    return not src[above_start : line_start - 1].strip()


def _definitions(layout: Layout, data: dict[str, Any]) -> dict[Any, list[tuple[str, Any]]]:
    """Each variable definition by (table path, the key it follows in that table, or None)."""
    definitions: dict[Any, list[tuple[str, Any]]] = {}
    last_child: dict[tuple[str, ...], str] = {}  # of each table, in the order keys were made
    made: set[tuple[str, ...]] = set()
    top_line: str | None = None  # the last top-level key written as a line, not as a table
    for _, path, kind in layout.statements:
        if kind == VARIABLE:
            table, name = path[:-1], path[-1][1:]
            after = top_line if not table else last_child.get(table)
            definitions.setdefault((table, after), []).append((name, layout.variables[name]))
        elif kind in (PAIR, BLOCK_OPEN, SECTION):
            # A dotted header makes each missing table on its way, in that order.
            for size in range(1, len(path) + 1):
                if path[:size] not in made:
                    made.add(path[:size])
                    last_child[path[: size - 1]] = path[size - 1]
            if kind == PAIR and len(path) == 1 and not isinstance(data[path[0]], dict):
                top_line = path[0]
    return definitions


def _notes(src: str, layout: Layout, data: dict[str, Any]) -> Notes:
    for position, where in layout.comments:
        if where == INSIDE:
            raise CannotFormat(
                f"a comment inside a value (line {_line(src, position)}): the canonical form "
                "writes arrays and objects on one line"
            )
    items: list[tuple[int, int, Any]] = [
        (position, 1, (path, kind)) for position, path, kind in layout.statements
    ]
    items += [(position, 0, where) for position, where in layout.comments]
    items.sort(key=lambda item: (item[0], item[1]))

    notes = Notes(definitions=_definitions(layout, data))
    # Comment lines waiting for the statement below them, in runs that blank lines split.
    runs: list[list[str]] = []
    first_after_blank = False  # a blank line stood above the first run
    last: tuple[tuple[str, ...], str] | None = None  # the statement before, and its kind
    for position, is_statement, what in items:
        if not is_statement:
            text = _comment(src, position)
            if what == AFTER and last is not None:
                path, kind = last
                if kind == CLOSE:
                    notes.at(path).closer = text
                else:
                    notes.at(path).trailing = text
                continue
            blank = _blank_line_above(src, position)
            if not runs:
                first_after_blank = blank
                runs.append([text])
            elif blank:
                runs.append([text])
            else:
                runs[-1].append(text)
            continue
        path, kind = what
        blank_above = _blank_line_above(src, position)
        # A blank line above comments kept below something is kept too (else a second run,
        # reading them directly below it, would drop it).
        gap = [""] if first_after_blank else []
        if runs and kind == CLOSE:
            notes.at(path).closing.extend(gap + _joined(runs))  # the last lines of a block
        elif runs:
            # The runs a blank line sets apart from this statement, and the one directly above it.
            apart, above = (runs, []) if blank_above else (runs[:-1], runs[-1])
            leading_blank = first_after_blank
            if apart:
                if last is None:
                    notes.header.extend(_joined(apart))  # the file's own head comment
                    apart, leading_blank = [], True
                elif last[1] in (PAIR, VARIABLE, CLOSE):
                    # Set apart from what follows: they go with the key or block above.
                    notes.at(last[0]).following.extend(gap + _joined(apart))
                    apart, leading_blank = [], True
                elif last[1] == SECTION and kind == SECTION:
                    # Below an empty section, set apart from the next header: the section's end.
                    notes.at(last[0]).closing.extend(gap + _joined(apart))
                    apart, leading_blank = [], True
            note = notes.at(path)
            # First in a table: they stay above it, with the blank lines between them.
            note.leading.extend(_joined(apart) + ([""] if apart else []) + above)
            note.blank_before = note.blank_before or leading_blank
        runs = []
        if kind != CLOSE:
            note = notes.at(path)
            note.blank_before = note.blank_before or blank_above
        last = (path, kind)
    if runs:
        if last is None:
            notes.header.extend(_joined(runs))
        else:
            notes.footer.extend(_joined(runs))
    return notes


def _joined(runs: list[list[str]]) -> list[str]:
    """Runs of comment lines as lines to write, an empty line between two runs."""
    lines: list[str] = []
    for run in runs:
        if lines:
            lines.append("")
        lines.extend(run)
    return lines
