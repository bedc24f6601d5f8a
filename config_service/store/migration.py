"""`tskcfg migrate`: copy a SQLite store into an empty PostgreSQL store, and prove the copy.

Every table is copied row for row (versions keep their numbers and sequences, tokens their
secret hashes, so every token stays valid; audit entries keep their ids), in one PostgreSQL
transaction that holds the store's write lock. Before it commits, each table's row count and
a hash of its rows are computed on both sides and must match; otherwise nothing is kept.
The source's data folder is locked as a server locks it, so no server writes to it meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from config_service.store.data_folder import lock_data_folder
from config_service.store.postgresql import WRITE_LOCK, PostgresStore
from config_service.store.sqlite import SqliteStore
from config_service.store.urls import StoreUrl

# Bookkeeping of each store that is not data: never copied as rows. The global sequence
# (SQLite: sqlite_sequence's row for versions; PostgreSQL: sequence_counter) is carried over
# on its own, so event ids go on where they were.
_NOT_COPIED = {"sqlite_sequence", "schema_version", "sequence_counter"}


class MigrationRefused(Exception):
    """The migration cannot start or did not verify; nothing was written to the target."""


@dataclass(frozen=True)
class TableCopy:
    """One table's outcome: rows and hash at the source and, read back, at the target."""

    table: str
    rows: int
    source_hash: str
    target_rows: int
    target_hash: str

    @property
    def verified(self) -> bool:
        return self.rows == self.target_rows and self.source_hash == self.target_hash


def rows_hash(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """(count, sha256) of `rows`, independent of their order and of each store's types: each
    row is hashed as the JSON of its values, and the sorted row hashes are hashed together."""
    digests = sorted(
        hashlib.sha256(json.dumps(list(row), ensure_ascii=False).encode()).digest() for row in rows
    )
    total = hashlib.sha256()
    for digest in digests:
        total.update(digest)
    return len(digests), total.hexdigest()


def _sqlite_tables(source: sqlite3.Connection) -> dict[str, list[str]]:
    names = [
        row[0]
        for row in source.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if row[0] not in _NOT_COPIED
    ]
    return {name: [row[1] for row in source.execute(f'PRAGMA table_info("{name}")')] for name in names}


def _postgres_tables(target: psycopg.Connection[Any]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for name, column in target.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        if name not in _NOT_COPIED:
            tables.setdefault(name, []).append(column)
    return tables


def _last_sqlite_sequence(reader: sqlite3.Connection) -> int:
    """The last global sequence the SQLite store took (versions and rollout changes share it)."""
    row = reader.execute("SELECT seq FROM sqlite_sequence WHERE name = 'versions'").fetchone()
    taken = int(row[0]) if row is not None else 0
    (highest,) = reader.execute("SELECT COALESCE(MAX(sequence), 0) FROM versions").fetchone()
    return max(taken, int(highest))


def migrate_sqlite_to_postgresql(source: StoreUrl, target: StoreUrl) -> list[TableCopy]:
    """Copy `source` (SQLite) into `target` (PostgreSQL, empty); the verified tables.

    Raises MigrationRefused (nothing written) when the source is missing or in use, the
    target is not empty or lacks a table, or a table's count or hash differs after copying.
    """
    if source.kind != "sqlite" or source.path is None:
        raise MigrationRefused("--from must be a SQLite store URL (sqlite:///data/config.db)")
    if target.kind != "postgresql" or target.dsn is None:
        raise MigrationRefused("--to must be a PostgreSQL store URL (postgresql://user@host/db)")
    path = source.path
    if not path.is_file():
        raise MigrationRefused(f"there is no SQLite store at {path}")
    # Held as a server holds it: no server may write to the source while it is copied.
    lock = lock_data_folder(path.parent)
    try:
        # Opened as a server opens it: a file from an older release is upgraded first (and
        # backed up beside itself), one from a newer release refused (StoreTooNew).
        sqlite_store = SqliteStore(path)
        sqlite_store.open()
        sqlite_store.close()
        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return _copy(reader, target.dsn, target.shown())
        finally:
            reader.close()
    finally:
        lock.release()


def _copy(reader: sqlite3.Connection, dsn: str, shown: str) -> list[TableCopy]:
    # Opening the store creates (or migrates) its tables.
    store = PostgresStore(dsn)
    store.open()
    store.close()
    with store.connect() as connection:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            source_tables = _sqlite_tables(reader)
            target_tables = _postgres_tables(connection)
            unknown = sorted(set(source_tables) - set(target_tables))
            if unknown:
                raise MigrationRefused(
                    f"the target has no table for {', '.join(unknown)}: this tskcfg is older "
                    "than the one that made the SQLite store"
                )
            filled = []
            for name in sorted(target_tables):
                (count,) = connection.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone() or (0,)
                if count:
                    filled.append(f"{name} ({count} rows)")
            if filled:
                raise MigrationRefused(
                    f"the target store {shown} is not empty ({', '.join(filled)}); migrate "
                    "into an empty database"
                )
            copies = []
            for name, source_columns in source_tables.items():
                columns = [column for column in source_columns if column in target_tables[name]]
                missing = sorted(set(source_columns) - set(columns))
                if missing:
                    raise MigrationRefused(
                        f"the target's table {name} lacks the columns {', '.join(missing)}"
                    )
                listed = ", ".join(f'"{column}"' for column in columns)
                with connection.cursor().copy(f'COPY "{name}" ({listed}) FROM STDIN') as copy:
                    for row in reader.execute(f'SELECT {listed} FROM "{name}"'):
                        copy.write_row(row)
                rows, source_hash = rows_hash(reader.execute(f'SELECT {listed} FROM "{name}"'))
                target_rows, target_hash = rows_hash(
                    connection.execute(f'SELECT {listed} FROM "{name}"')
                )
                copies.append(TableCopy(name, rows, source_hash, target_rows, target_hash))
            last = _last_sqlite_sequence(reader)
            connection.execute("UPDATE sequence_counter SET last = %s", (last,))
            row = connection.execute("SELECT last FROM sequence_counter").fetchone()
            copied_last = int(row[0]) if row is not None else -1
            copies.append(
                TableCopy("(sequence)", last, str(last), copied_last, str(copied_last))
            )
            failed = [copy for copy in copies if not copy.verified]
            if failed:
                raise MigrationRefused(
                    "the copy does not match the source ("
                    + "; ".join(
                        f"{c.table}: {c.rows} rows {c.source_hash[:12]} at the source, "
                        f"{c.target_rows} rows {c.target_hash[:12]} copied"
                        for c in failed
                    )
                    + "); nothing was kept"
                )
    return copies


def describe(copies: list[TableCopy]) -> list[str]:
    """Lines for the command's output: per table, the rows and the hash both sides share."""
    width = max((len(copy.table) for copy in copies), default=5)
    lines = [f"{'table':<{width}}  {'rows':>8}  sha256 of the rows (source = target)"]
    for copy in copies:
        if copy.table == "(sequence)":
            lines.append(f"{'sequence':<{width}}  {copy.rows:>8}  (the last event id; the next one follows it)")
        else:
            lines.append(f"{copy.table:<{width}}  {copy.rows:>8}  {copy.source_hash}")
    return lines

