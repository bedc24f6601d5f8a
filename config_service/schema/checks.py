"""Schema checks: whether a schema may be stored, and documents against schemas compiled once per set of versions.

`check_schema` refuses a schema with SchemaInvalid and every failure at its JSON pointer;
`SchemaSet` holds the validators of one set of current schemas and reports a document's
failures the same way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing.exceptions import Unresolvable

from config_service import tsk
from config_service.schema.budget import ValidationTooCostly, budget_for
from config_service.schema.keywords import (
    SCHEMA_FORMATS,
    PatternUnsupported,
    Validator,
    pattern_failures,
)
from config_service.schema.local import MARKER, MarkerReach, local_paths, marker_failures
from config_service.schema.references import (
    build_registry,
    identifier_failures,
    known_by_name,
    reference_failures,
    references,
    schema_file_name,
    schemas_reached,
)
from config_service.settings import DEFAULT_SECTIONS
from config_service.tsk import json_pointer

_QUOTED_NAME = re.compile(r"^(?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


class SchemaInvalid(ValueError):
    """A schema that is not a valid draft 2020-12 schema, or whose `$ref`s do not resolve."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


def non_finite_numbers(schema: Any) -> list[dict[str, str]]:
    """`{path, message}` for every number in `schema` that is infinite or NaN: JSON has no
    such numbers, so the schema could be neither stored nor served as JSON."""
    failures = []
    pending: list[tuple[Any, tuple[Any, ...]]] = [(schema, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            failures.append({"path": json_pointer(path), "message": f"{item} is not a finite number"})
        elif isinstance(item, dict):
            pending.extend((value, (*path, key)) for key, value in item.items())
        elif isinstance(item, list):
            pending.extend((value, (*path, index)) for index, value in enumerate(item))
    failures.sort(key=lambda failure: failure["path"])
    return failures


def check_schema(
    name: str,
    schema: Any,
    others: Mapping[str, Mapping[str, Any]],
    sections: Iterable[str] = DEFAULT_SECTIONS,
) -> None:
    """Raise SchemaInvalid unless `schema` is a valid 2020-12 schema known by its name only,
    whose references name only itself and the `sections`, and resolve among `others` (the
    other current schemas) and itself.
    """
    if not isinstance(schema, dict):
        raise SchemaInvalid(
            "a schema must be a JSON object", [{"path": "", "message": "not an object"}]
        )
    infinite = non_finite_numbers(schema)
    if infinite:
        raise SchemaInvalid("the schema has a number that is not finite", infinite)
    unsupported = pattern_failures(schema)
    if unsupported:
        raise SchemaInvalid(
            "the schema has a pattern the server cannot run in linear time (RE2 syntax)", unsupported
        )
    try:
        Draft202012Validator.check_schema(schema, format_checker=SCHEMA_FORMATS)
    except RecursionError:
        raise SchemaInvalid(
            "the schema is nested too deeply", [{"path": "", "message": "nested too deeply"}]
        ) from None
    except SchemaError as error:
        raise SchemaInvalid(
            f"not a valid draft 2020-12 schema: {error.message}",
            [{"path": json_pointer(error.absolute_path), "message": error.message}],
        ) from None
    foreign = identifier_failures(name, schema)
    if foreign:
        raise SchemaInvalid(
            f"the schema would be known by another name than {schema_file_name(name)!r}", foreign
        )
    misplaced = marker_failures(schema, root_allowed=name in sections)
    if misplaced:
        raise SchemaInvalid(
            f"the schema has an {MARKER} marker where it cannot count", misplaced
        )
    outside = reference_failures(name, schema, sections)
    if outside:
        raise SchemaInvalid(
            "the schema refers to a schema that is neither itself nor a section schema", outside
        )
    try:
        registry = build_registry({**others, name: schema})
    except ValueError as error:  # an `$id` that is not a URI (urllib: "Invalid IPv6 URL")
        raise SchemaInvalid(
            f"the schema has an $id that is not a valid URI: {error}",
            [{"path": "", "message": f"an $id is not a valid URI: {error}"}],
        ) from None
    resolver = registry.resolver(base_uri=schema_file_name(name))
    failures = []
    for reference in sorted(set(references(schema))):
        try:
            resolver.lookup(reference)
        except Unresolvable:
            failures.append({"path": "", "message": f"$ref {reference!r} does not resolve"})
        except ValueError:
            failures.append({"path": "", "message": f"$ref {reference!r} is not a valid URI"})
    if failures:
        raise SchemaInvalid("the schema refers to schemas the server does not have", failures)
    wrapped = MarkerReach(registry, [*others, name]).failures(name)
    if wrapped:
        raise SchemaInvalid(
            f"the schema reaches an {MARKER} marker through a keyword where it cannot count", wrapped
        )


def _recursion_panic(error: BaseException) -> bool:
    return type(error).__name__ == "PanicException" and "RecursionError" in str(error)


def _error_path(error: ValidationError) -> list[Any]:
    """The instance path of a failure; a missing required key is reported at its own path."""
    path = list(error.absolute_path)
    if error.validator in ("required", "dependentRequired"):
        match = _QUOTED_NAME.match(error.message)
        if match:
            try:
                path.append(json.loads(_to_json_string(match.group("name"))))
            except ValueError:
                pass
    return path


def _to_json_string(quoted: str) -> str:
    # jsonschema quotes names with repr(); turn a repr'd str into a JSON string literal.
    import ast

    value = ast.literal_eval(quoted)
    return json.dumps(value)


class SchemaSet:
    """Validators for every schema of one generation (one set of current schema versions)."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]], generation: int) -> None:
        self.schemas = {name: known_by_name(name, schema) for name, schema in schemas.items()}
        self.generation = generation
        self._registry = build_registry(self.schemas)
        self._validators: dict[str, Any] = {}
        self._referenced_by: dict[str, set[str]] | None = None

    def users_of(self, name: str) -> set[str]:
        """`name` and every schema that refers to it, directly or through others."""
        referenced_by = self._referenced_by
        if referenced_by is None:
            # Built once per generation (the set never changes); a race only builds it twice.
            referenced_by = {}
            for user, schema in self.schemas.items():
                others = [key for key in self.schemas if key != user]
                for target in schemas_reached(user, schema, others):
                    referenced_by.setdefault(target, set()).add(user)
            self._referenced_by = referenced_by
        users = {name}
        pending = [name]
        while pending:
            for user in referenced_by.get(pending.pop(), ()):
                if user not in users:
                    users.add(user)
                    pending.append(user)
        return users

    def wrapped_markers(self, changed: str) -> list[dict[str, str]]:
        """The markers every other schema that uses `changed` reaches only where they cannot
        count (config_service/schema/local.py), each with `schema`: that schema's name."""
        users = sorted(self.users_of(changed) - {changed})
        if not users:
            return []
        reach = MarkerReach(self._registry, self.schemas)
        return [{"schema": user, **failure} for user in users for failure in reach.failures(user)]

    def local_paths(self, name: str, documents: Iterable[Any]) -> list[tuple[str, ...]]:
        """The environment-local paths of service `name` present in any of `documents`
        (config_service/schema/local.py); none without a schema."""
        if name not in self.schemas:
            return []
        return local_paths(self._registry, name, documents)

    def validator(self, name: str) -> Any | None:
        """The compiled validator of schema `name` (built on first use), or None without a schema."""
        validator = self._validators.get(name)
        if validator is None:
            schema = self.schemas.get(name)
            if schema is None:
                return None
            validator = Validator(schema, registry=self._registry)
            self._validators[name] = validator
        return validator

    def document_errors(self, name: str, data: Any) -> list[dict[str, str]]:
        """Every failure of a parsed TSK document, each `@env` standing for its default.

        A reference without a default is not checked at its path, even where the schema
        requires the key (docs/tsk.md, "`@env`"); the service validates again after resolving.
        """
        if self.validator(name) is None:
            return []
        skipped: list[str] = []
        failures = self.errors(name, tsk.validation_view(data, skipped))
        if failures and skipped:
            ignored = set(skipped)
            failures = [failure for failure in failures if failure["path"] not in ignored]
        return failures

    def errors(self, name: str, instance: Any) -> list[dict[str, str]]:
        """Every failure of `instance` against schema `name`, as `{path, message}`, sorted by path."""
        validator = self.validator(name)
        if validator is None:
            return []
        try:
            with budget_for(instance):
                failures = [
                    {"path": json_pointer(_error_path(error)), "message": error.message}
                    for error in validator.iter_errors(instance)
                ]
        except ValidationTooCostly:
            return [
                {
                    "path": "",
                    "message": "the schema takes too many steps to check this document (its $refs "
                    "and combinators name the same subschemas over and over, or its patterns, enums "
                    "or uniqueItems meet more of the document than one check may)",
                }
            ]
        except Unresolvable as error:
            return [{"path": "", "message": f"the schema has a $ref that does not resolve: {error}"}]
        except RecursionError:
            # A schema that refers to itself without consuming the instance ({"$ref": "#"}).
            return [{"path": "", "message": "the schema refers to itself without end"}]
        except PatternUnsupported as error:
            # Only a schema stored before patterns were checked can get here.
            return [{"path": "", "message": f"the schema cannot be used: {error}"}]
        except BaseException as error:
            # The same endless self-reference, when the recursion limit strikes inside the
            # resolver's Rust code: it comes out as pyo3's PanicException, a BaseException
            # that would otherwise go through every handler (`"not": {"$ref": "#"}`).
            if not _recursion_panic(error):
                raise
            return [{"path": "", "message": "the schema refers to itself without end"}]
        failures.sort(key=lambda failure: (failure["path"], failure["message"]))
        return failures
