"""Every way a document can be wrong gives a TSKDecodeError naming line, column and the problem."""

from __future__ import annotations

import io

import pytest

from config_service import tsk

# (document, line, column, words the message holds)
CASES = [
    # bare words, operators, expressions, ranges (docs/tsk.md, "Constructs TSK here does not have")
    ("env: production\n", 1, 6, 'quote the string ("production"), or use $production'),
    ("debug: True\n", 1, 8, "booleans are written true or false"),
    ("x: None\n", 1, 4, "written null"),
    ("x: inf\n", 1, 4, "JSON cannot carry it"),
    ("ports: 8000-9000\n", 1, 8, 'write "8000-9000" or [8000, 9000]'),
    ('x: $a == "b" ? 1 : 2\n', 1, 4, "undefined variable $a"),
    ('$a: 1\nx: $a == "b" ? 1 : 2\n', 2, 7, "expressions are not supported"),
    ('x: "a" + "b"\n', 1, 8, "expressions are not supported"),
    ("x: [1, 2 + 3]\n", 1, 10, "expressions are not supported"),
    ("x: { a: 1 * 2 }\n", 1, 11, "expressions are not supported"),
    ("when: @date('Y')\n", 1, 7, "@date is not supported"),
    ('x: @query("SELECT 1")\n', 1, 4, "@query is not supported"),
    ("x: @file('/etc/passwd')\n", 1, 4, "@file is not supported"),
    ("x: @config.tsk.get('a')\n", 1, 4, "cross-file references are not supported"),
    ("x: @\n", 1, 4, "'@' must be followed by env"),
    ("x: @env(PORT)\n", 1, 9, "the name must be a quoted"),
    ('x: @env("1PORT")\n', 1, 9, "invalid @env name '1PORT'"),
    ('x: @env("A", @env("B"))\n', 1, 14, "nested @env"),
    ('$b: @env("B")\nx: @env("A", $b)\n', 2, 14, "nested @env"),
    ('x: @env("A", 1, 2)\n', 1, 15, "expected ')'"),
    ('x: @env("A",)\n', 1, 13, "expected a default value"),
    # numbers
    ("x: 007\n", 1, 4, "leading zeros"),
    ("x: .5\n", 1, 4, "write 0.5"),
    ("x: 5.\n", 1, 4, "digits after '.'"),
    ("x: 1__0\n", 1, 4, "'_' may only stand between digits"),
    ("x: _1\n", 1, 4, "bare word '_1'"),
    ("x: 10MB\n", 1, 4, "quote it if it is text"),
    ("x: 9223372036854775808\n", 1, 4, "out of range"),
    ("x: 1e999\n", 1, 4, "out of range"),
    ("x: 2.0.0\n", 1, 4, "invalid number '2.0.0'"),
    # strings
    ('x: "abc\n', 1, 4, "unclosed string opened on line 1"),
    ("x: 'abc\n", 1, 4, "unclosed string opened on line 1"),
    ('x: "a\\qb"\n', 1, 6, "invalid escape '\\q'"),
    ('x: "\\uD800"\n', 1, 5, "not a Unicode scalar value"),
    ('x: "\\u12"\n', 1, 5, "4 hexadecimal digits"),
    ('a: 1\nx: """\nnever closed\n', 2, 4, 'unclosed """ string opened on line 2'),
    ("x: '''\nnever closed\n", 1, 4, "unclosed ''' string opened on line 1"),
    ('x: """a\\"""\n', 1, 8, "escapes nothing"),
    # structure: duplicates, repeats, blocks
    ("port: 1\nhost: 'a'\nport: 2\n", 3, 1, "duplicate key 'port' (first defined on line 1)"),
    ("[a]\nx: 1\n[b]\n[a]\n", 4, 1, "repeated section [a] (first opened on line 1)"),
    ("[a.b]\n[a]\n[a.b]\n", 3, 1, "repeated section [a.b] (first opened on line 1)"),
    ("[a]\nb {\n}\n[a.b]\n", 4, 1, "it is a block opened on line 2"),
    ("a: 1\n[a]\n", 2, 2, "'a' is already a value (defined on line 1)"),
    ("a: { b: 1 }\n[a.c]\n", 2, 2, "'a' was written as an inline object on line 1"),
    ("x: {a: 1, a: 2}\n", 1, 11, "duplicate key 'a' (first defined on line 1)"),
    ("$v: 1\n$v: 2\n", 2, 1, "variable $v is already defined (on line 1)"),
    ("x: $nope\n", 1, 4, "undefined variable $nope"),
    ("server {\n  port: 1\n", 1, 1, "the block 'server' opened on line 1 is never closed"),
    ("server >\n  port: 1\n}\n", 3, 1, "expected '<' to close the block 'server' opened on line 1"),
    ("}\n", 1, 1, "'}' closes nothing"),
    ("a {\n[b]\n}\n", 2, 1, "cannot stand inside the block 'a' opened on line 1"),
    ("a { b: 1 }\n", 1, 5, "must end its line"),
    ("x: [1, 2\ny: 3\n", 2, 1, "array opened on line 1, found 'y'"),
    ("x: [1, 2,\n", 1, 4, "unclosed array opened on line 1"),
    ("x: {\n  a: 1\n", 1, 4, "unclosed object opened on line 1"),
    ("x: {a:\n1}\n", 1, 7, "must stand on the same line as its key"),
    ("x: [1 2]\n", 1, 7, "expected ',' or ']'"),
    ("x\n", 1, 2, "expected ':' or '='"),
    ("x:\n", 1, 3, "missing value after 'x':"),
    ("a.b: 1\n", 1, 2, "dotted keys are not supported"),
    ('"$x": 1\n', 1, 1, "may not start with '$'"),
    ("x: 1 2\n", 1, 6, "expected the end of the line after the value"),
    ("x: 1;; \n", 1, 6, "expected the end of the line"),
    ("[a\n", 1, 3, "expected '.' or ']'"),
    ("[1a]\n", 1, 2, "expected a section name"),
    ("- item\n", 1, 1, "expected a key before the value"),
    # text
    ("x: 'a\x00b'\n", 1, 6, "control character U+0000"),
    ("# a comment with \x7f in it\n", 1, 18, "control character U+007F"),
    ("x: 1\ry: 2\n", 1, 5, "control character U+000D"),
]


