"""`tskcfg token create|list|revoke`: scoped API tokens (admin)."""

from __future__ import annotations

import click

from config_service.cli._group import State, global_options, main, pass_state
from config_service.cli._output import echo_json, say, table


@main.group()
def token() -> None:
    """Create, list and revoke API tokens (needs an admin token).

    \b
    Example:
      tskcfg token create ci --role writer --service 'user-*' --env development --env staging
    """


@token.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["reader", "writer", "admin"]), help="What it may do.")
@click.option("--service", "services", multiple=True, required=True, metavar="PATTERN",
              help="Services it covers, e.g. 'user-*' or '*' (repeatable).")
@click.option("--env", "environments", multiple=True, required=True, metavar="ENV",
              help="Environments it covers, or '*' (repeatable).")
@global_options
@pass_state
def token_create(
    state: State, name: str, role: str, services: tuple[str, ...], environments: tuple[str, ...]
) -> None:
    """Create a token; the secret is printed once, on stdout, and never again.

    \b
    Example (a CI token that cannot touch production):
      export TSKCFG_TOKEN=$(tskcfg token create ci --role writer \\
          --service 'user-*' --env development --env staging)
    """
    body = state.api().create_token(name, role, services, environments)
    if state.json:
        echo_json(body)
        return
    say(
        f"token {body.get('name')!r} (id {body.get('id')}, {body.get('role')}, services "
        f"{', '.join(body.get('services', []))}, environments {', '.join(body.get('environments', []))}); "
        "store it now, it is not shown again:",
        err=True,
    )
    say(body.get("token") or "")


@token.command("list")
@global_options
@pass_state
def token_list(state: State) -> None:
    """List tokens (never their secrets).

    \b
    Example:
      tskcfg token list
    """
    body = state.api().tokens()
    if state.json:
        echo_json(body)
        return
    table(
        ["ID", "NAME", "ROLE", "SERVICES", "ENVIRONMENTS", "CREATED", "REVOKED"],
        [
            [item.get("id"), item.get("name"), item.get("role"), ",".join(item.get("services", [])),
             ",".join(item.get("environments", [])), item.get("created_at"), item.get("revoked_at")]
            for item in body.get("tokens", [])
        ],
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@global_options
@pass_state
def token_revoke(state: State, token_id: str) -> None:
    """Revoke a token by its ID (see `tskcfg token list`); it stops working at once.

    \b
    Example:
      tskcfg token revoke 3
    """
    state.api().revoke_token(token_id)
    if state.json:
        echo_json({"id": token_id, "revoked": True})
    else:
        click.echo(f"token {token_id} revoked")
