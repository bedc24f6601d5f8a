"""JSON Schema checks: schemas compiled once per set of schema versions, every failure as a JSON pointer.

A service schema may `$ref` the other schemas by file name (`"$ref": "database.json"`); the
registry holds every current schema under `<name>.json` (and under its `$id` when it has
another one), so a service schema and the section schemas it uses are resolved together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from config_service import tsk

_QUOTED_NAME = re.compile(r"^(?P<name>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


class SchemaInvalid(ValueError):
    """A schema that is not a valid draft 2020-12 schema, or whose `$ref`s do not resolve."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 pointer of a path given as keys and indexes; the root is ""."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def schema_file_name(name: str) -> str:
    return f"{name}.json"


def build_registry(schemas: Mapping[str, Mapping[str, Any]]) -> Registry[Any]:
    """A registry holding each schema under `<name>.json` and under its own `$id`."""
    pairs: list[tuple[str, Resource[Any]]] = []
    for name, schema in schemas.items():
        resource = Resource.from_contents(dict(schema), default_specification=DRAFT202012)
        pairs.append((schema_file_name(name), resource))
        identifier = schema.get("$id") if isinstance(schema, Mapping) else None
        if isinstance(identifier, str) and identifier and identifier != schema_file_name(name):
            pairs.append((identifier, resource))
    registry: Registry[Any] = Registry().with_resources(pairs)
    return registry.crawl()


def references(node: Any) -> Iterable[str]:
    """Every `$ref` and `$dynamicRef` value in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def referenced_schemas(schema: Any) -> set[str]:
    """The names of the other schemas a schema refers to by file name (`"database.json"`)."""
    names = set()
    for reference in references(schema):
        target = reference.split("#", 1)[0]
        if target.endswith(".json") and "/" not in target:
            names.add(target[: -len(".json")])
    return names


def _identifiers(node: Any) -> Iterable[str]:
    """Every `$id` in a schema (each one is a base that `$ref`s below it resolve against)."""
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            identifier = item.get("$id")
            if isinstance(identifier, str):
                yield identifier
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def schemas_reached(schema: Any, others: Mapping[str, Any]) -> set[str]:
    """The names among `others` that `schema`'s references may reach: by file name, by `$id`,
    or by a reference relative to any `$id` in `schema` (an over-estimate is fine: it is used
    to refuse, never to allow).
    """
    by_uri: dict[str, str] = {}
    for name, other in others.items():
        by_uri[schema_file_name(name)] = name
        identifier = other.get("$id") if isinstance(other, Mapping) else None
        if isinstance(identifier, str) and identifier:
            by_uri[identifier.rstrip("#")] = name
    bases = {"", *_identifiers(schema)}
    reached = set()
    for reference in references(schema):
        target = reference.split("#", 1)[0]
        if not target:
            continue
        for uri in {target, *(_join(base, target) for base in bases)}:
            if uri in by_uri:
                reached.add(by_uri[uri])
    return reached


def _join(base: str, target: str) -> str:
    try:
        return urljoin(base, target)
    except ValueError:  # not a URI: check_schema refuses the schema for it
        return target


def check_schema(name: str, schema: Any, others: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise SchemaInvalid unless `schema` is a valid 2020-12 schema whose references resolve
    among `others` (the other current schemas) and itself.
    """
    if not isinstance(schema, dict):
        raise SchemaInvalid(
            "a schema must be a JSON object", [{"path": "", "message": "not an object"}]
        )
    try:
        Draft202012Validator.check_schema(schema)
    except RecursionError:
        raise SchemaInvalid(
            "the schema is nested too deeply", [{"path": "", "message": "nested too deeply"}]
        ) from None
    except SchemaError as error:
        raise SchemaInvalid(
            f"not a valid draft 2020-12 schema: {error.message}",
            [{"path": json_pointer(error.absolute_path), "message": error.message}],
        ) from None
    try:
        registry = build_registry({**others, name: schema})
    except ValueError as error:  # an `$id` that is not a URI (urllib: "Invalid IPv6 URL")
        raise SchemaInvalid(
            f"the schema has an $id that is not a valid URI: {error}",
            [{"path": "", "message": f"an $id is not a valid URI: {error}"}],
        ) from None
    identifier = schema.get("$id")
    base = identifier if isinstance(identifier, str) else schema_file_name(name)
    resolver = registry.resolver(base_uri=base)
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
        self.schemas = dict(schemas)
        self.generation = generation
        self._registry = build_registry(self.schemas)
        self._validators: dict[str, Draft202012Validator] = {}
        self._referenced_by: dict[str, set[str]] | None = None

    def users_of(self, name: str) -> set[str]:
        """`name` and every schema that refers to it (by file name or `$id`), directly or
        through others."""
        referenced_by = self._referenced_by
        if referenced_by is None:
            # Built once per generation (the set never changes); a race only builds it twice.
            referenced_by = {}
            for user, schema in self.schemas.items():
                others = {key: value for key, value in self.schemas.items() if key != user}
                for target in schemas_reached(schema, others):
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

    def validator(self, name: str) -> Draft202012Validator | None:
        """The compiled validator of schema `name` (built on first use), or None without a schema."""
        validator = self._validators.get(name)
        if validator is None:
            schema = self.schemas.get(name)
            if schema is None:
                return None
            validator = Draft202012Validator(schema, registry=self._registry)
            self._validators[name] = validator
        return validator

    def document_errors(self, name: str, data: Any) -> list[dict[str, str]]:
        """Every failure of a parsed TSK document, each `@env` standing for its default.

        A reference without a default is not checked at its path, even where the schema
        requires the key (TSK.md section 4); the service validates again after resolving.
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
            failures = [
                {"path": json_pointer(_error_path(error)), "message": error.message}
                for error in validator.iter_errors(instance)
            ]
        except Unresolvable as error:
            return [{"path": "", "message": f"the schema has a $ref that does not resolve: {error}"}]
        except RecursionError:
            # A schema that refers to itself without consuming the instance ({"$ref": "#"}).
            return [{"path": "", "message": "the schema refers to itself without end"}]
        failures.sort(key=lambda failure: (failure["path"], failure["message"]))
        return failures
