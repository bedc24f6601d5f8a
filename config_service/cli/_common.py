"""Small pieces several command modules share: reading FILE or stdin, API paths, rendering API refusals."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import click

from config_service.cli._errors import REFUSED, CommandFailed
from config_service.cli._http import Api
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


def segment(name: str) -> str:
    """One URL path segment; the server checks the name, the CLI only keeps it from changing the path."""
    return quote(name, safe="")


def config_path(service: str, environment: str, *rest: str) -> str:
    return "/".join(["/v1/configs", segment(service), segment(environment), *rest])


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


def unknown_service(api: Api, service: str) -> CommandFailed | None:
    """`unknown service 'x' (did you mean 'y'?)` when SERVICE is no service the token can see.

    A service exists when it has a document or a schema. The suggestion comes from `/v1/services`,
    which lists only what the token may read, so it never names another team's service.
    """
    listed = api.request("GET", "/v1/services").json().get("services", [])
    names = [entry["service"] for entry in listed if isinstance(entry, dict) and isinstance(entry.get("service"), str)]
    if service in names:
        return None
    try:
        api.request("GET", f"/v1/schemas/{segment(service)}")
        return None
    except CommandFailed as failure:
        if failure.status != 404:
            raise
    nearest = difflib.get_close_matches(service, names, n=1)
    hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
    return CommandFailed(
        f"unknown service {service!r}{hint}", exit_code=REFUSED, error="unknown_service",
        json_output=api.json_output,
    )


@contextmanager
def naming_unknown_services(api: Api, service: str) -> Iterator[None]:
    """A 404 about a document of SERVICE says `unknown service ...` when there is no such service."""
    try:
        yield
    except CommandFailed as failure:
        if failure.status == 404 and failure.error == "not_found":
            raise unknown_service(api, service) or failure from None
        raise
