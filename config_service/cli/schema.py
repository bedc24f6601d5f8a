"""`tskcfg schema push|get`: a service's JSON Schema on the server."""

from __future__ import annotations

import json
from typing import Any

import click

from config_service.cli._common import read_input
from config_service.cli._errors import REFUSED, CommandFailed
from config_service.cli._group import State, global_options, main, pass_state
from config_service.cli._output import echo_json, say


@main.group()
def schema() -> None:
    """Put or read the JSON Schema (draft 2020-12) a service's documents must pass.

    \b
    Examples:
      tskcfg schema push user-service schemas/user-service.json
      tskcfg schema get user-service
    """


@schema.command("push")
@click.argument("service")
@click.argument("file")
@click.option("--force", is_flag=True, help="Store it even if current documents fail it (admin only).")
@global_options
@pass_state
def schema_push(state: State, service: str, file: str, force: bool) -> None:
    """Store FILE as the schema of SERVICE (FILE `-` reads stdin).

    \b
    The server refuses (exit 1) a schema that is not valid, or that a current
    document of SERVICE in any environment fails, listing each failure,
    unless --force.

    \b
    Example:
      tskcfg schema push user-service schemas/user-service.json
    """
    file_name, raw = read_input(file)
    try:
        document: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CommandFailed(
            f"{file_name} is not JSON: {error}", exit_code=REFUSED, error="invalid_schema",
            json_output=state.json,
        ) from None
    written = state.api().put_schema(service, document, force=force)
    body = written.body
    if state.json:
        echo_json(body)
    elif written.created:
        say(f"{service}: schema version {body.get('version')} stored")
    else:
        say(f"{service}: unchanged, schema version {body.get('version')} is identical")


@schema.command("get")
@click.argument("service")
@global_options
@pass_state
def schema_get(state: State, service: str) -> None:
    """Print the current schema of SERVICE (--json: with its version).

    \b
    Example:
      tskcfg schema get user-service > user-service.json
    """
    body = state.api().schema(service)
    echo_json(body if state.json else body.get("schema"))
