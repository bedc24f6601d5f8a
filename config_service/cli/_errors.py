"""The failures a `tskcfg` command ends with, each carrying its exit code (docs/cli.md: 1 refused, 2 usage,
3 unreachable), and how the client's exceptions become one."""

from __future__ import annotations

import json
from typing import IO, Any

import click

from config_service.cli._output import escape_controls, json_text
from config_service.names import InvalidName
from tskcfg import ConfigError, NoPreviousVersion, RequestRejected, ServerUnavailable

REFUSED = 1
USAGE = 2
UNREACHABLE = 3


class CommandFailed(click.ClickException):
    """A command ended without doing what was asked; `show` prints one sentence, never a traceback.

    With `json_output`, the API's error object (or one in the same shape) also goes to stdout,
    so a CI job can read `error` and `details` without parsing prose.
    """

    exit_code = REFUSED

    def __init__(
        self,
        message: str,
        *,
        exit_code: int = REFUSED,
        error: str = "refused",
        details: list[Any] | None = None,
        json_output: bool = False,
        extra_lines: list[str] | None = None,
        body: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        # click types exit_code as a class variable, but reads it from the instance when exiting.
        vars(self)["exit_code"] = exit_code
        self.error = error
        self.details = details or []
        self.json_output = json_output
        # The API's own error object, printed as it came with --json.
        self.body = body
        # The HTTP status the server answered with, when the failure is the server's answer.
        self.status = status
        # Lines printed after the message (schema paths, TSK errors with their caret).
        self.extra_lines = extra_lines if extra_lines is not None else default_detail_lines(self.details)

    def as_json(self) -> dict[str, Any]:
        if self.body and "error" in self.body:
            return self.body
        return {"error": self.error, "message": self.message, "details": self.details}

    def show(self, file: IO[Any] | None = None) -> None:
        if self.json_output:
            click.echo(json_text(self.as_json()))
        # The message and details are mostly the server's words: escaped, like all its text.
        click.echo(f"tskcfg: {escape_controls(self.message)}", err=True)
        for line in self.extra_lines:
            click.echo(escape_controls(line, keep_tabs=True), err=True)


def default_detail_lines(details: list[Any]) -> list[str]:
    """`path: message` lines for the detail shapes the API uses; anything else as compact JSON."""
    lines = []
    for item in details:
        if not isinstance(item, dict):
            lines.append(f"  {item}")
            continue
        message = item.get("message", "")
        if "environment" in item and "path" in item:
            where = f"{item['environment']} v{item.get('version')} {item.get('path') or '/'}"
            lines.append(f"  {where}: {message}")
        elif "path" in item:
            lines.append(f"  {item.get('path') or '/'}: {message}")
        elif "line" in item:
            lines.append(f"  line {item.get('line')}, column {item.get('column')}: {message}")
        else:
            lines.append(f"  {json.dumps(item, ensure_ascii=False, sort_keys=True)}")
    return lines


def failure_for(error: ConfigError | InvalidName, *, json_output: bool, has_token: bool) -> CommandFailed:
    """The CLI's ending for what `AdminClient` raised: 5xx and no answer exit 3, a 400 exits 2 (how
    the command was called), any other refusal 1; `--json` prints the server's error object."""
    if isinstance(error, InvalidName):
        return CommandFailed(str(error), error="invalid_name", json_output=json_output)
    if isinstance(error, RequestRejected):
        message = str(error)
        if error.status == 401 and not has_token:
            message += "; give --token, set TSKCFG_TOKEN, or run where data/admin.token is"
        return CommandFailed(
            message,
            exit_code=USAGE if error.status == 400 else REFUSED,
            error=error.code or f"http_{error.status}",
            details=error.details if isinstance(error.details, list) else [],
            json_output=json_output,
            body=error.body,
            status=error.status,
        )
    if isinstance(error, ServerUnavailable):
        message, code = str(error), error.code
        if error.status is None:
            code = "unreachable"
        elif code == "bad_response":
            message += "; is --server the config server?"
        return CommandFailed(
            message,
            exit_code=UNREACHABLE,
            error=code or f"http_{error.status}",
            json_output=json_output,
            body=error.body,
            status=error.status,
        )
    code = "no_previous_version" if isinstance(error, NoPreviousVersion) else "refused"
    return CommandFailed(str(error), error=code, json_output=json_output)
