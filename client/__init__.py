"""The client library: a service's configuration from the config server, kept current without restarts.

    from tskcfg import load_config
    config = load_config("user-service")
    config.get("database.pool_size")

`AdminClient` does from Python what the `tskcfg` command does (push, promote, roll back, ...).
Import everything from `tskcfg`; the modules starting with `_` are private.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tskcfg import exceptions
from tskcfg._admin import AdminClient, Written
from tskcfg._appliers import Applier
from tskcfg._async import AsyncConfigClient
from tskcfg._cache import CacheApplier, TTLCache
from tskcfg._config import Config
from tskcfg._database import DatabaseApplier
from tskcfg._logging_applier import LoggingApplier
from tskcfg._retry import RetryPolicy
from tskcfg._security import SecurityPolicy, SecurityState
from tskcfg._sync import ConfigClient
from tskcfg.exceptions import (
    ApplyFailed,
    ConfigError,
    ConfigRetired,
    Forbidden,
    HashMismatch,
    InvalidConfig,
    NoPreviousVersion,
    NotFound,
    RequestRejected,
    ServerUnavailable,
    Unauthorized,
)

__all__ = [
    "AdminClient",
    "Applier",
    "ApplyFailed",
    "AsyncConfigClient",
    "CacheApplier",
    "Config",
    "ConfigClient",
    "ConfigError",
    "ConfigRetired",
    "DatabaseApplier",
    "Forbidden",
    "HashMismatch",
    "InvalidConfig",
    "NoPreviousVersion",
    "LoggingApplier",
    "NotFound",
    "RequestRejected",
    "RetryPolicy",
    "SecurityPolicy",
    "SecurityState",
    "ServerUnavailable",
    "TTLCache",
    "Unauthorized",
    "Written",
    "exceptions",
    "load_config",
]


def load_config(
    service: str,
    environment: str | None = None,
    *,
    server: str | Sequence[str] | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    environments_dir: str | os.PathLike[str] | None = None,
    watch_files: bool = False,
    schemas_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Get a service's config once: from the server, else the last-known-good cache, else the local file.

    `environment` defaults to `SERVICE_ENV`, else `"development"`; `server` to `CONFIG_STORE`,
    else `http://localhost:8005` (several servers: a list, or URLs separated by commas; the
    next is asked when one cannot answer); `token` to `CONFIG_TOKEN`. Raises `ServerUnavailable` naming
    what was tried when nothing answers, `InvalidConfig` when this process's environment makes
    the config invalid (no fallback hides that), and the server's 4xx (`NotFound`,
    `Unauthorized`, ...) as they are.

    With `watch_files=True` there is no server: the file `environments/<environment>/<service>.tsk`
    is read, checked against the schemas in `schemas_dir` (default: `schemas/` beside the
    environments folder) and hot-reloaded for the life of the process through the built-in
    appliers (logging, security, cache). The returned `Config` is the first one, a snapshot that
    never changes; for the current one use `ConfigClient(service, mode="files")` and read
    `client.config`.
    """
    client = ConfigClient(
        service,
        environment,
        server=server,
        token=token,
        cache_dir=cache_dir,
        environments_dir=environments_dir,
        schemas_dir=schemas_dir,
        mode="files" if watch_files else "watch",
    )
    if watch_files:
        return client.start()
    try:
        return client._fetch()
    finally:
        client.stop()
