"""Hostile input fails fast with a TSKDecodeError: deep nesting, huge text, value explosions."""

from __future__ import annotations

import pytest

from config_service import tsk


@pytest.mark.parametrize(
    "document",
    [
        "x: " + "[" * 1_000_000,
        "x: " + "{a: " * 100_000,
        "x: " + "[" * 65 + "]" * 65 + "\n",
        "".join("    " * i + f"b{i} {{\n" for i in range(70)),
        "[" + ".".join(f"s{i}" for i in range(65)) + "]\n",
    ],
    ids=["million-brackets", "deep-objects", "65-arrays", "70-blocks", "65-part-header"],
)
def test_nesting_deeper_than_the_bound_is_an_error(document: str) -> None:
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(document)
    assert f"nesting deeper than {tsk.MAX_DEPTH} levels" in caught.value.msg
    assert caught.value.lineno >= 1


def test_nesting_at_the_bound_is_fine() -> None:
    depth = tsk.MAX_DEPTH
    node = tsk.loads("x: " + "[" * depth + "]" * depth + "\n")["x"]
    for _ in range(depth - 1):
        assert len(node) == 1
        node = node[0]
    assert node == []


def test_deep_nesting_crossed_by_blocks_inside_sections() -> None:
    document = "[" + ".".join(f"s{i}" for i in range(60)) + "]\n"
    document += "".join(f"b{i} {{\n" for i in range(5))
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(document)
    assert caught.value.lineno == 6


def test_variable_substitution_cannot_cross_the_depth_bound() -> None:
    inner = "[" * 40 + "]" * 40
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(f"$v: {inner}\nx: {'[' * 30}$v{']' * 30}\n")
    assert "nesting deeper" in caught.value.msg


def test_a_fifty_megabyte_line_fails_fast() -> None:
    document = "x: '" + "a" * (50 * 1024 * 1024) + "'\n"
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(document)
    assert "document too large" in caught.value.msg
    assert (caught.value.lineno, caught.value.colno) == (1, 1)


def test_the_size_bound_is_configurable() -> None:
    with pytest.raises(tsk.TSKDecodeError):
        tsk.loads("x: 1\n" * 10, max_chars=20)
    assert tsk.loads("x: 1\n", max_chars=20) == {"x": 1}


def test_variable_chains_cannot_explode() -> None:
    lines = ["$v0: [1, 1, 1, 1]"]
    lines += [f"$v{i}: [$v{i - 1}, $v{i - 1}, $v{i - 1}, $v{i - 1}]" for i in range(1, 20)]
    lines.append("x: $v19")
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads("\n".join(lines) + "\n")
    assert "too many values" in caught.value.msg


def test_variables_are_copied_not_shared() -> None:
    data = tsk.loads("$v: {a: [1]}\nx: $v\ny: $v\n")
    assert data == {"x": {"a": [1]}, "y": {"a": [1]}}
    data["x"]["a"].append(2)
    assert data["y"] == {"a": [1]}


def test_numbers_too_long_for_python_are_range_errors() -> None:
    for document in (
        "x: " + "9" * 5000 + "\n",
        "x: -" + "1" * 20 + "\n",
        "x: 1" + "_0" * 3000 + "\n",
    ):
        with pytest.raises(tsk.TSKDecodeError) as caught:
            tsk.loads(document)
        assert "out of range" in caught.value.msg
        assert len(caught.value.msg) < 200
    assert tsk.loads("x: -9223372036854775808\n") == {"x": -(2**63)}


def test_messages_stay_short_for_huge_tokens() -> None:
    for document in ("x: " + "a" * 100_000 + "\n", "x: 1" + "a" * 100_000 + "\n"):
        with pytest.raises(tsk.TSKDecodeError) as caught:
            tsk.loads(document)
        assert len(caught.value.msg) < 300


def test_env_values_too_long_for_python_do_not_convert() -> None:
    with pytest.raises(tsk.TSKResolveError):
        tsk.resolve({"p": tsk.EnvRef("P", 1)}, {"P": "9" * 5000})


def test_a_lone_surrogate_in_the_text_is_a_decode_error_at_its_position() -> None:
    # A str can hold one (from surrogateescape, or a JSON "\ud800"); UTF-8 text cannot.
    for document, column in (('name: "caf\udce9"\n', 11), ("# \ud800\n", 3), ("k\udfff: 1\n", 2)):
        with pytest.raises(tsk.TSKDecodeError) as caught:
            tsk.loads("a: 1\n" + document)
        assert (caught.value.lineno, caught.value.colno) == (2, column)
        assert "lone surrogate" in caught.value.msg
