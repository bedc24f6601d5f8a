"""The server's reading of a document: its hash is the language's `document_hash`, its wire JSON round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config_service import tsk
from config_service.core.documents import parse_document

REPOSITORY = Path(__file__).resolve().parents[2]
# The whole-service documents of the test corpus and the repository's own documents.
CORPUS = REPOSITORY / "tests" / "tsk" / "corpus"
DOCUMENTS = sorted(CORPUS.glob("service-*.tsk")) + sorted((REPOSITORY / "environments").glob("*/*.tsk"))


@pytest.mark.parametrize("path", DOCUMENTS, ids=[path.name for path in DOCUMENTS])
def test_hash_and_wire_match_the_language(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    document = parse_document(source)
    data = tsk.loads(source)
    assert document.hash == tsk.document_hash(data)
    assert tsk.from_wire(json.loads(document.wire)) == data


def test_hash_with_env_references_and_unicode() -> None:
    source = 'name: "zürich ✓"\nport: @env("PORT", 8001)\nurl: @env("URL")\nitems: [1, 2.5, true, null]\n'
    assert parse_document(source).hash == tsk.document_hash(tsk.loads(source))
