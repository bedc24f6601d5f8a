"""`tsk.reformat`: canonical TSK with the comments kept beside what they belong to."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from config_service import tsk

CORPUS = Path(__file__).resolve().parent / "corpus"
ROOT = Path(__file__).resolve().parents[2]


def comments(text: str) -> Counter[str]:
    """Every comment of a document (as written from its `#`), counted."""
    from config_service.tsk._parser import Layout, _Parser

    layout = Layout()
    src = text.removeprefix("\ufeff").replace("\r\n", "\n")
    _Parser(src, layout).parse()
    found: Counter[str] = Counter()
    for position, _ in layout.comments:
        end = src.find("\n", position)
        found[(src[position:] if end == -1 else src[position:end]).rstrip()] += 1
    return found


def test_each_comment_stays_beside_what_it_belongs_to() -> None:
    source = """\
# billing service
# owned by the payments team

name = "billing"    # the service's name
[database]
# the primary
url:   "postgresql://db/billing";
pool_size =   20   # tuned in March
# the read replicas follow

replicas: { count: 2 }
tuning {   # knobs
    # per connection
    timeout: 5.0
    # more knobs later
}   # tuning ends

# about the cache
[cache]  # in memory for now
ttl: 300
# the end
"""
    expected = """\
# billing service
# owned by the payments team

name: "billing"  # the service's name

[database]
# the primary
url: "postgresql://db/billing"
pool_size: 20  # tuned in March
# the read replicas follow

replicas {
    count: 2
}
tuning {  # knobs
    # per connection
    timeout: 5.0
    # more knobs later
}  # tuning ends

# about the cache
[cache]  # in memory for now
ttl: 300

# the end
"""
    assert tsk.reformat(source) == expected
    assert tsk.loads(expected) == tsk.loads(source)
    assert tsk.reformat(expected) == expected


def test_canonical_order_moves_comments_with_their_keys() -> None:
    source = """\
# about the block
settings {
    a: 1
}
# about the port
port: 8080
"""
    # Top-level values come first in canonical TSK; each comment goes where its key goes.
    assert tsk.reformat(source) == """\
# about the port
port: 8080

# about the block
[settings]
a: 1
"""


def test_a_nested_section_header_becomes_a_block_with_its_comments() -> None:
    source = "[a]\nx: 1\n\n# the inner table\n[a.b]  # b's own line\ny: 2\n"
    assert tsk.reformat(source) == (
        "[a]\nx: 1\n\n# the inner table\nb {  # b's own line\n    y: 2\n}\n"
    )


def test_a_document_without_comments_formats_as_dumps_does() -> None:
    source = 'b = [\n  2,\n  3,\n]\na: "x # not a comment"\n[s]\nk = 1;\n'
    assert tsk.reformat(source) == tsk.dumps(tsk.loads(source))
    assert tsk.reformat("") == ""
    assert tsk.reformat("# only a comment\n") == "# only a comment\n"


def test_bom_and_crlf_are_read_and_written_as_plain_lines() -> None:
    assert tsk.reformat("\ufeffa = 1  # one\r\n# two\r\n") == "a: 1  # one\n\n# two\n"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('$region: "eu"\nregion: $region\n', "$variables (line 1)"),
        ("a: [\n  1,  # one\n  2,\n]\n", "a comment inside a value (line 2)"),
        ("a: {\n  # inside\n  b: 1\n}\n", "a comment inside a value (line 2)"),
    ],
)
def test_what_the_canonical_form_cannot_keep_is_refused_with_its_line(source: str, reason: str) -> None:
    with pytest.raises(tsk.CannotFormat) as refused:
        tsk.reformat(source)
    assert refused.value.reason.startswith(reason)


def test_an_invalid_document_is_a_decode_error_with_its_position() -> None:
    with pytest.raises(tsk.TSKDecodeError) as error:
        tsk.reformat("\ufeffa: 1\r\nb: [\r\n")
    assert (error.value.lineno, error.value.colno) == (2, 4)


def corpus_documents() -> list[Path]:
    paths = sorted(CORPUS.glob("*.tsk")) + sorted((ROOT / "environments").glob("*/*.tsk"))
    assert len(paths) >= 10
    return paths


@pytest.mark.parametrize("path", corpus_documents(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_real_documents_keep_their_data_and_every_comment_and_format_once(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    try:
        data = tsk.loads(source)
    except tsk.TSKDecodeError:
        return  # the upstream files outside the grammar: their errors are tested elsewhere
    try:
        formatted = tsk.reformat(source)
    except tsk.CannotFormat as refused:
        assert "$variables" in refused.reason  # the only reason any of these documents has
        return
    assert tsk.loads(formatted) == data
    assert comments(formatted) == comments(source)
    assert tsk.reformat(formatted) == formatted
