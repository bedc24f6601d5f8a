"""Reaching the PostgreSQL store's database: the libpq options every connection gets, the
errors that mean PostgreSQL is away, and how they become `StoreUnavailable` (the server
answers 503 `store_unavailable`, docs/replicas.md). The pool of read connections that uses
them is the store's (`PostgresStore._connection`, config_service/store/postgresql.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from config_service.store.records import StoreUnavailable

# Seconds to wait for a connection before a read or write is StoreUnavailable.
CONNECT_TIMEOUT = 5
# Seconds a read waits for a pooled connection before checking whether PostgreSQL is away.
QUICK_POOL_WAIT = 0.25

# The errors that mean "PostgreSQL is away" (a lost or refused connection, a pool timeout).
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)


class StaleConnection(Exception):
    """A pooled connection that broke before this use; another may work."""


def unavailable(error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"the PostgreSQL store cannot be reached ({str(error).strip() or type(error).__name__})")


def connection_options(dsn: str, name: str, connect_timeout: float) -> dict[str, Any]:
    """libpq options for every connection, unless the DSN sets them: a connect timeout,
    and TCP keepalives, so a connection to a PostgreSQL that vanished (a network cut, a
    powered-off machine) fails within about half a minute instead of hanging a write."""
    options: dict[str, Any] = {
        "application_name": name,
        "connect_timeout": max(1, int(connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    given = conninfo_to_dict(dsn)
    return {key: value for key, value in options.items() if key not in given}


def dict_rows(connection: psycopg.Connection[Any], sql: str, params: Any = ()) -> list[dict[str, Any]]:
    """The rows a statement answers, as dicts (none for a statement that answers none)."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []
