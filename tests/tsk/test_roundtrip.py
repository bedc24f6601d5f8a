"""Properties: `loads(dumps(x)) == x` for any data, and `loads` raises nothing but TSKDecodeError."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config_service import tsk
from config_service.tsk import EnvRef

AWKWARD = st.lists(
    st.sampled_from(
        list("abc xyz")
        + ['"', "'", "\\", "\n", "\t", "#", "$", "@", "{", "}", "[", "]", ":", "="]
        + ['"""', "'''", "é", "☃", "\U0001f418", "\x00", "\x01", "\x1f", "\x7f", "\r", "\u2028"]
    ),
    max_size=20,
).map("".join) | st.text(max_size=12)

KEYS = (AWKWARD | st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True)).filter(
    lambda key: not key.startswith("$")
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | AWKWARD
)
ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
PLAIN = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
ENV_REFS = st.builds(EnvRef, ENV_NAMES) | st.builds(EnvRef, ENV_NAMES, PLAIN)
VALUES = st.recursive(
    SCALARS | ENV_REFS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=6)


@settings(max_examples=400, deadline=None)
@given(DOCUMENTS)
def test_dumps_then_loads_gives_the_same_data(data: dict) -> None:
    text = tsk.dumps(data)
    assert tsk.loads(text) == data
    assert tsk.document_hash(tsk.loads(text)) == tsk.document_hash(data)


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS)
def test_wire_form_round_trips_and_hash_is_stable(data: dict) -> None:
    assert tsk.from_wire(tsk.to_wire(data)) == data
    assert tsk.canonical_json(tsk.from_wire(tsk.to_wire(data))) == tsk.canonical_json(data)


TSK_ALPHABET = st.sampled_from(
    list(string.ascii_letters[:6] + string.digits[:4])
    + list(" \t\n#$@:=;,.-+_[]{}<>()\"'\\")
    + ["true", "null", "@env(", '"X"', "'''", '"""', "\r", "\x00", "é", "\ufeff", "0x", "1e5"]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(TSK_ALPHABET, max_size=60).map("".join) | st.text(max_size=60))
def test_loads_returns_data_or_raises_only_decode_errors(text: str) -> None:
    try:
        data = tsk.loads(text)
    except tsk.TSKDecodeError as error:
        assert 1 <= error.lineno
        assert 1 <= error.colno
        assert 0 <= error.pos <= len(text)
    else:
        assert isinstance(data, dict)
        assert tsk.loads(tsk.dumps(data)) == data


def test_dumps_layout_puts_scalars_first_then_sections() -> None:
    data = {
        "database": {"url": EnvRef("DATABASE_URL"), "pool": {"size": 5}},
        "name": "user-service",
        "two words": {"a": 1},
        "port": EnvRef("PORT", 8001),
    }
    assert tsk.dumps(data) == (
        'name: "user-service"\n'
        'port: @env("PORT", 8001)\n'
        '"two words" {\n'
        "    a: 1\n"
        "}\n"
        "\n"
        "[database]\n"
        'url: @env("DATABASE_URL")\n'
        "pool {\n"
        "    size: 5\n"
        "}\n"
    )


def test_dumps_chooses_the_shortest_correct_quoting() -> None:
    assert tsk.dumps({"a": 'say "hi"'}) == "a: 'say \"hi\"'\n"
    assert tsk.dumps({"a": "C:\\path"}) == "a: 'C:\\path'\n"
    assert tsk.dumps({"a": "it's"}) == 'a: "it\'s"\n'
    assert tsk.dumps({"a": "line\nnext"}) == 'a: """\nline\nnext"""\n'
    assert tsk.dumps({"a": "x\\y\nz"}) == "a: '''\nx\\y\nz'''\n"


def test_dumps_refuses_what_tsk_cannot_hold() -> None:
    import pytest

    with pytest.raises(ValueError):
        tsk.dumps({"x": float("nan")})
    with pytest.raises(ValueError):
        tsk.dumps({"$x": 1})
    with pytest.raises(TypeError):
        tsk.dumps({"x": object()})


# -- dumps refuses what loads refuses ------------------------------------------------------------


def nested(value: object, levels: int, kind: str) -> object:
    for _ in range(levels):
        value = [value] if kind == "list" else {"k": value}
    return value


HOSTILE_SCALARS = (
    SCALARS
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**30, "\ud800", "a\udfffb", "\udc80\n"])
)
HOSTILE_KEYS = KEYS | st.sampled_from(["\ud83d", "x\udc00"])
HOSTILE_PLAIN = st.recursive(
    HOSTILE_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(HOSTILE_KEYS, children, max_size=3),
    max_leaves=10,
)
HOSTILE_REFS = (
    st.builds(EnvRef, ENV_NAMES, HOSTILE_PLAIN)
    | st.builds(EnvRef, ENV_NAMES, st.builds(EnvRef, ENV_NAMES))
    | st.builds(EnvRef, ENV_NAMES, st.lists(st.builds(EnvRef, ENV_NAMES), min_size=1, max_size=2))
)
HOSTILE_VALUES = st.recursive(
    HOSTILE_SCALARS | HOSTILE_REFS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(HOSTILE_KEYS, children, max_size=3)
    | st.builds(nested, children, st.integers(60, 66), st.sampled_from(["list", "dict"])),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(HOSTILE_KEYS, HOSTILE_VALUES, max_size=4))
