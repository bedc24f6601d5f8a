"""The schemas a client validates with when they do not come from the server: local files, the cache."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config_service.schema import (
    SchemaInvalid,
    SchemaSet,
    check_schema,
    referenced_schemas,
    schema_file_name,
)
from tskcfg import exceptions


def local_schemas(directory: Path, service: str) -> SchemaSet | None:
    """`<directory>/<service>.json` with the section schemas it refers to, checked as the server
    checks a schema it is given; None when the directory has no schema for the service."""
    if not (directory / schema_file_name(service)).is_file():
        return None
    schemas: dict[str, Any] = {}
    pending = [service]
    while pending:
        name = pending.pop()
        path = directory / schema_file_name(name)
        try:
            schemas[name] = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise exceptions.InvalidConfig(
                f"{path}: cannot be read ({error.strerror or error})"
            ) from error
        except (ValueError, RecursionError) as error:
            raise exceptions.InvalidConfig(f"{path} is not JSON: {error}") from error
        for target in sorted(referenced_schemas(schemas[name])):
            # A missing one is left to check_schema, which says which $ref does not resolve.
            if target not in schemas and (directory / schema_file_name(target)).is_file():
                pending.append(target)
    for name, schema in schemas.items():
        others = {other: value for other, value in schemas.items() if other != name}
        try:
            check_schema(name, schema, others)
        except SchemaInvalid as error:
            raise exceptions.InvalidConfig(
                f"{directory / schema_file_name(name)}: {error}", details=error.details
            ) from None
    return SchemaSet(schemas, generation=0)


def lkg_schemas(stored: Mapping[str, Any]) -> SchemaSet | None:
    """The schemas a last-known-good record was validated against (None: on the server only)."""
    schemas = stored.get("schema")
    if schemas is None:
        return None
    if not isinstance(schemas, dict) or not all(
        isinstance(schema, dict) for schema in schemas.values()
    ):
        raise ValueError("its schema is not a set of schemas by name")
    return SchemaSet(schemas, generation=0)