@pytest.mark.parametrize(("document", "line", "column", "words"), CASES)
def test_error_names_line_column_and_problem(
    document: str, line: int, column: int, words: str
) -> None:
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(document)
    error = caught.value
    assert words in error.msg
    assert (error.lineno, error.colno) == (line, column), str(error)
    assert str(error) == f"line {line}, column {column}: {error.msg}"
    assert error.doc is document
    # pos is an index into the text as given, and agrees with line and column
    assert document.count("\n", 0, error.pos) + 1 == line
    assert error.pos - document.rfind("\n", 0, error.pos) == column


def test_message_format_matches_the_contract() -> None:
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads("[server]\nhost: 'a'\n\n\nport: 1\n\n\n\n\n\n\n      port: 2\n")
    assert str(caught.value) == (
        "line 12, column 7: duplicate key 'port' (first defined on line 5)"
    )
    assert isinstance(caught.value, ValueError)


def test_positions_count_from_the_text_as_given_with_bom_and_crlf() -> None:
    document = "\ufeffa: 1\r\nb: 2\r\nb: 3\r\n"
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(document)
    error = caught.value
    assert (error.lineno, error.colno) == (3, 1)
    assert error.doc is document
    assert document[error.pos :].startswith("b: 3")


def test_bom_is_not_counted_in_columns() -> None:
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads("\ufeffx: nope\n")
    assert (caught.value.lineno, caught.value.colno) == (1, 4)


def test_bytes_that_are_not_utf8_are_a_decode_error_with_a_position() -> None:
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.load(io.BytesIO(b"a: 1\nname: '\xff'\n"))
    assert (caught.value.lineno, caught.value.colno) == (2, 8)
    assert "invalid UTF-8" in caught.value.msg


def test_loads_refuses_bytes_like_tomllib() -> None:
    with pytest.raises(TypeError):
        tsk.loads(b"a: 1\n")  # type: ignore[arg-type]


def test_crlf_is_read_as_newline() -> None:
    assert tsk.loads('a: 1\r\ns: """\r\nx\r\ny"""\r\n') == {"a": 1, "s": "x\ny"}
