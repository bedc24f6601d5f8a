"""Store URLs: three slashes a relative SQLite path, four an absolute one; PostgreSQL URLs as
given, shown without their password; anything else refused, naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest

from config_service.store import SqliteStore
from config_service.store.postgresql import PostgresStore
from config_service.store.urls import parse_store_url, redact


def test_sqlite_urls_are_relative_with_three_slashes_and_absolute_with_four() -> None:
    relative = parse_store_url("sqlite:///data/config.db")
    assert (relative.kind, relative.path) == ("sqlite", Path("data/config.db"))
    absolute = parse_store_url("sqlite:////srv/tskcfg/config.db")
    assert absolute.path == Path("/srv/tskcfg/config.db") and absolute.path.is_absolute()
    assert absolute.shown() == "sqlite:////srv/tskcfg/config.db"
    assert isinstance(absolute.open_store(), SqliteStore)


def test_postgresql_urls_keep_their_options_and_hide_their_password() -> None:
    url = parse_store_url("postgresql://tskcfg:s3cret@db:5432/config?sslmode=require")
    assert (url.kind, url.dsn) == ("postgresql", "postgresql://tskcfg:s3cret@db:5432/config?sslmode=require")
    assert url.shown() == "postgresql://tskcfg:***@db:5432/config?sslmode=require"
    assert "s3cret" not in repr(url.open_store())
    assert isinstance(url.open_store(), PostgresStore)
    assert parse_store_url("postgres://db/config").kind == "postgresql"
    assert redact("postgresql://db/config") == "postgresql://db/config"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "a store URL of 1 to 4096 characters"),
        ("x" * 5000, "a store URL of 1 to 4096 characters"),
        ("sqlite:///", "names no SQLite file"),
        ("sqlite:///a.db?mode=ro", "names no SQLite file"),
        ("sqlite://relative.db", "is not a store URL"),
        ("mysql://u:pw@db/config", "'mysql://u:***@db/config' is not a store URL"),
        ("postgresql:/db", "is not a store URL"),
    ],
)
def test_anything_else_is_refused_naming_the_option(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="^--to: ") as refused:
        parse_store_url(text, "--to")
    assert says in str(refused.value)
    assert "pw" not in str(refused.value)
