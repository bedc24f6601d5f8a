"""The schemas a client validates with: the server's, compiled once per version, or local files, the cache."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from referencing.exceptions import Unresolvable

from config_service.schema import (
    SchemaInvalid,
    SchemaSet,
    build_registry,
    check_schema,
    referenced_schemas,
    schema_file_name,
)
from tskcfg import exceptions
from tskcfg._answers import SchemaAnswer

logger = logging.getLogger("tskcfg")


def sections_to_fetch(
    answer: SchemaAnswer, sections: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """Section schemas the service schema refers to by file name and that `sections` do
    not provide (a schema is known by its name only, never by an `$id` inside another)."""
    registry = build_registry({**(sections or {}), answer.name: answer.schema})
    resolver = registry.resolver(base_uri=schema_file_name(answer.name))
    missing = []
    for name in sorted(referenced_schemas(answer.schema)):
        try:
            resolver.lookup(schema_file_name(name))
        except Unresolvable:
            missing.append(name)
    return missing


class SchemaCompiler:
    """The server's schemas of one service, compiled once per schema version."""

    def __init__(self) -> None:
        # (schema version, compiled schemas or None when unusable on the client)
        self._compiled: tuple[Any, SchemaSet | None] | None = None

    def cached(self, answer: SchemaAnswer) -> tuple[bool, SchemaSet | None]:
        """(True, compiled) when this schema version was compiled already (compiled may be None)."""
        compiled = self._compiled
        if compiled is not None and compiled[0] == answer.version:
            return True, compiled[1]
        return False, None

    def compile(
        self, answer: SchemaAnswer, sections: Mapping[str, Mapping[str, Any]]
    ) -> SchemaSet | None:
        """Compile the service schema with its section schemas, and keep it for its version.

        When a section schema could not be had (say the token does not cover it), the client
        skips its own validation with a warning: the server validated the document already.
        """
        missing = sections_to_fetch(answer, sections)
        if missing:
            logger.warning(
                "the schema of %s refers to %s, which this client cannot read; validating on the server only",
                answer.name,
                ", ".join(schema_file_name(name) for name in missing),
            )
            self._compiled = (answer.version, None)
            return None
        compiled = SchemaSet({**sections, answer.name: answer.schema}, generation=0)
        self._compiled = (answer.version, compiled)
        return compiled


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
