"""Properties: `loads(dumps(x)) == x` for any data, and `loads` raises nothing but TSKDecodeError."""

from __future__ import annotations

import string

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
