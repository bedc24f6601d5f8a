"""docs/tsk.md quotes the parser: every example there fails with exactly the message printed under it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config_service import tsk

DOC = Path(__file__).resolve().parents[1] / "docs" / "tsk.md"
EXAMPLE = re.compile(r"```tsk\n(?P<text>(?:(?!```).)*?)```\n`config\.tsk:(?P<line>\d+):(?P<column>\d+): (?P<message>[^`]*)`", re.DOTALL)
EXAMPLES = [match.groupdict() for match in EXAMPLE.finditer(DOC.read_text("utf-8"))]


def test_the_page_has_its_examples() -> None:
    assert len(EXAMPLES) >= 25


@pytest.mark.parametrize("example", EXAMPLES, ids=[example["message"][:40] for example in EXAMPLES])
def test_error_example_matches_the_parser(example: dict[str, str]) -> None:
    with pytest.raises(tsk.TSKDecodeError) as raised:
        tsk.loads(example["text"])
    error = raised.value
    assert (error.lineno, error.colno, error.msg) == (
        int(example["line"]), int(example["column"]), example["message"]
    )


def test_the_complete_example_parses_to_the_data_shown() -> None:
    text = DOC.read_text("utf-8")
    source = text.split("```tsk\n", 1)[1].split("```", 1)[0]
    data = tsk.to_wire(tsk.loads(source))
    assert data["port"] == {"$env": "PORT", "default": 8001}
    assert data["security"]["region"] == "eu-west-1"
    assert data["logging"]["loggers"] == {"user_service.http": "WARNING", "sqlalchemy": "ERROR"}