def test_dumps_either_refuses_with_value_error_or_writes_what_loads_reads_back(data: dict) -> None:
    try:
        text = tsk.dumps(data)
    except ValueError as refused:
        assert not isinstance(refused, UnicodeError)
        return
    assert tsk.loads(text) == data
    assert tsk.document_hash(tsk.loads(text)) == tsk.document_hash(data)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"port": 2**63}, "/port"),
        ({"port": -(2**63) - 1}, "/port"),
        ({"db": {"sizes": [1, 10**5000]}}, "/db/sizes/1"),
        ({"port": EnvRef("PORT", 2**64)}, "/port"),
        ({"a": [{"b": -(10**19)}]}, "/a/0/b"),
    ],
)
def test_dumps_refuses_integers_outside_64_bits(data: dict, where: str) -> None:
    with pytest.raises(ValueError) as refused:
        tsk.dumps(data)
    assert "64 bits" in str(refused.value)
    assert f"at {where}" in str(refused.value)
    assert len(str(refused.value)) < 200


def test_dumps_writes_the_64_bit_bounds_themselves() -> None:
    data = {"low": -(2**63), "high": 2**63 - 1}
    assert tsk.loads(tsk.dumps(data)) == data


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_dumps_refuses_nesting_past_the_depth_limit(kind: str) -> None:
    at_limit = {"x": nested(1, tsk.MAX_DEPTH, kind)}
    assert tsk.loads(tsk.dumps(at_limit)) == at_limit
    for too_deep in ({"x": nested(1, tsk.MAX_DEPTH + 1, kind)}, {"x": nested(1, 100_000, kind)}):
        with pytest.raises(ValueError) as refused:
            tsk.dumps(too_deep)
        assert f"nesting deeper than {tsk.MAX_DEPTH} levels" in str(refused.value)


def test_depth_counts_sections_blocks_and_environment_defaults_as_loads_does() -> None:
    # A top-level table is a [section]: one level, like an array.
    in_section = {"s": {"x": nested(1, tsk.MAX_DEPTH - 1, "list")}}
    assert tsk.loads(tsk.dumps(in_section)) == in_section
    with pytest.raises(ValueError):
        tsk.dumps({"s": {"x": nested(1, tsk.MAX_DEPTH, "list")}})
    # An @env default stands at the depth of the reference itself.
    reference = {"x": EnvRef("X", nested(1, tsk.MAX_DEPTH, "list"))}
    assert tsk.loads(tsk.dumps(reference)) == reference
    with pytest.raises(ValueError):
        tsk.dumps({"x": EnvRef("X", nested(1, tsk.MAX_DEPTH + 1, "list"))})


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"name": "caf\udce9"}, "/name"),
        ({"s": {"caf\udce9": 1}}, "/s"),
        ({"list": ["ok", "\ud800"]}, "/list/1"),
        ({"url": EnvRef("URL", "\udfff")}, "/url"),
    ],
)
def test_dumps_refuses_lone_surrogates_in_strings_and_keys(data: dict, where: str) -> None:
    with pytest.raises(ValueError) as refused:
        tsk.dumps(data)
    assert not isinstance(refused.value, UnicodeError)
    assert "lone surrogate" in str(refused.value)
    assert f"at {where}" in str(refused.value)


def test_dumps_refuses_an_env_reference_inside_a_default() -> None:
    for default in (EnvRef("B"), [1, EnvRef("B")], {"k": EnvRef("B", 2)}):
        with pytest.raises(ValueError) as refused:
            tsk.dumps({"a": EnvRef("A", default)})
        assert "nested @env" in str(refused.value)


def test_dumps_refuses_more_values_than_a_document_may_hold() -> None:
    # loads counts the value of `x` and each item: one million in all is the limit.
    fits = {"x": [0] * (tsk.MAX_VALUES - 1)}
    assert len(tsk.loads(tsk.dumps(fits))["x"]) == tsk.MAX_VALUES - 1
    with pytest.raises(ValueError) as refused:
        tsk.dumps({"x": [0] * tsk.MAX_VALUES})
    assert "too many values" in str(refused.value)


def test_dumps_refuses_a_document_longer_than_loads_reads() -> None:
    with pytest.raises(ValueError) as refused:
        tsk.dumps({"x": "a" * tsk.MAX_CHARS})
    assert "too large" in str(refused.value)
