"""TSK, the configuration language: parse, write, `@env` references, wire form, hashes, JSON pointers,
values written into a text in place, the differences between two versions.

Standard library only: the server and the client both stand on this package.

    >>> from config_service import tsk
    >>> tsk.loads('port: @env("PORT", 8001)\\n')
    {'port': EnvRef('PORT', 8001)}
"""

from config_service.tsk._diff import diff_document, structural_diff, unified_diff
from config_service.tsk._document import TSK
from config_service.tsk._format import CannotFormat, reformat
from config_service.tsk._parser import MAX_CHARS, MAX_DEPTH, MAX_VALUES, decode, load, loads
from config_service.tsk._resolve import resolve, validation_view
from config_service.tsk._splice import write_values
from config_service.tsk._types import (
    MISSING,
    EnvRef,
    TSKDecodeError,
    TSKResolveError,
    json_pointer,
    pointer_key,
    pointer_parts,
    pointer_token,
    value_at,
)
from config_service.tsk._wire import (
    canonical_json,
    document_hash,
    from_wire,
    section_hashes,
    to_wire,
    wire_hash,
)
from config_service.tsk._writer import dumps

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_VALUES",
    "MISSING",
    "TSK",
    "CannotFormat",
    "EnvRef",
    "TSKDecodeError",
    "TSKResolveError",
    "canonical_json",
    "decode",
    "diff_document",
    "document_hash",
    "dumps",
    "from_wire",
    "json_pointer",
    "load",
    "loads",
    "pointer_key",
    "pointer_parts",
    "pointer_token",
    "reformat",
    "resolve",
    "section_hashes",
    "structural_diff",
    "to_wire",
    "unified_diff",
    "validation_view",
    "value_at",
    "wire_hash",
    "write_values",
]
