"""How the CLI shows things to people: aligned tables, coloured diffs on a terminal, errors with context."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click


def echo_json(value: Any) -> None:
    """The API's JSON as it came, indented; keys are the API's, so scripts can rely on them."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


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
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return " ".join(str(value).split())


def short_hash(value: Any) -> str:
    return str(value)[:12] if value else "-"


def echo_unified_diff(text: str) -> None:
    """A unified diff; click drops the colours by itself when stdout is not a terminal."""
    for line in text.splitlines():
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
    """Structural changes as `+ path: new`, `- path: old`, `~ path: old -> new`."""
    lines = []
    for change in changes:
        path = change.get("path") or "/"
        op = change.get("op")
        if op == "add":
            lines.append(f"+ {path}: {value_text(change.get('new'))}")
        elif op == "remove":
            lines.append(f"- {path}: {value_text(change.get('old'))}")
        else:
            old, new = value_text(change.get("old")), value_text(change.get("new"))
            lines.append(f"~ {path}: {old} -> {new}")
    return lines


def echo_changes(changes: Sequence[dict[str, Any]]) -> None:
    colours = {"+": "green", "-": "red", "~": "yellow"}
    for line in change_lines(changes):
        click.echo(click.style(line, fg=colours.get(line[0])))


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
