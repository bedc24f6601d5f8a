"""`tskcfg migrate`: move a SQLite store into PostgreSQL with its whole history (docs/replicas.md)."""

from __future__ import annotations

import click

from config_service.cli._group import main


@main.command()
@click.option(
    "--from", "source", required=True, metavar="URL",
    help="The SQLite store: sqlite:///data/config.db (relative to the current folder) or "
    "sqlite:////srv/tskcfg/config.db (absolute).",
)
@click.option(
    "--to", "target", required=True, metavar="URL",
    help="An empty PostgreSQL database: postgresql://user@host/db.",
)
def migrate(source: str, target: str) -> None:
    """Copy a SQLite store into an empty PostgreSQL store, and verify the copy.

    Versions keep their numbers and sequences, tokens stay valid, and schemas, audit and
    instances come along. Each table's row count and hash must match on both sides, or
    nothing is kept. Stop the server that uses the SQLite store first.

    Example: tskcfg migrate --from sqlite:///data/config.db --to postgresql://tskcfg@db/tskcfg
    """
    from config_service.store.data_folder import DataFolderInUse
    from config_service.store.migration import (
        MigrationRefused,
        describe,
        migrate_sqlite_to_postgresql,
    )
    from config_service.store.records import StoreNewerThanServer, StoreUnavailable
    from config_service.store.urls import parse_store_url

    try:
        source_url = parse_store_url(source, "--from")
        target_url = parse_store_url(target, "--to")
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        copies = migrate_sqlite_to_postgresql(source_url, target_url)
    except (
        MigrationRefused, DataFolderInUse, StoreUnavailable, StoreNewerThanServer
    ) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"copied {source_url.shown()} to {target_url.shown()}")
    for line in describe(copies):
        click.echo(line)
    tables = [copy for copy in copies if copy.table != "(sequence)"]
    click.echo(
        f"verified: {len(tables)} tables, {sum(c.rows for c in tables)} rows, every count and hash matches"
    )
