"""What `ConfigClient` and `AsyncConfigClient` share: their arguments and what a service reads."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from tskcfg._cache import CacheFactory
from tskcfg._config import Config
from tskcfg._core import ClientCore
from tskcfg._database import DatabaseApplier
from tskcfg._events import EventStreamParser
from tskcfg._retry import RetryPolicy
from tskcfg._security import SecurityPolicy
from tskcfg._settings import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, Settings, make_settings
from tskcfg._transaction import Handler

TransportT = TypeVar("TransportT")


class BaseClient(Generic[TransportT]):
    """The arguments and read side of both clients; each twin opens its own connections."""

    def __init__(
        self,
        service: str,
        environment: str | None = None,
        *,
        server: str | Sequence[str] | None = None,
        token: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        environments_dir: str | os.PathLike[str] | None = None,
        mode: str = "watch",
        poll_interval: float = 30.0,
        database: DatabaseApplier | None = None,
        cache_backends: Mapping[str, CacheFactory] | None = None,
        retry: RetryPolicy | None = None,
        instance_id: str | None = None,
        transport: TransportT | None = None,
        schemas_dir: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        report_interval: float | None = None,
        cohort: str | None = None,
    ) -> None:
        settings = make_settings(
            service,
            environment,
            server=server,
            token=token,
            cache_dir=cache_dir,
            environments_dir=environments_dir,
            mode=mode,
            poll_interval=poll_interval,
            instance_id=instance_id,
            schemas_dir=schemas_dir,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
            report_interval=report_interval,
            cohort=cohort,
        )
        self._core = ClientCore(
            settings, database=database, cache_backends=cache_backends, retry=retry
        )
        self._events = EventStreamParser()
        self._open(transport)

    def _open(self, transport: TransportT | None) -> None:
        """Create the HTTP client and the thread or task machinery."""
        raise NotImplementedError

    @property
    def config(self) -> Config:
        """The current config; replaced atomically, so a reader sees the old or the new one whole."""
        config = self._core.config
        if config is None:
            raise RuntimeError("no config yet: load() or start() the client first")
        return config

    @property
    def cache(self) -> Any:
        """The service's cache (a `TTLCache` for `backend: "memory"`), kept in step with the cache section."""
        return self._core.cache.current

    @property
    def security(self) -> SecurityPolicy:
        """Origins, keys and token settings of the security section."""
        return self._core.security

    @property
    def database(self) -> DatabaseApplier:
        """The database applier; `with client.database.connection() as conn:` lends the current connection."""
        return self._core.database

    @property
    def settings(self) -> Settings:
        return self._core.settings

    @property
    def retry(self) -> RetryPolicy:
        return self._core.retry

    def on(self, section: str) -> Callable[[Handler], Handler]:
        """Register `handler(new_section, old_section)` for a top-level key; runs after the built-ins."""
        return self._core.on(section)
