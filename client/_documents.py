"""Turning a received document into a `Config`: its hash checked, `@env` resolved here, validated."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from config_service import tsk
from config_service.schema import SchemaSet
from tskcfg import exceptions
from tskcfg._answers import Received
from tskcfg._config import Config, Source
from tskcfg._redaction import hide_environment_values
from tskcfg._settings import Settings


def decode(received: Received) -> Any:
    """The TSK data of a received document, its hash checked.

    What fails here is a document damaged on its way (bad hash, not a document): from the
    server, an answer that is not a valid config, which a fallback may stand in for.
    """
    try:
        data = tsk.from_wire(received.wire)
        actual = tsk.document_hash(data)
    except (ValueError, TypeError, RecursionError) as error:
        raise exceptions.InvalidConfig(
            f"{received.label} is not a valid document: {error}"
        ) from error
    if actual != received.hash:
        raise exceptions.HashMismatch(
            f"{received.label} was announced with hash {received.hash[:12]}… "
            f"but its data hashes to {actual[:12]}…; not applied"
        )
    return data


def resolve(
    settings: Settings,
    received: Received,
    data: Any,
    source: Source,
    schemas: SchemaSet | None = None,
) -> Config:
    """Resolve `@env` in this process and validate: a Config ready to apply.

    What fails here is made invalid by this process's environment (or, for a local file,
    by its own content): no fallback may hide it, the cache would fail the same way.
    """
    try:
        resolved = tsk.resolve(data, environ=os.environ)
    except tsk.TSKResolveError as error:
        # The message quotes the variable's text, which may be a secret: it is logged and
        # reported to the server, so the text is left out.
        message = str(error)
        raw = os.environ.get(error.name)
        if raw is not None and raw.strip():
            message = message.replace(repr(raw.strip()), "set to a value (not shown)")
        raise exceptions.InvalidConfig(
            f"{received.label}: {message}",
            details=[{"variable": error.name, "message": message}],
        ) from None
    if schemas is not None:
        details = hide_environment_values(
            schemas.errors(settings.service, resolved), data, resolved
        )
        if details:
            first = details[0]
            raise exceptions.InvalidConfig(
                f"{received.label} does not pass the {settings.service} schema "
                f"after resolving @env: {first['path']}: {first['message']}",
                details=details,
            )
    return Config(
        resolved,
        service=settings.service,
        environment=settings.environment,
        version=received.version,
        hash=received.hash,
        source=source,
        wire=received.wire,
        section_hashes=tsk.section_hashes(resolved),
        schemas=schemas.schemas if schemas is not None else None,
    )


def build(
    settings: Settings, received: Received, source: Source, schemas: SchemaSet | None = None
) -> Config:
    """Check the hash, resolve `@env` in this process, validate: a Config ready to apply."""
    return resolve(settings, received, decode(received), source, schemas)


def describe(config: Config | None, file_path: Path) -> str:
    """How messages name a config: its version, or where it came from when it has none."""
    if config is None:
        return "no config"
    if config.source == "file":
        return f"file {file_path}"
    if config.source == "cache":
        return f"last-known-good version {config.version}"
    return f"version {config.version}"
