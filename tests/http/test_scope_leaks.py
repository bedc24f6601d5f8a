"""End-to-end: what a token can no longer, or never could, learn: revoked tokens on held requests
and event streams, and other services' schemas reached through `$ref` (more in test_schema_scope.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from config_service.core.refusals import Refused
from config_service.core.rendered import Rendered
from config_service.core.wiring import Core
from config_service.http import read
from config_service.settings import Settings
from tests.serving import USER_SERVICE, ServerProcess, assert_error, push


def _create(
    admin: httpx.Client, role: str, services: list[str], environments: list[str]
) -> tuple[str, str]:
    response = admin.post(
        "/v1/tokens",
        json={
            "name": f"{role}-leak",
            "role": role,
            "services": services,
            "environments": environments,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return str(body["id"]), str(body["token"])


def _version(pool_size: int) -> str:
    return USER_SERVICE.replace("pool_size: 20", f"pool_size: {pool_size}")


def test_a_revoked_token_gets_no_more_events(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "user-service", "staging", _version(30)).status_code in (200, 201)
    token_id, token = _create(admin, "reader", ["*"], ["*"])
    lines: list[str] = []
    opened = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.stream(
                "GET", server.url + "/v1/events", headers=headers, timeout=1.5
            ) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    opened.set()
        except httpx.HTTPError:
            pass  # the read timeout ends a stream that stays quiet

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(5)
    assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
    assert push(admin, "user-service", "staging", _version(31)).status_code == 201
    reader.join(5)
    assert lines[0] == "retry: 2000"
    assert not [line for line in lines if line.startswith(("data:", "id:"))], lines


@pytest.mark.parametrize("document_exists", [True, False])
def test_a_token_revoked_during_a_long_poll_gets_401(
    server: ServerProcess, admin: httpx.Client, document_exists: bool
) -> None:
    environment = "development"
    service = "user-service" if document_exists else "leak-new"
    if document_exists:
        assert push(admin, service, environment, _version(40)).status_code in (200, 201)
    current = admin.get(f"/v1/configs/{service}/{environment}")
    known = str(current.json()["version"]) if document_exists else "0"
    token_id, token = _create(admin, "reader", ["*"], ["*"])
    with server.client(token) as reader, ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            reader.get,
            f"/v1/configs/{service}/{environment}?wait=10",
            headers={"If-None-Match": f'"{known}"'},
        )
        time.sleep(0.5)  # let the request be held
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
        source = _version(41) if document_exists else 'name: "leak-new"\n'
        assert push(admin, service, environment, source).status_code == 201
        response = held.result(timeout=10)
    assert_error(response, 401, "unauthorized")


def test_a_writer_cannot_reach_another_service_schema_through_ref(
    server: ServerProcess, admin: httpx.Client
) -> None:
    other = {
        "type": "object",
        "required": ["signing_key_name"],
        "properties": {"signing_key_name": {"type": "string", "pattern": "^hsm-"}},
    }
    assert admin.put("/v1/schemas/billing", json=other).status_code in (200, 201)
    assert push(admin, "billing", "production", 'signing_key_name: "hsm-7"\n').status_code in (
        200,
        201,
    )
    # Not even an admin may make one service's schema refer to another's (which would open it).
    response = admin.put("/v1/schemas/user-admin-made", json={"$ref": "billing.json"})
    assert "billing.json" in assert_error(response, 422, "invalid_schema")["details"][0]["message"]
    _, token = _create(admin, "writer", ["user-*"], ["*"])
    with server.client(token) as writer:
        assert_error(writer.get("/v1/schemas/billing"), 403, "forbidden")
        assert_error(writer.get("/v1/schemas/billing/versions"), 403, "forbidden")
        assert_error(writer.get("/v1/schemas/billing/versions/1"), 403, "forbidden")
        # Its own schema may not refer to billing's, however it is written (else it could read
        # it, or push documents to learn it from the schema_violation details).
        for reference in (
            {"$ref": "billing.json"},
            {"properties": {"a": {"$ref": "billing.json#/properties"}}},
            {"$ref": "./billing.json"},
            {"$ref": "billing"},
        ):
            response = writer.put("/v1/schemas/user-probe", json=reference)
            body = assert_error(response, 422, "invalid_schema")
            assert "billing" in body["details"][0]["message"], reference
        missing = assert_error(writer.get("/v1/schemas/user-probe"), 404, "not_found")
        assert missing["message"] == "'user-probe' has no schema"
        missing = assert_error(writer.get("/v1/schemas/user-service/versions/99"), 404, "not_found")
        assert missing["message"] == "'user-service' has no version 99 of its schema"
        # The section schemas stay shared: readable, and usable by reference.
        database = writer.get("/v1/schemas/database")
        assert database.status_code == 200, database.text
        assert database.json()["service"] == "database"
        response = writer.put(
            "/v1/schemas/user-probe", json={"properties": {"db": {"$ref": "database.json"}}}
        )
        assert response.status_code == 201, response.text


def test_the_read_path_checks_scope_before_it_looks_at_the_document(tmp_path: Path) -> None:
    """Out of scope, an existing and a missing document must take the same steps to their 403
    (the time taken would otherwise tell them apart): the document is not even looked up."""
    settings = Settings(data_dir=tmp_path, sync=False, access_log=False, open_services=True)
    config_server = Core(settings)
    config_server.start()
    try:
        admin_principal = config_server.tokens.authenticate(
            settings.admin_token_path.read_text().strip()
        )
        assert admin_principal is not None
        config_server.documents.push(admin_principal, "billing", "production", "a: 1\n")
        _, token = config_server.tokens.create(admin_principal, "r", "reader", ["user-*"], ["*"])
        looked_up: list[tuple[str, str]] = []
        cached = config_server.versions.cached

        def spy(service: str, environment: str) -> Rendered | None:
            looked_up.append((service, environment))
            return cached(service, environment)

        config_server.versions.cached = spy  # type: ignore[method-assign]
        for service in ("billing", "missing"):
            scope = {
                "type": "http",
                "method": "GET",
                "path": f"/v1/configs/{service}/production",
                "query_string": b"",
                "headers": [(b"authorization", f"Bearer {token}".encode())],
            }
            with pytest.raises(Refused) as raised:
                read.parse(config_server, scope, service, "production")
            assert raised.value.code == "forbidden"
        assert looked_up == []
        assert cached("billing", "production") is not None  # the document was there to find
    finally:
        config_server.stop()


def test_event_filters_outside_the_scope_are_403(
    server: ServerProcess, admin: httpx.Client
) -> None:
    _, token = _create(admin, "reader", ["user-*"], ["staging"])
    with server.client(token, timeout=5) as reader:
        for params in (
            {"environment": "production"},
            {"service": "billing"},
            {"service": "billing", "environment": "staging"},
        ):
            assert_error(reader.get("/v1/events", params=params), 403, "forbidden")
        # The same answer whether or not the name exists: nothing is looked up first.
        assert_error(reader.get("/v1/events", params={"service": "NOT a name"}), 403, "forbidden")
        with reader.stream(
            "GET", "/v1/events", params={"service": "user-service", "environment": "staging"}
        ) as stream:
            assert stream.status_code == 200
            assert next(stream.iter_lines()) == "retry: 2000"


@pytest.mark.parametrize(
    "schema",
    [
        {"$id": "http://[", "type": "object"},
        {"$ref": "http://[x"},
        {"$id": "x", "properties": {"a": {"$id": "http://[", "type": "string"}}},
        {"$id": "http://[", "$ref": "database.json"},
    ],
)
def test_a_schema_with_an_id_or_ref_that_is_not_a_uri_is_422(
    server: ServerProcess, admin: httpx.Client, schema: dict[str, object]
) -> None:
    _, token = _create(admin, "writer", ["user-*"], ["*"])
    with server.client(token) as writer:
        for client in (admin, writer):
            assert_error(client.put("/v1/schemas/user-bad-uri", json=schema), 422, "invalid_schema")
    assert_error(admin.get("/v1/schemas/user-bad-uri"), 404, "not_found")


def test_a_writer_cannot_change_a_section_that_services_outside_its_scope_use(
    server: ServerProcess, admin: httpx.Client
) -> None:
    # user-service's schema uses the cache section; a team whose pattern happens to match
    # "cache" must not change how user-service is validated, nor read its values in the 409.
    assert push(admin, "user-service", "production", _version(50)).status_code in (200, 201)
    _, token = _create(admin, "writer", ["c*"], ["*"])
    probe = {"type": "object", "properties": {"backend": {"enum": ["guess"]}}}
    with server.client(token) as writer:
        response = writer.put("/v1/schemas/cache", json=probe)
        body = assert_error(response, 403, "forbidden")
        assert "memory" not in response.text and body["details"] == []
        # Its own services' schemas are its to change.
        assert writer.put("/v1/schemas/checkout", json={"type": "object"}).status_code == 201
    assert admin.get("/v1/schemas/cache").json()["schema"] != probe
