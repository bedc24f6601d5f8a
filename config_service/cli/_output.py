"""How the CLI shows things to people: aligned tables, coloured diffs on a terminal, errors with context."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import click

# What a terminal may act on instead of showing: C0 (ESC starts colour, cursor and title sequences;
# CR overwrites the line), DEL, C1 (8-bit CSI), the line and paragraph separators, and the
# bidirectional controls that reorder what is shown. Text from the server passes through
# `escape_controls` before it is printed, so a version message cannot rewrite an admin's screen.
BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
CONTROL_CHARACTERS = re.compile(f"[\x00-\x1f{BEYOND_C0}]")
# Inside JSON, `json.dumps` has escaped C0 already, and outside strings it writes only newlines
# and spaces, which must stay.
CONTROL_CHARACTERS_IN_JSON = re.compile(f"[{BEYOND_C0}]")
NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character in NAMED_ESCAPES:
        return NAMED_ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: object, *, keep_tabs: bool = False) -> str:
    """`text` with each control character written as an escape (ESC as `\\x1b`, a newline as `\\n`).

    `keep_tabs` leaves tabs alone where they are part of a document's layout (the lines of a diff).
    """
    shown = str(text)
    if keep_tabs:
        return "\t".join(CONTROL_CHARACTERS.sub(_escape, part) for part in shown.split("\t"))
    return CONTROL_CHARACTERS.sub(_escape, shown)


def say(text: object, *, err: bool = False) -> None:
    """Print one line for people that may hold text from the server."""
    click.echo(escape_controls(text), err=err)


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON with non-ASCII kept readable, but every control character as a `\\uXXXX` escape.

    `json.dumps` escapes C0 itself; C1, the separators and the bidirectional controls are legal raw
    inside a JSON string, so they are escaped here too. The data a JSON reader gets is the same.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return CONTROL_CHARACTERS_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def echo_json(value: Any) -> None:
    """The API's JSON as it came, indented; keys are the API's, so scripts can rely on them."""
    click.echo(json_text(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; the last column is not padded so lines don't trail spaces."""
    cells = [[cell_text(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(values: Sequence[str]) -> str:
        padded = [value.ljust(widths[index]) for index, value in enumerate(values[:-1])]
        return "  ".join([*padded, values[-1]]).rstrip()

    click.echo(click.style(line(list(headers)), bold=True))
    for row in cells:
        click.echo(line(row))


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return escape_controls(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return escape_controls(value)


def short_hash(value: Any) -> str:
    return str(value)[:12] if value else "-"


def echo_unified_diff(text: str) -> None:
    """A unified diff; click drops the colours by itself when stdout is not a terminal."""
    # Split on newlines only: `splitlines` would also split on CR and other controls, and hide them.
    for raw in text.removesuffix("\n").split("\n") if text else []:
        line = escape_controls(raw, keep_tabs=True)
        if line.startswith(("+++", "---")):
            click.echo(click.style(line, bold=True))
        elif line.startswith("@@"):
            click.echo(click.style(line, fg="cyan"))
        elif line.startswith("+"):
            click.echo(click.style(line, fg="green"))
        elif line.startswith("-"):
            click.echo(click.style(line, fg="red"))
        else:
            click.echo(line)


def change_lines(changes: Iterable[dict[str, Any]]) -> list[str]:
    """Structural changes as `+ path: new`, `- path: old`, `~ path: old -> new`; a change at an
    environment-local path (`"local": true`, docs/lifecycle.md) ends with `(local)`."""
    lines = []
    for change in changes:
        path = change.get("path") or "/"
        op = change.get("op")
        mark = "  (local)" if change.get("local") is True else ""
        if op == "add":
            lines.append(f"+ {path}: {value_text(change.get('new'))}{mark}")
        elif op == "remove":
            lines.append(f"- {path}: {value_text(change.get('old'))}{mark}")
        else:
            old, new = value_text(change.get("old")), value_text(change.get("new"))
            lines.append(f"~ {path}: {old} -> {new}{mark}")
    return lines


def echo_changes(changes: Sequence[dict[str, Any]]) -> None:
    colours = {"+": "green", "-": "red", "~": "yellow"}
    for line in change_lines(changes):
        click.echo(click.style(escape_controls(line), fg=colours.get(line[0])))


def value_text(value: Any) -> str:
    if isinstance(value, dict) and "$env" in value:
        if "default" in value:
            return f"@env({json.dumps(value['$env'])}, {json.dumps(value['default'], ensure_ascii=False)})"
        return f"@env({json.dumps(value['$env'])})"
    # Document order, not sorted: the reader compares it with the TSK source.
    return json.dumps(value, ensure_ascii=False)


def source_error_lines(file_name: str, source: str, line: int, column: int, message: str) -> list[str]:
    """`file:line:column: message`, then the offending line and a caret under the column."""
    lines = [f"{file_name}:{line}:{column}: {message}"]
    text_lines = source.splitlines()
    if 1 <= line <= len(text_lines):
        text = text_lines[line - 1].replace("\t", " ")
        # Very long lines (minified input) are cut around the column so the caret stays visible.
        start = max(0, column - 60)
        shown = text[start : start + 120]
        prefix = "..." if start else ""
        lines.append(f"    {prefix}{shown}")
        lines.append("    " + " " * (len(prefix) + max(column - 1 - start, 0)) + "^")
    return lines


def schema_error_lines(errors: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{path or '/'}: {message}" for path, message in errors]
