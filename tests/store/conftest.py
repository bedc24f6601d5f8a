"""The shared store tests run on both stores: `stores` makes store objects on one fresh store
(a SQLite file, or an empty PostgreSQL database), `store` is one of them, opened.

Two objects from one `stores` are two servers on one store (replicas, with PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config_service.store import SqliteStore, Store

StoreMaker = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    """`stores()` opens another store object on the same fresh store; all are closed after."""
    make: Callable[[], Store]
    if request.param == "sqlite":
        path = tmp_path / "config.db"
        make = lambda: SqliteStore(path)  # noqa: E731
    else:
        from config_service.store.postgresql import PostgresStore

        server = request.getfixturevalue("postgres")
        server.ensure_running()
        dsn = server.create_database()
        make = lambda: PostgresStore(dsn)  # noqa: E731
    opened: list[Store] = []

    def open_one() -> Store:
        store = make()
        store.open()
        opened.append(store)
        return store

    try:
        yield open_one
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def store(stores: StoreMaker) -> Store:
    return stores()
