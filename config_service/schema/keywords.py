"""The keywords that run regular expressions, on RE2, and the validator built from them.

Regular expressions in schemas (`pattern`, `patternProperties`) run on RE2, which matches
in time linear in the text: with a backtracking engine such as Python's `re`, a schema
writer could pick a pattern like `^(a+)+$` that makes one push of a 30-character value hold
the server for minutes. A schema is refused when a pattern is not RE2 syntax (lookaround
and backreferences are not), with the pattern's JSON pointer. `Validator` is jsonschema's
draft 2020-12 validator with the keywords that evaluate patterns replaced by RE2 ones, and
every keyword counted against the step budget (`budget`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import re2
from cachetools import LRUCache, cached
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from referencing.jsonschema import DRAFT202012

from config_service.schema.budget import (
    REFERENCE_STEPS,
    counted,
    dependent_required_steps,
    list_steps,
    spend,
    unique_items_steps,
)
from config_service.schema.references import schema_positions
from config_service.tsk import json_pointer

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the client, not to stderr
_RE2_OPTIONS.never_capture = True  # only "does it match" is ever asked


class PatternUnsupported(ValueError):
    """A pattern RE2 cannot run: not its syntax, or too large to compile."""


def _shortened(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters: a refusal names the pattern, not all megabytes of it."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _estimated_bytes(compiled: Any) -> int:
    """What a compiled pattern holds: its text, and some 16 bytes an instruction of its program."""
    return len(compiled.pattern) + 16 * compiled.programsize


# Compiled patterns are kept, bounded by their memory rather than by count: one schema may
# hold patterns up to the body limit, so 4,096 of them could otherwise hold gigabytes.
COMPILED_PATTERNS_BYTES = 32 * 1024 * 1024
_compiled: LRUCache[str, Any] = LRUCache(COMPILED_PATTERNS_BYTES, getsizeof=_estimated_bytes)


@cached(_compiled, lock=threading.Lock())
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 program of a schema pattern (cached); PatternUnsupported if RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternUnsupported(
            f"the pattern {_shortened(repr(pattern))} is not supported: {_shortened(str(reason))} "
            "(patterns run on RE2, which "
            "has no lookaround and no backreferences, so that matching takes linear time)"
        ) from None
    except UnicodeEncodeError:
        raise PatternUnsupported(
            f"the pattern {_shortened(repr(pattern))} is not valid Unicode text"
        ) from None


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether `pattern` matches anywhere in `text` (JSON Schema patterns are not anchored).

    Every match spends from the step budget (RE2 is linear in the text): a schema of thousands
    of `patternProperties` over a document of thousands of keys is that many matches."""
    spend(2 + len(text) // 128)  # a match costs about two keyword evaluations
    compiled = compile_pattern(pattern)
    try:
        return compiled.search(text) is not None
    except UnicodeEncodeError:
        # A lone surrogate (an environment value that is not UTF-8 reaches the client's
        # validation as one): matched as one U+FFFD, so it still counts as one character.
        return compiled.search(_LONE_SURROGATE.sub("\ufffd", text)) is not None


def schema_patterns(schema: Any) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every regular expression a schema evaluates, with its path in the schema (also in what
    its `"#/..."` references make schemas of)."""
    for node, where in schema_positions(schema):
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            yield pattern, (*where, "pattern")
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict):
            for key in patterns:
                yield key, (*where, "patternProperties", key)


def pattern_failures(schema: Any) -> list[dict[str, str]]:
    """`{path, message}` for every pattern in `schema` that RE2 refuses."""
    failures = []
    for pattern, path in schema_patterns(schema):
        try:
            compile_pattern(pattern)
        except PatternUnsupported as error:
            failures.append({"path": json_pointer(path), "message": str(error)})
    return failures


def _compiles_on_re2(pattern: object) -> bool:
    if isinstance(pattern, str):
        compile_pattern(pattern)
    return True


# The metaschema marks every pattern position with `"format": "regex"`, which jsonschema
# checks by compiling the pattern with Python's `re`: that refuses RE2 syntax that JSON
# Schema allows (`\p{L}`) and raises OverflowError (not a schema error) on `a{99999999999}`.
# Schemas are checked with RE2 here too, which also catches a pattern `schema_patterns` missed.
SCHEMA_FORMATS = FormatChecker(formats=())
SCHEMA_FORMATS.checkers = {
    **Draft202012Validator.FORMAT_CHECKER.checkers,
    "regex": (_compiles_on_re2, PatternUnsupported),
}


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not pattern_matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if pattern_matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _unmatched_keys(instance, schema)
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        if "patternProperties" in schema:
            patterns = ", ".join(repr(pattern) for pattern in sorted(schema["patternProperties"]))
            names = ", ".join(repr(key) for key in sorted(extras, key=str))
            verb = "does" if len(extras) == 1 else "do"
            yield ValidationError(f"{names} {verb} not match any of the regexes: {patterns}")
        else:
            names = ", ".join(repr(key) for key in sorted(extras, key=str))
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({names} {verb} unexpected)")


def _unmatched_keys(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Keys of `instance` that neither `properties` nor `patternProperties` of `schema` cover."""
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        key
        for key in instance
        if key not in properties and not any(pattern_matches(pattern, key) for pattern in patterns)
    ]


