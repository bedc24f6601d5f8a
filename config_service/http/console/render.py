"""Turning what the core answers into the console's HTML: the templates (everything escaped),
TSK highlighting done on the server, side-by-side diffs, ages, and the answer's headers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

HERE = Path(__file__).resolve().parent

# Every console answer: no inline script or style can run, no other host is reached, no frame
# may hold the console (docs/console.md, "Security").
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# One TSK token per match; the group that matched names its class (docs/tsk.md).
_TOKENS = re.compile(
    r'(?P<string>"""[\s\S]*?(?:"""|$(?![\s\S]))|\'\'\'[\s\S]*?(?:\'\'\'|$(?![\s\S]))'
    r'|"(?:[^"\\\n]|\\.)*"?|\'[^\'\n]*\'?)'
    r"|(?P<comment>#[^\n]*)"
    r"|(?P<section>(?m:^)[ \t]*\[[^\]\n]*\])"
    r"|(?P<key>(?m:^)[ \t]*[A-Za-z_][A-Za-z0-9_-]*(?=[ \t]*[:={>]))"
    r"|(?P<variable>\$[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<env>@[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<literal>\b(?:true|false|null)\b)"
    r"|(?P<number>(?<![\w.])[+-]?[0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][+-]?[0-9]+)?\b)",
    re.MULTILINE,
)


def highlight(source: str) -> list[Markup]:
    """The source's lines as escaped HTML, TSK tokens wrapped in `<span class="t-...">`."""
    lines: list[list[str]] = [[]]

    def add(text: str, kind: str | None) -> None:
        for index, piece in enumerate(text.split("\n")):
            if index:
                lines.append([])
            if piece:
                escaped = str(escape(piece))
                lines[-1].append(f'<span class="t-{kind}">{escaped}</span>' if kind else escaped)

    position = 0
    for match in _TOKENS.finditer(source):
        add(source[position : match.start()], None)
        add(match.group(), match.lastgroup)
        position = match.end()
    add(source[position:], None)
    if len(lines) > 1 and not lines[-1] and source.endswith("\n"):
        lines.pop()
    return [Markup("".join(parts)) for parts in lines]


@dataclass(frozen=True)
class Row:
    """One row of a side-by-side diff: old line (number, text) and new line; `kind` is
    same, change, remove, add or gap."""

    kind: str
    old_number: int | None
    old: str
    new_number: int | None
    new: str


_HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def side_by_side(unified: str) -> list[Row]:
    """The rows of a unified diff (as the API's `unified`), old beside new."""
    rows: list[Row] = []
    old_number = new_number = 0
    removed: list[tuple[int, str]] = []
    added: list[tuple[int, str]] = []

    def flush() -> None:
        for index in range(max(len(removed), len(added))):
            old = removed[index] if index < len(removed) else (None, "")
            new = added[index] if index < len(added) else (None, "")
            kind = "change" if old[0] is not None and new[0] is not None else (
                "remove" if old[0] is not None else "add"
            )
            rows.append(Row(kind, old[0], old[1], new[0], new[1]))
        removed.clear()
        added.clear()

    for line in unified.splitlines():
        if line.startswith(("--- ", "+++ ")) or line.startswith("\\"):
            continue
        hunk = _HUNK.match(line)
        if hunk:
            flush()
            if rows:
                rows.append(Row("gap", None, "", None, ""))
            old_number, new_number = int(hunk.group(1)), int(hunk.group(2))
        elif line.startswith("-"):
            removed.append((old_number, line[1:]))
            old_number += 1
        elif line.startswith("+"):
            added.append((new_number, line[1:]))
            new_number += 1
        else:
            flush()
            rows.append(Row("same", old_number, line[1:], new_number, line[1:]))
            old_number += 1
            new_number += 1
    flush()
    return rows


def age(moment: str | None, now: datetime | None = None) -> str:
    """`2026-12-02T10:00:00.000Z` as "5 min ago" (what the matrix shows)."""
    if not moment:
        return ""
    try:
        then = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return moment
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def tree_items(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(key, JSON pointer, value) of a mapping's or list's items, for the config tree."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key), f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}", item
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield str(index), f"{path}/{index}", item


def scalar(value: Any) -> str:
    """A leaf of the config as the tree shows it (`@env` references as written)."""
    if isinstance(value, dict) and "$env" in value:
        default = f", {scalar(value['default'])}" if "default" in value else ""
        return f'@env("{value["$env"]}"{default})'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def is_branch(value: Any) -> bool:
    return (isinstance(value, dict) and "$env" not in value) or isinstance(value, list)


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["age"] = age
templates.globals.update(
    highlight=highlight,
    side_by_side=side_by_side,
    tree_items=tree_items,
    scalar=scalar,
    is_branch=is_branch,
)


def html(
    request: Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page rendered from `template`, with the console's headers; never cached."""
    body = templates.get_template(template).render(
        request=request, root="/ui", **context
    )
    response = HTMLResponse(body, status_code=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response
