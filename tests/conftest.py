"""Fixtures shared by the server's tests: a real `tskcfg serve` (`server`) and an admin client
(`admin`); a real PostgreSQL (`postgres`, session-wide) and a fresh database on it (`postgres_dsn`)."""

from tests.postgres import postgres, postgres_dsn
from tests.serving import admin, server

__all__ = ["admin", "postgres", "postgres_dsn", "server"]