def _valid(validator: Any, instance: Any, subschema: Any) -> bool:
    """Whether `instance` is valid under a subschema, entered as the keywords enter it (an `$id`
    in the subschema is the base its `$ref`s resolve against)."""
    return next(validator.descend(instance, subschema), None) is None


def _entered(validator: Any, subschema: Any) -> Any:
    """`validator` for a subschema, with its resolver inside the subschema's own `$id`."""
    resource = DRAFT202012.create_resource(subschema)
    return validator.evolve(schema=subschema, _resolver=validator._resolver.in_subresource(resource))


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """The keys of `instance` that `schema` and its valid subschemas evaluate (JSON Schema
    2020-12, section 11.3: what `unevaluatedProperties` leaves alone).

    `validator` must already be inside `schema` (its resolver at the schema's base URI)."""
    if not isinstance(schema, dict):
        return set()
    spend(REFERENCE_STEPS)
    evaluated: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        reference = schema.get(keyword)
        if isinstance(reference, str):
            resolved = validator._resolver.lookup(reference)
            inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            evaluated |= _evaluated_keys(inner, instance, resolved.contents)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        evaluated |= properties.keys() & instance.keys()
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        evaluated |= {key for key in instance if any(pattern_matches(p, key) for p in patterns)}
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            evaluated |= {
                key for key, value in instance.items() if _valid(validator, value, subschema)
            }
    dependent = schema.get("dependentSchemas")
    if isinstance(dependent, dict):
        for key, subschema in dependent.items():
            if key in instance:
                evaluated |= _evaluated_keys(_entered(validator, subschema), instance, subschema)
    for keyword in ("allOf", "anyOf", "oneOf"):
        for subschema in schema.get(keyword, ()):
            if _valid(validator, instance, subschema):
                evaluated |= _evaluated_keys(_entered(validator, subschema), instance, subschema)
    if "if" in schema:
        if _valid(validator, instance, schema["if"]):
            evaluated |= _evaluated_keys(_entered(validator, schema["if"]), instance, schema["if"])
            if "then" in schema:
                then = schema["then"]
                evaluated |= _evaluated_keys(_entered(validator, then), instance, then)
        elif "else" in schema:
            otherwise = schema["else"]
            evaluated |= _evaluated_keys(_entered(validator, otherwise), instance, otherwise)
    return evaluated


def jsonschema_internals_missing(validator_class: Any = Draft202012Validator) -> str | None:
    """What of jsonschema's private resolver `unevaluatedProperties` needs is missing, or None.

    `_evaluated_keys` follows `$ref`s with the validator's `_resolver` (private, in jsonschema
    since 4.18); the server checks it at start and says so when it is gone.
    """
    try:
        resolver = validator_class({})._resolver
        for name in ("lookup", "in_subresource"):
            if not callable(getattr(resolver, name, None)):
                return f"the validator's _resolver has no {name}()"
        validator_class({}).evolve(schema={}, _resolver=resolver)
    except (AttributeError, TypeError) as error:
        return f"the validator's private _resolver is not usable ({error})"
    return None


# Checked once; when jsonschema lacks what `_evaluated_keys` needs, `unevaluatedProperties`
# falls back to jsonschema's own keyword (the server warns at start).
JSONSCHEMA_INTERNALS_MISSING = jsonschema_internals_missing()


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if JSONSCHEMA_INTERNALS_MISSING is not None:
        yield from Draft202012Validator.VALIDATORS["unevaluatedProperties"](
            validator, unevaluated, instance, schema
        )
        return
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    # A key once per failure of its value, as jsonschema words it ("'a', 'a' were ...").
    failing = [
        key
        for key in instance
        if key not in evaluated
        for _ in validator.descend(instance[key], unevaluated, path=key, schema_path=key)
    ]
    if not failing:
        return
    if unevaluated is False:
        names = ", ".join(repr(key) for key in sorted(failing, key=str))
        verb = "was" if len(failing) == 1 else "were"
        yield ValidationError(f"Unevaluated properties are not allowed ({names} {verb} unexpected)")
    else:
        # In the document's order, not sorted: jsonschema words it so.
        names = ", ".join(repr(key) for key in failing)
        verb = "was" if len(failing) == 1 else "were"
        yield ValidationError(
            f"Unevaluated properties are not valid under the given schema ({names} {verb} "
            "unevaluated and invalid)"
        )


# What one evaluation of a keyword costs, where it is not one step.
_STEPS: dict[str, int | Callable[[Any, Any], int]] = {
    "$ref": REFERENCE_STEPS,
    "$dynamicRef": REFERENCE_STEPS,
    "enum": list_steps,
    "required": list_steps,
    "dependentRequired": dependent_required_steps,
    "uniqueItems": unique_items_steps,
}

Validator: Any = validators.extend(
    Draft202012Validator,
    {
        name: counted(keyword, _STEPS.get(name, 1))
        for name, keyword in {
            **Draft202012Validator.VALIDATORS,
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
            "unevaluatedProperties": _unevaluated_properties,
        }.items()
    },
)
