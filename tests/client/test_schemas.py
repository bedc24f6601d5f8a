"""The schemas a client validates with: the sections fetched by name, compiled once per version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clienttest import ROOT, SERVICE
from flowtest import DOCUMENT, core_for, received

from tskcfg import InvalidConfig
from tskcfg._answers import SchemaAnswer
from tskcfg._documents import build
from tskcfg._schemas import sections_to_fetch

# ---------------------------------------------------------------------------- schemas


def schema_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "schemas" / f"{name}.json").read_text())
    return loaded


SECTIONS = ("cache", "database", "logging", "security")


def test_section_schemas_are_fetched_by_name_even_when_a_schema_carries_copies(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    plain = SchemaAnswer(SERVICE, 1, schema_file(SERVICE))
    assert sections_to_fetch(plain) == list(SECTIONS)
    # A schema is known by its name only: copies under their own `$id` (which a server no
    # longer stores) do not stand in for the section schemas, on the server or here.
    inlined = {**schema_file(SERVICE), "$defs": {name: schema_file(name) for name in SECTIONS}}
    assert sections_to_fetch(SchemaAnswer(SERVICE, 2, inlined)) == list(SECTIONS)
    sections = {name: schema_file(name) for name in SECTIONS}
    compiled = core.compiler.compile(SchemaAnswer(SERVICE, 2, inlined), sections)
    assert compiled is not None
    with pytest.raises(InvalidConfig) as caught:
        build(core.settings, received(DOCUMENT.replace("pool_size: 2", "pool_size: 0")), "server", compiled)
    assert caught.value.details[0]["path"] == "/database/pool_size"


def test_a_schema_whose_sections_cannot_be_had_is_skipped_once_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    core = core_for(tmp_path)
    answer = SchemaAnswer(SERVICE, 3, schema_file(SERVICE))
    assert core.compiler.compile(answer, {}) is None
    assert "cache.json, database.json, logging.json, security.json" in caplog.text
    assert "validating on the server only" in caplog.text
    assert core.compiler.cached(answer) == (True, None)
    complete = core.compiler.compile(
        SchemaAnswer(SERVICE, 4, schema_file(SERVICE)),
        {name: schema_file(name) for name in SECTIONS},
    )
    assert complete is not None and core.compiler.cached(SchemaAnswer(SERVICE, 4, {}))[0]
