"""The documents in environments/ and the schemas in schemas/ that the server loads at start.

Every document must parse with config_service.tsk and pass its service's schema the way the
server validates it (each @env standing for its default), and every schema must itself be a
valid draft 2020-12 schema whose section references resolve by file name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from config_service import tsk

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ROOT / "environments"
SCHEMAS = ROOT / "schemas"
SECTION_NAMES = ("database", "cache", "logging", "security")
PIPELINE = ("development", "staging", "production")

DOCUMENTS = sorted(ENVIRONMENTS.glob("*/*.tsk"))
SCHEMA_FILES = sorted(SCHEMAS.glob("*.json"))


def load_schema(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def section_registry() -> Registry:
    resources: list[tuple[str, Resource[Any]]] = []
    for name in SECTION_NAMES:
        path = SCHEMAS / f"{name}.json"
        resources.append((path.name, DRAFT202012.create_resource(load_schema(path))))
    return Registry().with_resources(resources)


def validator_for(service: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        load_schema(SCHEMAS / f"{service}.json"), registry=section_registry()
    )


def env_refs(value: Any, path: str = "") -> list[tuple[str, tsk.EnvRef]]:
    """Every EnvRef in parsed data, with its JSON pointer."""
    if isinstance(value, tsk.EnvRef):
        return [(path, value)]
    found: list[tuple[str, tsk.EnvRef]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += env_refs(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += env_refs(item, f"{path}/{index}")
    return found


def errors_of(service: str, data: dict[str, Any]) -> list[str]:
    errors = validator_for(service).iter_errors(data)
    return sorted(f"{error.json_path}: {error.message}" for error in errors)


def production_view() -> dict[str, Any]:
    data = tsk.loads((ENVIRONMENTS / "production" / "user-service.tsk").read_text("utf-8"))
    view: dict[str, Any] = tsk.validation_view(data)
    return view


def test_every_pipeline_environment_has_a_user_service_document() -> None:
    for environment in PIPELINE:
        assert (ENVIRONMENTS / environment / "user-service.tsk").is_file(), environment


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_document_parses_and_passes_its_schema(path: Path) -> None:
    data = tsk.loads(path.read_text(encoding="utf-8"))
    service = path.stem
    assert data["name"] == service
    # Documents in the repository give every @env a default, so validation sees every value.
    for pointer, ref in env_refs(data):
        assert ref.has_default, f"{path}: @env({ref.name!r}) at {pointer} has no default"
    view = tsk.validation_view(data)
    assert not env_refs(view)
    assert errors_of(service, view) == []


SECRET_WORDS = ("password", "secret", "api_key", "private_key", "credential")


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in leaves(item, f"{path}/{key}")]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in leaves(item, f"{path}/{index}")]
    return [(path, value)]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_document_holds_no_secret_values(path: Path) -> None:
    data = tsk.loads(path.read_text(encoding="utf-8"))
    for pointer, value in leaves(data):
        if any(word in pointer.lower() for word in SECRET_WORDS):
            assert isinstance(value, tsk.EnvRef), f"{path}: {pointer} must be an @env reference"
    url = tsk.validation_view(data)["database"]["url"]
    assert "@" not in url.split("//", 1)[-1], f"{path}: credentials in the database URL"


def test_environments_differ_where_they_should() -> None:
    def view(environment: str) -> dict[str, Any]:
        path = ENVIRONMENTS / environment / "user-service.tsk"
        result: dict[str, Any] = tsk.validation_view(tsk.loads(path.read_text("utf-8")))
        return result

    development, staging, production = view("development"), view("staging"), view("production")
    assert development["logging"]["level"] == "DEBUG"
    assert development["database"]["url"].startswith("sqlite:")
    assert development["database"]["pool_size"] < staging["database"]["pool_size"]
    assert staging["database"]["pool_size"] < production["database"]["pool_size"]
    assert production["database"]["pool_size"] == 20
    assert production["security"]["require_mtls"] is True
    assert production["port"] == 8001
    assert tsk.document_hash(development) != tsk.document_hash(production)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12_with_its_file_name_as_id(path: Path) -> None:
    schema = load_schema(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == path.name


def test_service_schema_references_each_section_by_file_name() -> None:
    properties = load_schema(SCHEMAS / "user-service.json")["properties"]
    for name in SECTION_NAMES:
        assert properties[name] == {"$ref": f"{name}.json"}


@pytest.mark.parametrize(
    ("pointer", "value", "expected"),
    [
        (("database", "pool_size"), 0, "$.database.pool_size: 0 is less than the minimum of 1"),
        (("database", "timeout"), 0, "$.database.timeout: 0 is less than or equal to the minimum of 0"),
        (("logging", "level"), "LOUD", "$.logging.level: 'LOUD' is not one of"),
        (("logging", "loggers", "sqlalchemy"), "error", "$.logging.loggers.sqlalchemy: 'error' is not one of"),
        (("cache", "ttl"), -1, "$.cache.ttl: -1 is less than the minimum of 0"),
        (("security", "token_ttl"), 0, "$.security.token_ttl: 0 is less than or equal to the minimum of 0"),
        (("security", "allowed_origins"), "*", "$.security.allowed_origins: '*' is not of type 'array'"),
        (("port", ), 70000, "$.port: 70000 is greater than the maximum of 65535"),
    ],
)
def test_schema_refuses_a_bad_value(pointer: tuple[str, ...], value: Any, expected: str) -> None:
    data = production_view()
    target = data
    for key in pointer[:-1]:
        target = target[key]
    target[pointer[-1]] = value
    errors = errors_of("user-service", data)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_schema_refuses_a_missing_url_and_an_unknown_section_key() -> None:
    data = production_view()
    del data["database"]["url"]
    data["cache"]["size"] = 10
    assert errors_of("user-service", data) == [
        "$.cache: Additional properties are not allowed ('size' was unexpected)",
        "$.database: 'url' is a required property",
    ]


def test_schema_accepts_extra_top_level_sections() -> None:
    data = production_view()
    data["search"] = {"index": "users"}
    assert errors_of("user-service", data) == []
