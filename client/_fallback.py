"""What a client has without the server: its last-known-good cache and the local file, each validated
exactly as a server answer before anything starts from it."""

from __future__ import annotations

import logging

from config_service.schema import SchemaSet
from tskcfg import exceptions
from tskcfg._answers import Received, received_from_file
from tskcfg._config import Config
from tskcfg._documents import build, describe
from tskcfg._lkg import read_lkg
from tskcfg._schemas import lkg_schemas, local_schemas
from tskcfg._settings import Settings

logger = logging.getLogger("tskcfg")


class LocalSources:
    """The cache and the local file of one client, and whether the file changed since it was read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._file_signature: tuple[int, int, int] | None = None

    def read_cache(self) -> tuple[Received, SchemaSet | None] | None:
        """The last-known-good document with the schemas it was validated against, or None
        when there is none usable (damage is logged)."""
        path = self.settings.lkg_path
        stored = read_lkg(path, service=self.settings.service, environment=self.settings.environment)
        if stored is None:
            return None
        try:
            schemas = lkg_schemas(stored)
        except (ValueError, TypeError, RecursionError) as error:
            logger.warning("last-known-good %s ignored: %s", path, error)
            return None
        received = Received(
            version=stored.get("version"),
            hash=stored["hash"],
            wire=stored["config"],
            origin=f"last-known-good {path}",
        )
        return received, schemas

    def read_file(self, schemas: SchemaSet | None = None) -> Config:
        """The local file, checked against `schemas`, else against those in `schemas_dir`."""
        self._file_signature = self._signature()
        received = received_from_file(self.settings.file_path)
        if schemas is None:
            schemas = local_schemas(self.settings.schemas_dir, self.settings.service)
        return build(self.settings, received, "file", schemas)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            status = self.settings.file_path.stat()
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def file_changed(self) -> bool:
        """Whether the local file differs from when it was last read.

        The file watcher only sees events after it has started; this check, made on its
        timeouts, catches an edit made between the first load and the watcher's start.
        """
        return self._signature() != self._file_signature

    def fallback(self, tried: list[str]) -> Config:
        """Start-up without the server: the cache, then the local file, each validated exactly as
        a server answer. When neither is usable: InvalidConfig if one failed validation here
        (this process makes it invalid), else ServerUnavailable. `tried` gathers why each
        source was not used."""
        invalid: exceptions.InvalidConfig | None = None
        config, schemas = None, None
        cache_path = self.settings.lkg_path
        cached = self.read_cache()
        if cached is None:
            tried.append(f"cache {cache_path}: none usable")
        else:
            received, schemas = cached
            try:
                config = build(self.settings, received, "cache", schemas)
            except exceptions.InvalidConfig as error:
                logger.warning("last-known-good %s not usable: %s", cache_path, error)
                tried.append(f"cache {cache_path}: {error}")
                invalid = error
        if config is None:
            path = self.settings.file_path
            if path.is_file():
                try:
                    # Checked against the schema the cache was validated with, the newest known.
                    config = self.read_file(schemas)
                except exceptions.InvalidConfig as error:
                    tried.append(f"file {path}: {error}")
                    invalid = invalid or error
                except exceptions.ConfigError as error:  # gone since is_file(), unreadable
                    tried.append(f"file {path}: {error}")
            else:
                tried.append(f"file {path}: not found")
        if config is None:
            message = (
                f"no config for {self.settings.service}/{self.settings.environment}; tried "
                + "; ".join(tried)
            )
            if invalid is not None:
                raise exceptions.InvalidConfig(message, details=invalid.details)
            raise exceptions.ServerUnavailable(message)
        logger.warning(
            "config server unavailable; %s/%s starts from the %s",
            self.settings.service,
            self.settings.environment,
            describe(config, self.settings.file_path),
        )
        return config
