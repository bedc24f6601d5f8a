"""End-to-end: schemas are checked against the metaschema and against every current document."""

from __future__ import annotations

import httpx

from tests.serving import USER_SERVICE, ServerProcess, assert_error, push

ORDERS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "workers": {"type": "integer", "minimum": 1},
        "database": {"$ref": "database.json"},
    },
}


def test_put_and_get_schema_with_history(admin: httpx.Client) -> None:
    created = admin.put("/v1/schemas/orders", json=ORDERS_SCHEMA)
    assert created.status_code == 201, created.text
    assert created.json()["service"] == "orders" and created.json()["version"] == 1
    identical = admin.put("/v1/schemas/orders", json=ORDERS_SCHEMA)
    assert identical.status_code == 200
    assert identical.json()["version"] == 1
    current = admin.get("/v1/schemas/orders").json()
    assert current["version"] == 1 and current["schema"] == ORDERS_SCHEMA
    changed = {**ORDERS_SCHEMA, "title": "orders"}
    assert admin.put("/v1/schemas/orders", json=changed).status_code == 201
    history = admin.get("/v1/schemas/orders/versions").json()
    assert [item["version"] for item in history["versions"]] == [2, 1]
    assert admin.get("/v1/schemas/orders/versions/1").json()["schema"] == ORDERS_SCHEMA
    assert_error(admin.get("/v1/schemas/orders/versions/9"), 404, "not_found")
    assert_error(admin.get("/v1/schemas/nothing-here"), 404, "not_found")


def test_service_schema_refs_section_schemas_by_file_name(admin: httpx.Client) -> None:
    assert admin.put("/v1/schemas/refs", json=ORDERS_SCHEMA).status_code in (200, 201)
    bad = 'name: "r"\n[database]\nurl: ""\nextra: 1\n'
    body = assert_error(push(admin, "refs", "staging", bad), 422, "schema_violation")
    paths = sorted(failure["path"] for failure in body["details"])
    assert paths == ["/database", "/database/url"]  # additionalProperties, minLength
    good = 'name: "r"\n[database]\nurl: "sqlite:///x.db"\n'
    assert push(admin, "refs", "staging", good).status_code == 201


def test_env_reference_without_default_is_not_checked_at_its_path(admin: httpx.Client) -> None:
    assert admin.put("/v1/schemas/envrefs", json=ORDERS_SCHEMA).status_code in (200, 201)
    # database.json requires url: an @env without default stands for "unknown", not "missing"
    document = 'name: "e"\n[database]\nurl: @env("DATABASE_URL")\npool_size: @env("POOL", 0)\n'
    body = assert_error(push(admin, "envrefs", "staging", document), 422, "schema_violation")
    assert [failure["path"] for failure in body["details"]] == ["/database/pool_size"]
    fixed = document.replace('@env("POOL", 0)', '@env("POOL", 5)')
    assert push(admin, "envrefs", "staging", fixed).status_code == 201


