"""`tsk.reformat`: canonical TSK with the comments kept beside what they belong to."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_variables_keep_their_definitions_in_place_and_their_uses_as_written() -> None:
    source = """\
# head

$a = 1;  # the a
$b: [$a, 2]
x: $b
"q k" {
    $c: {k: $a}
    y: $c
}
[s]
# about v
$v: @env("V", $a)
u: $v
blk >
    $w: 3
    z: [$w, $c]
<
after: $w
[s.t]
$deep: $w
d: $deep
"""
    expected = """\
# head

$a: 1  # the a
$b: [$a, 2]
x: $b
"q k" {
    $c: { k: $a }
    y: $c
}

[s]
# about v
$v: @env("V", $a)
u: $v
blk {
    $w: 3
    z: [$w, $c]
}
after: $w
t {
    $deep: $w
    d: $deep
}
"""
    assert tsk.reformat(source) == expected
    assert tsk.loads(expected) == tsk.loads(source)
    assert tsk.reformat(expected) == expected


def test_top_level_variables_stay_above_the_tables_that_move_below_the_keys() -> None:
    # Tables go below the top-level keys in canonical order; a variable defined after a
    # table stays with the keys, so every use still comes after it.
    source = "db {\n    x: 1\n}\n$v: 1\nport: $v\n[s]\n$w: $v\n[t]\ny: $w\n"
    expected = "$v: 1\nport: $v\n\n[db]\nx: 1\n\n[s]\n$w: $v\n\n[t]\ny: $w\n"
    assert tsk.reformat(source) == expected
    assert tsk.loads(expected) == tsk.loads(source)
    assert tsk.reformat(expected) == expected


def test_a_variable_the_canonical_order_would_use_above_its_definition_is_refused() -> None:
    with pytest.raises(tsk.CannotFormat) as refused:
        tsk.reformat("db {\n    $v: 1\n}\nport: $v\n")
    assert refused.value.reason == "$v (line 2): the canonical order would use it above its definition"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
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
        # The only reason any of these documents has: an array written with a comment inside.
        assert refused.reason.startswith("a comment inside a value")
        return
    assert tsk.loads(formatted) == data
    assert comments(formatted) == comments(source)
    assert tsk.reformat(formatted) == formatted
    # Variables are written back, not their values.
    assert source.count("$") == formatted.count("$")


@pytest.mark.parametrize(
    "path", sorted((ROOT / "environments").glob("*/*.tsk")), ids=lambda path: path.parent.name
)
def test_the_shipped_documents_are_in_canonical_form(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert tsk.reformat(source) == source


@st.composite
def documents_with_variables(draw: st.DrawFn) -> str:
    """Keys, blocks, sections and `$variables` in any order, each use after its definition."""
    lines: list[str] = []
    defined: list[str] = []
    numbers = iter(range(1000))

    def value() -> str:
        choice = draw(st.integers(0, 4))
        if defined and choice == 0:
            return "$" + draw(st.sampled_from(defined))
        if defined and choice == 1:
            return f"[1, ${draw(st.sampled_from(defined))}]"
        if defined and choice == 2:
            return f"{{ k: ${draw(st.sampled_from(defined))} }}"
        if choice == 3:
            return '@env("E", "x")'
        return str(draw(st.integers(0, 9)))

    def body(indent: str, depth: int) -> None:
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.integers(0, 4))
            number = next(numbers)
            if kind == 0 and depth < 3:
                lines.append(f"{indent}b{number} {{")
                body(indent + "    ", depth + 1)
                lines.append(f"{indent}}}")
            elif kind in (1, 2):
                text = value()  # drawn before the name is defined: no use of itself
                lines.append(f"{indent}$v{number} = {text}")
                defined.append(f"v{number}")
            else:
                lines.append(f"{indent}k{number}: {value()}")
            if draw(st.booleans()):
                lines.append(f"{indent}# after {number}")

    body("", 0)
    for _ in range(draw(st.integers(0, 3))):
        number = next(numbers)
        lines.append(f"[s{number}]" if draw(st.booleans()) else f"[p{number}.s{number}]")
        body("", 1)
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(documents_with_variables())
def test_variables_and_comments_survive_formatting_in_any_arrangement(source: str) -> None:
    data = tsk.loads(source)
    try:
        formatted = tsk.reformat(source)
    except tsk.CannotFormat as refused:
        assert "the canonical order would use it above its definition" in refused.reason
        return
    assert tsk.loads(formatted) == data
    assert formatted.count("$") == source.count("$")
    assert comments(formatted) == comments(source)
    assert tsk.reformat(formatted) == formatted
