"""JSON Schema on RE2, for the server and the client: which schemas may be stored, and documents against them.

`checks` (check_schema, SchemaSet), `references` (how schemas name and reach each other),
`keywords` (the RE2 pattern keywords and the validator), `budget` (the step budget).
"""

from config_service.schema.budget import ValidationTooCostly
from config_service.schema.checks import SchemaInvalid, SchemaSet, check_schema
from config_service.schema.keywords import PatternUnsupported
from config_service.schema.references import (
    build_registry,
    identifier_failures,
    referenced_schemas,
    schema_file_name,
)

__all__ = [
    "PatternUnsupported",
    "SchemaInvalid",
    "SchemaSet",
    "ValidationTooCostly",
    "build_registry",
    "check_schema",
    "identifier_failures",
    "referenced_schemas",
    "schema_file_name",
]