def test_invalid_schemas_are_422(admin: httpx.Client) -> None:
    body = assert_error(
        admin.put("/v1/schemas/invalid", json={"type": "no-such-type"}), 422, "invalid_schema"
    )
    assert body["details"]
    assert_error(admin.put("/v1/schemas/invalid", json=[1, 2]), 422, "invalid_schema")
    unresolved = {"properties": {"a": {"$ref": "nowhere.json"}}}
    body = assert_error(admin.put("/v1/schemas/invalid", json=unresolved), 422, "invalid_schema")
    assert "nowhere.json" in body["details"][0]["message"]
    assert_error(
        admin.put("/v1/schemas/invalid", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    assert_error(
        admin.put("/v1/schemas/invalid", content=b"{}", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert_error(admin.put("/v1/schemas/Invalid", json={}), 422, "invalid_name")
    assert_error(admin.get("/v1/schemas/invalid"), 404, "not_found")


def test_schema_that_breaks_current_documents_is_refused_with_the_list(
    admin: httpx.Client, server: ServerProcess
) -> None:
    assert admin.put("/v1/schemas/evolving", json={"type": "object"}).status_code == 201
    assert push(admin, "evolving", "development", "workers: 0\n").status_code == 201
    assert push(admin, "evolving", "staging", "workers: 4\n").status_code == 201
    assert push(admin, "evolving", "production", "workers: -1\n").status_code == 201
    stricter = {
        "type": "object",
        "required": ["workers", "name"],
        "properties": {"workers": {"type": "integer", "minimum": 1}},
    }
    body = assert_error(admin.put("/v1/schemas/evolving", json=stricter), 409, "schema_conflict")
    failing = {(item["environment"], item["version"], item["path"]) for item in body["details"]}
    assert failing == {
        ("development", 1, "/workers"),
        ("production", 1, "/workers"),
        ("development", 1, "/name"),
        ("staging", 1, "/name"),
        ("production", 1, "/name"),
    }
    assert "development" in body["message"] and "production" in body["message"]
    # Nothing changed: the old schema is current and still accepts what it accepted.
    assert admin.get("/v1/schemas/evolving").json()["version"] == 1
    assert push(admin, "evolving", "staging", "workers: 0\n").status_code == 201
    # A writer holding every environment may not force; an admin may.
    writer = server.create_token("writer", ["evolving"], ["*"])
    with server.client(writer) as client:
        assert_error(client.put("/v1/schemas/evolving?force=true", json=stricter), 403, "forbidden")
        assert_error(client.put("/v1/schemas/evolving", json=stricter), 409, "schema_conflict")
    forced = admin.put("/v1/schemas/evolving", params={"force": "true"}, json=stricter)
    assert forced.status_code == 201
    # Pushing the very same schema again is a no-op, not a conflict with the old documents.
    again = admin.put("/v1/schemas/evolving", json=stricter)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == forced.json()["version"]
    # From now on documents are checked against the new schema.
    assert_error(push(admin, "evolving", "staging", "workers: 3\n"), 422, "schema_violation")
    assert push(admin, "evolving", "staging", 'workers: 3\nname: "e"\n').status_code == 201


def test_section_schema_change_is_checked_against_services_using_it(admin: httpx.Client) -> None:
    assert admin.put("/v1/schemas/sectioned", json=ORDERS_SCHEMA).status_code == 201
    assert push(admin, "sectioned", "staging", 'name: "s"\n[database]\nurl: "a"\n').status_code == 201
    database = admin.get("/v1/schemas/database").json()["schema"]
    stricter = {**database, "required": ["url", "pool_size"]}
    body = assert_error(admin.put("/v1/schemas/database", json=stricter), 409, "schema_conflict")
    assert {"service": "sectioned", "environment": "staging", "version": 1,
            "path": "/database/pool_size", "message": "'pool_size' is a required property"} in body["details"]


def test_user_service_schema_is_loaded_at_start(admin: httpx.Client) -> None:
    schema = admin.get("/v1/schemas/user-service").json()
    assert schema["schema"]["title"] == "user-service"
    assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201


def test_hostile_schemas_are_refused_or_contained(admin: httpx.Client) -> None:
    deep: dict[str, object] = {"type": "object"}
    for _ in range(400):
        deep = {"properties": {"a": deep}}
    response = admin.put("/v1/schemas/hostile", json=deep)
    assert response.status_code in (201, 422), response.text
    assert response.status_code != 500
    assert admin.put("/v1/schemas/selfref", json={"$ref": "#"}).status_code == 201
    body = assert_error(push(admin, "selfref", "staging", "a: 1\n"), 422, "schema_violation")
    assert "itself" in body["details"][0]["message"]
    assert httpx.get(str(admin.base_url) + "/health").status_code == 200


def test_json_bodies_with_nan_or_infinity_are_refused(admin: httpx.Client) -> None:
    for body in (b'{"minimum": NaN}', b'{"maximum": Infinity}', b'{"a": -Infinity}'):
        assert_error(
            admin.put("/v1/schemas/constants", content=body, headers={"Content-Type": "application/json"}),
            400,
            "bad_request",
        )
