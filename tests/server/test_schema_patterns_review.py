"""Review of the RE2 pattern keywords: they judge (and word failures) like jsonschema's own,
schemas are checked without Python's `re`, and the validator honours embedded `$id`s when
finding which properties are evaluated (though the server stores no schema that has them).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from config_service.validation import SchemaInvalid, SchemaSet, Validator, check_schema

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


SCHEMAS = st.recursive(leaf_schemas(), extend, max_leaves=8)
VALUES = st.one_of(st.integers(-2, 2), st.sampled_from(["a", "ab", "x1", ""]))
INSTANCES = st.one_of(
    st.dictionaries(KEYS, st.one_of(VALUES, st.dictionaries(KEYS, VALUES, max_size=2)), max_size=4),
    VALUES,
)


ENDLESS = [{"path": "", "message": "the schema refers to itself without end"}]


def judged(validator: Any, instance: Any) -> list[tuple[list[Any], str]]:
    return sorted((list(error.absolute_path), error.message) for error in validator.iter_errors(instance))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, named=SCHEMAS, instance=INSTANCES)
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


def test_a_schema_nested_thousands_deep_is_refused_cleanly() -> None:
    schema: dict[str, Any] = {"pattern": "^a"}
    for _ in range(5000):
        schema = {"not": schema, "$ref": "#/$defs/x"}
    with pytest.raises(SchemaInvalid):
        check_schema("svc", schema, {})


def chain_of_defs(depth: int, leaf: dict[str, Any], unevaluated: bool) -> dict[str, Any]:
    """`$defs` l1..lN, each an `anyOf` of two `$ref`s to the one below: 2^N paths, ~100 bytes a level."""
    defs: dict[str, Any] = {"l0": leaf}
    for level in range(1, depth + 1):
        below = {"$ref": f"#/$defs/l{level - 1}"}
        defs[f"l{level}"] = {"anyOf": [below, dict(below)]}
        if unevaluated:
            defs[f"l{level}"]["unevaluatedProperties"] = False
    return {"$defs": defs, "$ref": f"#/$defs/l{depth}"}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("unevaluated", [False, True])
def test_a_small_schema_cannot_make_one_validation_take_exponential_time(unevaluated: bool) -> None:
    leaf = {"properties": {"a": {}}} if unevaluated else {"required": ["missing"]}
    schema = chain_of_defs(40, leaf, unevaluated)  # 2^40 paths in 4 KB: years, unbounded
    check_schema("svc", schema, {})
    failures = SchemaSet({"svc": schema}, 1).errors("svc", {"a": 1})
    assert failures == [
        {
            "path": "",
            "message": "the schema takes too many steps to check this document (its $refs "
            "and combinators name the same subschemas over and over)",
        }
    ]
    # The same construction a few levels deep is checked as usual.
    shallow = chain_of_defs(3, leaf, unevaluated)
    expected = judged(Draft202012Validator(shallow), {"a": 1})
    assert [failure["message"] for failure in SchemaSet({"svc": shallow}, 1).errors("svc", {"a": 1})] == [
        message for _, message in expected
    ]


def test_a_schema_that_refers_to_itself_under_not_is_a_clean_failure_in_any_thread() -> None:
    # The recursion limit strikes inside the resolver's Rust code: a PanicException (a
    # BaseException) used to escape SchemaSet.errors, through the server's handlers.
    schema = {"$defs": {"named": {"not": {"$ref": "#/$defs/named"}}}, "$ref": "#/$defs/named"}
    check_schema("svc", schema, {})
    schemas = SchemaSet({"svc": schema}, 1)
    results: list[Any] = []

    def validate(frames: int = 0) -> None:
        # Where the limit strikes depends on how deep the caller's stack already is.
        if frames:
            validate(frames - 1)
            return
        for instance in ({"a": 1}, 1, "x"):
            results.append(schemas.errors("svc", instance))

    for frames in range(0, 60, 3):
        validate(frames)
    worker = threading.Thread(target=validate)
    worker.start()
    worker.join(30)
    assert results == [ENDLESS] * (3 * 20 + 3)
    # The set still validates (the panic left nothing broken behind).
    assert SchemaSet({"svc": {"type": "integer"}}, 2).errors("svc", "x")[0]["path"] == ""


def test_unevaluated_properties_names_a_key_once_per_failure_of_its_value_like_jsonschema() -> None:
    schema = {"unevaluatedProperties": {"properties": {"a": False}, "not": {}}}
    instance = {"a": {"a": 0}}
    expected = judged(Draft202012Validator(schema), instance)
    assert "('a', 'a' were" in expected[0][1]
    assert judged(Validator(schema), instance) == expected
