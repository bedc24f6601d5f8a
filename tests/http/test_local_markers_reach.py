"""An environment-local marker promotion could not honour is refused wherever it is reached from:
a service schema that reaches a section's marker through allOf/anyOf/oneOf, a section schema
that gains a marker a stored service wraps in a combinator, and the same files in schemas/ at
start (a real server each time)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import ServerProcess, assert_error, make_root, push

ANYOF = {
    "$id": "svc-anyof.json",
    "type": "object",
    "properties": {"database": {"anyOf": [{"$ref": "database.json"}, {"type": "null"}]}},
}
UNMARKED_MAILER = {"type": "object", "properties": {"host": {"type": "string"}}}
MARKED_MAILER = {"type": "object", "properties": {"host": {"x-environment-local": True, "type": "string"}}}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = make_root(tmp_path_factory.mktemp("reach"))
    process = ServerProcess(root, "--sections", "mailer").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(running: ServerProcess) -> Iterator[httpx.Client]:
    with running.client(running.admin_token) as client:
        yield client


@pytest.mark.parametrize(
    ("schema", "combinator", "marker"),
    [
        (ANYOF, "/properties/database/anyOf", "database.json#/properties/url"),
        (
            {"type": "object", "properties": {"database": {"allOf": [{"$ref": "database.json"}]}}},
            "/properties/database/allOf",
            "database.json#/properties/url",
        ),
        (
            {
                "type": "object",
                "properties": {"database": {"allOf": [{"$ref": "#/$defs/db"}]}},
                "$defs": {"db": {"type": "object", "properties": {"url": {"x-environment-local": True}}}},
            },
            "/properties/database/allOf",
            "svc-anyof.json#/$defs/db/properties/url",
        ),
    ],
)
def test_a_marker_behind_a_combinator_and_a_reference_is_refused_at_put(
    admin: httpx.Client, schema: dict[str, object], combinator: str, marker: str
) -> None:
    body = assert_error(admin.put("/v1/schemas/svc-anyof", json=schema), 422, "invalid_schema")
    assert {(d["path"], d["marker"]) for d in body["details"]} >= {(combinator, marker)}
    assert all(d["path"] == combinator for d in body["details"])
    assert "x-environment-local" in body["message"]
    assert_error(admin.get("/v1/schemas/svc-anyof"), 404, "not_found")


def test_the_same_schema_without_the_combinator_keeps_production_s_url(admin: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"database": {"$ref": "database.json"}}}
    assert admin.put("/v1/schemas/svc-direct", json=schema).status_code == 201
    for environment, host, echo in (("staging", "STAGING", "true"), ("production", "PROD", "false")):
        source = f'[database]\nurl: "postgresql://{host}-db.internal/x"\npool_size: 3\necho: {echo}\n'
        assert push(admin, "svc-direct", environment, source).status_code == 201
    promoted = admin.post("/v1/configs/svc-direct/production/promote", json={"from": "staging"})
    assert promoted.status_code == 201, promoted.text
    assert "/database/url" in promoted.json()["kept_local"]
    config = admin.get("/v1/configs/svc-direct/production").json()["config"]
    assert config["database"]["url"] == "postgresql://PROD-db.internal/x" and config["database"]["echo"] is True


def test_a_section_gaining_a_marker_a_stored_service_wraps_is_refused(admin: httpx.Client) -> None:
    assert admin.put("/v1/schemas/mailer", json=UNMARKED_MAILER).status_code == 201
    wrapping = {"type": "object", "properties": {"mailer": {"oneOf": [{"$ref": "mailer.json"}, {"type": "null"}]}}}
    assert admin.put("/v1/schemas/svc-wraps", json=wrapping).status_code == 201
    body = assert_error(admin.put("/v1/schemas/mailer", json=MARKED_MAILER), 422, "invalid_schema")
    assert [(d["schema"], d["path"], d["marker"]) for d in body["details"]] == [
        ("svc-wraps", "/properties/mailer/oneOf", "mailer.json#/properties/host")
    ]
    assert "svc-wraps" in body["message"]
    assert admin.get("/v1/schemas/mailer").json()["version"] == 1
    # Once the service refers to the section directly, the marker counts and may be added.
    direct = {"type": "object", "properties": {"mailer": {"$ref": "mailer.json"}}}
    assert admin.put("/v1/schemas/svc-wraps", json=direct).status_code == 201
    assert admin.put("/v1/schemas/mailer", json=MARKED_MAILER).status_code == 201


def test_schema_files_at_start_follow_the_same_rule(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    schemas = root / "schemas"
    (schemas / "mailer.json").write_text(json.dumps(UNMARKED_MAILER))
    wrapping = {"type": "object", "properties": {"mailer": {"anyOf": [{"$ref": "mailer.json"}]}}}
    (schemas / "svc-wraps.json").write_text(json.dumps(wrapping))
    server = ServerProcess(root, "--sections", "mailer").start()
    try:
        with server.client(server.admin_token) as admin:
            assert admin.get("/v1/schemas/svc-wraps").status_code == 200
    finally:
        server.stop()
    (schemas / "mailer.json").write_text(json.dumps(MARKED_MAILER))
    (schemas / "svc-anyof.json").write_text(json.dumps(ANYOF))
    server.start()
    try:
        with server.client(server.admin_token) as admin:
            assert admin.get("/v1/schemas/mailer").json()["version"] == 1
            assert_error(admin.get("/v1/schemas/svc-anyof"), 404, "not_found")
            entries = admin.get("/v1/audit", params={"action": "schema_refused"}).json()["entries"]
            assert {entry["service"] for entry in entries} == {"mailer", "svc-anyof"}
    finally:
        server.stop()
