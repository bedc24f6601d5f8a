"""Commands on the life of services and documents: `service create`, `retire`, `sync take-file`."""

from __future__ import annotations

import click

from config_service.cli._group import State, global_options, main, pass_state
from config_service.cli._output import echo_json, say


@main.group()
def service() -> None:
    """Create services (a push to a service that does not exist is refused).

    \b
    Example:
      tskcfg service create billing
    """


@service.command("create")
@click.argument("name")
@global_options
@pass_state
def service_create(state: State, name: str) -> None:
    """Create the service NAME (admin token), so pushes to it are accepted.

    \b
    A service also comes to exist when its schema is put, or when a file for
    it appears under environments/. Creating one that exists changes nothing.

    \b
    Example:
      tskcfg service create billing
    """
    written = state.api().create_service(name)
    if state.json:
        echo_json(written.body)
    elif written.created:
        say(f"service {name} created")
    else:
        say(f"service {name} exists already (since {written.body.get('created_at')}, "
            f"from {written.body.get('origin')})")


@main.command()
@click.argument("service")
@click.argument("environment", required=False)
@click.option("-m", "--message", default="", help="Why; kept in the history.")
@click.option("--if-version", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only if the current version is N; else exit 1.")
@global_options
@pass_state
def retire(
    state: State, service: str, environment: str | None, message: str, if_version: int | None
) -> None:
    """Retire SERVICE's document in ENVIRONMENT, or every environment's (admin) without ENVIRONMENT.

    \b
    A retired document answers 404 `retired`; its history stays, running clients keep
    their config, and the next push revives it with the next version number.

    \b
    Examples:
      tskcfg retire billing staging -m "moved to payments"
      tskcfg retire billing
    """
    api = state.api()
    if environment is None:
        if message or if_version is not None:
            raise click.UsageError("-m and --if-version go with ENVIRONMENT (one document)")
        body = api.retire_service(service)
        if state.json:
            echo_json(body)
            return
        retired = body.get("retired") or []
        if not retired:
            say(f"{service}: no document to retire")
        for entry in retired:
            what = "retired at" if entry.get("created") else "already retired at"
            say(f"{service}/{entry.get('environment')}: {what} version {entry.get('version')}")
        return
    written = api.retire(service, environment, message=message, if_version=if_version)
    if state.json:
        echo_json(written.body)
    elif written.created:
        say(f"{service}/{environment}: retired at version {written.body.get('version')}")
    else:
        say(f"{service}/{environment}: already retired at version {written.body.get('version')}")


@main.group()
def sync() -> None:
    """Settle a sync conflict between a file under environments/ and the API.

    \b
    Example:
      tskcfg sync take-file user-service staging
    """


@sync.command("take-file")
@click.argument("service")
@click.argument("environment")
@global_options
@pass_state
def sync_take_file(state: State, service: str, environment: str) -> None:
    """Make the server's file for SERVICE in ENVIRONMENT the next version (writer token).

    \b
    For a document in a sync conflict: its file changed after the document moved on
    through the API, so file sync held the change back. Taking the file validates it
    like a push and stores it (kind sync); the other way out is to make the file equal
    the current source (tskcfg get SERVICE ENVIRONMENT > the file). Exit 1 when the
    document is not in conflict or the server has no such file.

    \b
    Example:
      tskcfg sync take-file user-service staging
    """
    written = state.api().take_file(service, environment)
    if state.json:
        echo_json(written.body)
    elif written.created:
        say(f"{service}/{environment}: the file is now version {written.body.get('version')}")
    else:
        say(f"{service}/{environment}: the file equals version {written.body.get('version')}; "
            "the conflict is over")
