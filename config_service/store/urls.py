"""Store URLs, as `tskcfg serve --store` and `tskcfg migrate --from/--to` take them.

- `sqlite:///data/config.db`: a SQLite file relative to the current folder (three slashes);
  `sqlite:////srv/tskcfg/config.db` an absolute one (four).
- `postgresql://user:password@host:5432/db` (or `postgres://`): a PostgreSQL database, any
  libpq URL (docs/replicas.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config_service.store.interface import Store

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
MAX_URL = 4096


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL: `kind` is "sqlite" (with `path`) or "postgresql" (with `dsn`)."""

    kind: str
    path: Path | None = None
    dsn: str | None = None

    def open_store(self) -> Store:
        """The store object (not yet opened)."""
        if self.kind == "sqlite":
            from config_service.store.sqlite import SqliteStore

            assert self.path is not None
            return SqliteStore(self.path)
        from config_service.store.postgresql import PostgresStore

        assert self.dsn is not None
        return PostgresStore(self.dsn)

    def shown(self) -> str:
        """The URL for logs and messages, its password replaced by `***`."""
        if self.kind == "sqlite":
            return f"{SQLITE_PREFIX}{self.path}"
        assert self.dsn is not None
        return redact(self.dsn)


def redact(dsn: str) -> str:
    """`dsn` with the password (if any) shown as `***`."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_store_url(text: str, what: str = "--store") -> StoreUrl:
    """`text` as a store URL, or ValueError naming `what` and saying what is accepted."""
    text = text.strip()
    accepted = (
        "give postgresql://user@host/db, sqlite:///relative/config.db or "
        "sqlite:////absolute/config.db"
    )
    if not text or len(text) > MAX_URL:
        raise ValueError(f"{what}: a store URL of 1 to {MAX_URL} characters is needed; {accepted}")
    if text.startswith(SQLITE_PREFIX):
        rest = text[len(SQLITE_PREFIX):]
        if not rest or rest == "/" or "?" in rest or "#" in rest:
            raise ValueError(f"{what}: {text!r} names no SQLite file; {accepted}")
        # Three slashes then a relative path; a fourth makes the path absolute.
        return StoreUrl("sqlite", path=Path(rest))
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in POSTGRES_SCHEMES and text[len(scheme):].startswith("://"):
        return StoreUrl("postgresql", dsn=text)
    raise ValueError(f"{what}: {redact(text)!r} is not a store URL; {accepted}")
