"""The RE2 pattern keywords: a pattern cannot make validation take exponential time, patterns RE2
cannot run are refused at their pointer, and the keywords judge (and word failures) like
jsonschema's own, embedded `$id`s and lone surrogates included.

With a backtracking engine, `^(a+)+$` against forty `a`s and a `!` takes longer than the
age of the universe; these tests would hang (and fail on the per-test timeout) if any
keyword that evaluates a pattern went back to Python's `re`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from config_service.schema import SchemaInvalid, SchemaSet, check_schema
from config_service.schema.keywords import Validator, pattern_failures

EVIL = "^(a+)+$"
CRAFTED = "a" * 40 + "!"


def errors(schema: dict[str, Any], instance: Any) -> list[dict[str, str]]:
    return SchemaSet({"svc": schema}, 1).errors("svc", instance)


@pytest.mark.timeout(20)
def test_a_catastrophic_pattern_is_answered_at_once_by_every_keyword_that_uses_patterns() -> None:
    assert errors({"properties": {"name": {"pattern": EVIL}}}, {"name": CRAFTED}) == [
        {"path": "/name", "message": f"{CRAFTED!r} does not match {EVIL!r}"}
    ]
    assert errors({"properties": {"name": {"pattern": EVIL}}}, {"name": "aaaa"}) == []
    only_evil_keys = {"patternProperties": {EVIL: {"type": "integer"}}, "additionalProperties": False}
    failures = errors(only_evil_keys, {CRAFTED: 1, "aaa": 2})
    assert [failure["path"] for failure in failures] == [""]
    assert CRAFTED in failures[0]["message"]
    assert errors(only_evil_keys, {"aaa": "x"})[0]["path"] == "/aaa"
    unevaluated = {"patternProperties": {EVIL: {}}, "unevaluatedProperties": False}
    assert len(errors(unevaluated, {CRAFTED: 1})) == 1
    assert errors(unevaluated, {"aa": 1}) == []
    assert errors({"propertyNames": {"pattern": EVIL}}, {CRAFTED: 1})


def test_patterns_that_re2_cannot_run_are_refused_with_their_pointer() -> None:
    schema = {
        "type": "object",
        "properties": {
            "release": {"type": "string", "pattern": "^(?!v)[0-9.]+$"},
            "items": {"type": "array", "items": {"pattern": "(a)\\1"}},
        },
        "patternProperties": {"^(?<=x)y": {}},
        "$defs": {"fine": {"pattern": "^[a-z]+$"}},
        # Data, not keywords: never evaluated as patterns, so never refused.
        "default": {"pattern": "(?=data)"},
        "examples": [{"patternProperties": {"(?=data)": 1}}],
    }
    with pytest.raises(SchemaInvalid) as raised:
        check_schema("svc", schema, {})
    paths = sorted(detail["path"] for detail in raised.value.details)
    assert paths == [
        "/patternProperties/^(?<=x)y",
        "/properties/items/items/pattern",
        "/properties/release/pattern",
    ]
    assert all("RE2" in detail["message"] for detail in raised.value.details)
    assert pattern_failures({"pattern": "(a{500}){50}"})  # a program too large to compile: refused too
    check_schema("svc", {"properties": {"v": {"pattern": EVIL}}}, {})  # RE2 runs this one safely


def test_a_stored_pattern_re2_cannot_run_fails_validation_instead_of_running() -> None:
    # Schemas stored before patterns were checked at PUT: validation says why, and runs nothing.
    failures = errors({"properties": {"v": {"pattern": "(?=x)"}}}, {"v": "x"})
    assert failures == [
        {"path": "", "message": failures[0]["message"]},
    ] and "cannot be used" in failures[0]["message"]


SCHEMAS: list[dict[str, Any]] = [
    {"properties": {"a": {"type": "integer"}}, "patternProperties": {"^x-": {"type": "string"}},
     "additionalProperties": False},
    {"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
    {"properties": {"a": {}}, "additionalProperties": False},
    {"allOf": [{"properties": {"a": {}}}], "patternProperties": {"^p": {}}, "unevaluatedProperties": False},
    {"$defs": {"base": {"properties": {"a": {}}}}, "$ref": "#/$defs/base", "unevaluatedProperties": False},
    {"anyOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {}}}],
     "unevaluatedProperties": False},
    {"oneOf": [{"properties": {"a": {}}, "required": ["a"]}, {"properties": {"b": {}}, "required": ["b"]}],
     "unevaluatedProperties": {"type": "string"}},
    {"if": {"properties": {"kind": {"const": "db"}}, "required": ["kind"]},
     "then": {"properties": {"url": {}}}, "else": {"properties": {"path": {}}},
     "properties": {"kind": {}}, "unevaluatedProperties": False},
    {"dependentSchemas": {"a": {"properties": {"b": {}}}}, "properties": {"a": {}},
     "unevaluatedProperties": False},
    {"properties": {"nested": {"properties": {"a": {}}, "additionalProperties": {"type": "boolean"}}},
     "unevaluatedProperties": False},
    {"patternProperties": {"[0-9]": {"type": "integer"}, "^[a-z]+$": {"type": "string"}}},
    {"properties": {"v": {"pattern": "^[0-9]+\\.[0-9]+$"}}},
]
INSTANCES: list[Any] = [
    {}, {"a": 1}, {"a": "x"}, {"x-y": "s"}, {"x-y": 1}, {"b": 2}, {"p1": 1, "a": 1}, {"z": 1},
    {"a": 1, "b": "s"}, {"b": "s", "c": "t"}, {"kind": "db", "url": 1}, {"kind": "db", "path": 1},
    {"kind": "file", "path": 1}, {"nested": {"a": 1, "b": True}}, {"nested": {"b": 1}},
    {"k1": 1, "abc": "s"}, {"k1": "s"}, {"v": "1.2"}, {"v": "1.2.3x"}, {"v": "x1.2"}, [1], "text",
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[str(index) for index in range(len(SCHEMAS))])
def test_the_re2_keywords_judge_like_jsonschemas_own_on_ordinary_patterns(schema: dict[str, Any]) -> None:
    ours, theirs = Validator(schema), Draft202012Validator(schema)
    for instance in INSTANCES:
        assert ours.is_valid(instance) == theirs.is_valid(instance), instance
        assert sorted(error.message for error in ours.iter_errors(instance)) == sorted(
            error.message for error in theirs.iter_errors(instance)
        ), instance


# Patterns on which Python's `re` and RE2 agree for the keys generated below (ASCII, no newline).
PATTERNS = ["^a", "b$", "^[ab]+$", "c", "^(a|bc)", "[0-9]", "^$", "^.{2}$", "a.*b"]
KEYS = st.sampled_from(["a", "b", "ab", "bc", "c", "a1", "", "ba", "zz", "é"])


def leaf_schemas() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.booleans(),
        st.just({}),
        st.just({"type": "integer"}),
        st.just({"type": "string"}),
        st.builds(lambda pattern: {"pattern": pattern}, st.sampled_from(PATTERNS)),
        st.just({"$ref": "#/$defs/named"}),
    )


def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword_values = {
        "properties": st.dictionaries(KEYS, children, max_size=3),
        "patternProperties": st.dictionaries(st.sampled_from(PATTERNS), children, max_size=2),
        "additionalProperties": children,
        "unevaluatedProperties": children,
        "propertyNames": children,
        "dependentSchemas": st.dictionaries(KEYS, children, max_size=2),
        "allOf": st.lists(children, min_size=1, max_size=2),
        "anyOf": st.lists(children, min_size=1, max_size=2),
        "oneOf": st.lists(children, min_size=1, max_size=2),
        "if": children,
        "then": children,
        "else": children,
        "not": children,
        "required": st.lists(KEYS, max_size=2, unique=True),
    }
    return st.fixed_dictionaries(
        {}, optional={keyword: value for keyword, value in keyword_values.items()}
    )


GENERATED_SCHEMAS = st.recursive(leaf_schemas(), extend, max_leaves=8)
VALUES = st.one_of(st.integers(-2, 2), st.sampled_from(["a", "ab", "x1", ""]))
GENERATED_INSTANCES = st.one_of(
    st.dictionaries(KEYS, st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=2)), max_size=4),
    VALUES,
)


ENDLESS = [{"path": "", "message": "the schema refers to itself without end"}]


def judged(validator: Any, instance: Any) -> list[tuple[list[Any], str]]:
    return sorted((list(error.absolute_path), error.message) for error in validator.iter_errors(instance))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=GENERATED_SCHEMAS, named=GENERATED_SCHEMAS, instance=GENERATED_INSTANCES)
def test_the_re2_keywords_judge_and_word_failures_like_jsonschema(
    schema: Any, named: Any, instance: Any
) -> None:
    if isinstance(schema, dict):
        schema = {**schema, "$defs": {"named": named}}
    else:
        schema = {"allOf": [schema], "$defs": {"named": named}}
    try:
        expected = judged(Draft202012Validator(schema), instance)
    except BaseException as error:  # "$ref": "#/$defs/named" inside `named`: endless in jsonschema too
        if isinstance(error, RecursionError) or type(error).__name__ == "PanicException":
            assert SchemaSet({"svc": schema}, 1).errors("svc", instance) == ENDLESS
            return
        raise
    assert judged(Validator(schema), instance) == expected


def test_unevaluated_properties_under_a_schema_names_failing_keys_in_document_order() -> None:
    schema = {"unevaluatedProperties": {"type": "integer"}}
    instance = {"b": "x", "a": "y"}
    expected = judged(Draft202012Validator(schema), instance)
    assert judged(Validator(schema), instance) == expected
    assert "('b', 'a' were" in expected[0][1]


def test_patterns_are_checked_by_re2_alone_when_a_schema_is_stored() -> None:
    # Python's `re` raised OverflowError here (a 500 for PUT /v1/schemas); RE2 reads the
    # out-of-range repetition as literal text, in linear time.
    check_schema("svc", {"properties": {"v": {"pattern": "a{99999999999999999999}"}}}, {})
    check_schema("svc", {"patternProperties": {"a{4294967296}": {}}}, {})
    # Unicode classes are RE2 (and ECMA-262) syntax that `re` refused as "not a 'regex'".
    check_schema("svc", {"properties": {"name": {"pattern": "^\\p{L}+$"}}}, {})
    failures = SchemaSet({"svc": {"pattern": "^\\p{L}+$"}}, 1).errors("svc", "é1")
    assert failures == [{"path": "", "message": "'é1' does not match '^\\\\p{L}+$'"}]
    # Refusals still name the pattern's pointer.
    with pytest.raises(SchemaInvalid) as raised:
        check_schema("svc", {"properties": {"v": {"pattern": "(?=x)"}}}, {})
    assert [detail["path"] for detail in raised.value.details] == ["/properties/v/pattern"]


def test_a_refused_pattern_is_not_echoed_in_full() -> None:
    pattern = "(" + "a" * 300_000 + ")" + "{1000}"
    with pytest.raises(SchemaInvalid) as raised:
        check_schema("svc", {"pattern": pattern}, {})
    assert len(raised.value.details[0]["message"]) < 2_000


def test_a_ref_inside_an_embedded_resource_resolves_against_its_own_id() -> None:
    # `#/$defs/t` in the subschema with `$id` means that subschema's own `$defs/t`
    # (an integer), not the root's (a string).
    embedded = {"$id": "http://example.test/inner/", "$defs": {"t": {"type": "integer"}}, "$ref": "#/$defs/t"}
    schema = {
        "$id": "http://example.test/root",
        "$defs": {"t": {"type": "string"}},
        "additionalProperties": embedded,
        "unevaluatedProperties": False,
    }
    assert judged(Validator(schema), {"k": 1}) == []
    assert judged(Validator(schema), {"k": 1}) == judged(Draft202012Validator(schema), {"k": 1})
    in_all_of = {
        "$id": "http://example.test/root",
        "$defs": {"t": {"type": "string"}},
        "allOf": [{**embedded, "$defs": {"t": {"properties": {"k": {}}}}}],
        "unevaluatedProperties": False,
    }
    # jsonschema itself looks `#/$defs/t` up at the root here (and reports 'k'); the
    # specification evaluates 'k' through the embedded resource.
    assert judged(Validator(in_all_of), {"k": 1}) == []
    assert judged(Validator(in_all_of), {"k": 1, "z": 1}) == [
        ([], "Unevaluated properties are not allowed ('z' was unexpected)")
    ]
    # The server stores neither: a schema is known by its name only (no `$id` but its own).
    for refused in (schema, in_all_of):
        with pytest.raises(SchemaInvalid) as raised:
            check_schema("svc", refused, {})
        assert [detail["path"] for detail in raised.value.details][0] == "/$id"


def test_a_lone_surrogate_counts_as_one_character_like_in_jsonschema() -> None:
    # A value from an environment variable that is not UTF-8 (os.environ decodes it with
    # surrogateescape) reaches the client's validation with lone surrogates in it.
    schema = {"properties": {"v": {"pattern": "^x.$"}}, "patternProperties": {"^k.$": {"type": "string"}}}
    instance = {"v": "x\udcff", "k\udc80": 1}
    expected = judged(Draft202012Validator(schema), instance)
    assert expected == [(["k\udc80"], "1 is not of type 'string'")]
    assert judged(Validator(schema), instance) == expected


def test_a_pattern_that_only_a_ref_makes_a_schema_is_refused_with_its_pointer() -> None:
    # `x-shared` is no keyword, but the `$ref` validates with what stands there: it used to be
    # stored, and then every document failed with "the schema cannot be used".
    schema = {
        "x-shared": {"name": {"pattern": "^(?!tmp)"}},
        "properties": {"name": {"$ref": "#/x-shared/name"}, "also": {"$ref": "#/x-shared/name"}},
        "default": {"pattern": "(?=data, never a schema)"},
    }
    with pytest.raises(SchemaInvalid) as raised:
        check_schema("svc", schema, {})
    assert [detail["path"] for detail in raised.value.details] == ["/x-shared/name/pattern"]
    fine = {"x-shared": {"pattern": "^[a-z]+$"}, "properties": {"name": {"$ref": "#/x-shared"}}}
    check_schema("svc", fine, {})
    assert SchemaSet({"svc": fine}, 1).errors("svc", {"name": "A"})[0]["path"] == "/name"


def test_unevaluated_properties_names_a_key_once_per_failure_of_its_value_like_jsonschema() -> None:
    schema = {"unevaluatedProperties": {"properties": {"a": False}, "not": {}}}
    instance = {"a": {"a": 0}}
    expected = judged(Draft202012Validator(schema), instance)
    assert "('a', 'a' were" in expected[0][1]
    assert judged(Validator(schema), instance) == expected


def test_compiled_patterns_are_kept_within_a_bound_in_bytes() -> None:
    from config_service.schema import keywords

    cache = keywords.compile_pattern.cache  # type: ignore[attr-defined]
    for index in range(200):  # 200 patterns of 200,000 characters: more than the bound
        assert keywords.pattern_matches(f"^{'a' * 200_000}{index}$", "a" * 200_000 + str(index))
    assert 0 < cache.currsize <= keywords.COMPILED_PATTERNS_BYTES
    assert len(cache) < 200
