"""Small pieces several command modules share: reading FILE or stdin, showing a TSK refusal in context."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from config_service.cli._errors import REFUSED, CommandFailed
from config_service.cli._output import source_error_lines


def read_input(file: str) -> tuple[str, bytes]:
    """(display name, bytes) of FILE, or of stdin when FILE is `-`."""
    if file == "-":
        return "<stdin>", sys.stdin.buffer.read()
    try:
        return file, Path(file).read_bytes()
    except OSError as error:
        raise CommandFailed(
            f"cannot read {file}: {error.strerror or error}", exit_code=REFUSED, error="unreadable"
        ) from None


def with_source_context(failure: CommandFailed, file_name: str, source: bytes) -> CommandFailed:
    """Show `invalid_tsk` details as file:line:column with the line and a caret, from the text sent."""
    if failure.error != "invalid_tsk":
        return failure
    text = source.decode("utf-8", errors="replace")
    lines: list[str] = []
    for item in failure.details:
        if isinstance(item, dict) and "line" in item:
            lines += source_error_lines(
                file_name, text, int(item.get("line") or 0), int(item.get("column") or 0), str(item.get("message", ""))
            )
    if lines:
        failure.extra_lines = lines
    return failure


def echo_err(message: str) -> None:
    click.echo(message, err=True)
