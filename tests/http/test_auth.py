"""End-to-end: bearer tokens, the role x service x environment matrix on every route, and the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.serving import USER_SERVICE, ServerProcess, assert_error, push

RANK = {"reader": 0, "writer": 1, "admin": 2}
SCOPE_SERVICES = ["user-*"]
SCOPE_ENVIRONMENTS = ["development", "staging"]
# (service, environment, in the token's scope)
DOCUMENTS = [
    ("user-service", "staging", True),
    ("user-service", "production", False),  # environment outside the scope
    ("billing", "staging", False),  # service outside the scope
]
BILLING = 'name: "billing"\n'


@pytest.fixture(scope="module")
def seeded(server: ServerProcess, admin: httpx.Client) -> ServerProcess:
    for environment in ("development", "staging", "production"):
        assert push(admin, "user-service", environment, USER_SERVICE).status_code == 201
        assert push(admin, "billing", environment, BILLING).status_code == 201
    assert admin.put("/v1/schemas/billing", json={"type": "object"}).status_code == 201
    return server


@pytest.fixture(scope="module")
def tokens(seeded: ServerProcess) -> dict[str, str]:
    return {
        role: seeded.create_token(role, SCOPE_SERVICES, SCOPE_ENVIRONMENTS, name=f"matrix-{role}")
        for role in RANK
    }


Request = Callable[[httpx.Client, str, str], httpx.Response]


def _previous(environment: str) -> str:
    return {"staging": "development", "production": "staging"}[environment]


DOCUMENT_ROUTES: list[tuple[str, str, Request]] = [
    ("get", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}")),
    ("get 304", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}", headers={"If-None-Match": '"1"'})),
    ("get tsk", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}", headers={"Accept": "text/x-tsk"})),
    ("history", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}/versions")),
    ("one version", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}/versions/1")),
    ("diff", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}/diff", params={"from": 1, "to": 1})),
    ("instances", "reader", lambda c, s, e: c.get(f"/v1/configs/{s}/{e}/instances")),
    (
        "report instance",
        "reader",
        lambda c, s, e: c.post(
            "/v1/instances",
            json={"instance_id": "i-1", "service": s, "environment": e, "version": 1,
                  "hash": "h", "status": "applied", "error": None},
        ),
    ),
    ("push", "writer", lambda c, s, e: push(c, s, e, USER_SERVICE if s == "user-service" else BILLING)),
    ("rollback", "writer", lambda c, s, e: c.post(f"/v1/configs/{s}/{e}/rollback", json={"version": 1})),
    (
        "promote dry run",
        "writer",
        lambda c, s, e: c.post(
            f"/v1/configs/{s}/{e}/promote", json={"from": _previous(e), "dry_run": True}
        ),
    ),
]


def _allowed(role: str, required: str, in_scope: bool) -> bool:
    return RANK[role] >= RANK[required] and (in_scope or role == "admin")


@pytest.fixture(scope="module")
def clients(seeded: ServerProcess, tokens: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    opened = {role: seeded.client(token) for role, token in tokens.items()}
    try:
        yield opened
    finally:
        for client in opened.values():
            client.close()


@pytest.mark.parametrize("role", list(RANK))
@pytest.mark.parametrize("route", DOCUMENT_ROUTES, ids=[route[0] for route in DOCUMENT_ROUTES])
def test_document_route_matrix(
    clients: dict[str, httpx.Client], role: str, route: tuple[str, str, Request]
) -> None:
    name, required, call = route
    for service, environment, in_scope in DOCUMENTS:
        response = call(clients[role], service, environment)
        if _allowed(role, required, in_scope):
            assert response.status_code in (200, 201, 204, 304), (name, role, service, environment, response.text)
        else:
            assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("role", list(RANK))
def test_schema_routes_matrix(clients: dict[str, httpx.Client], role: str) -> None:
    client = clients[role]
    # Reading a schema needs the service in scope.
    assert client.get("/v1/schemas/user-service").status_code == 200
    billing = client.get("/v1/schemas/billing")
    if role == "admin":
        assert billing.status_code == 200
    else:
        assert_error(billing, 403, "forbidden")
    # ... or a schema that an in-scope schema refers to: user-service.json $refs the sections.
    database = client.get("/v1/schemas/database")
    assert database.status_code == 200, database.text
    assert database.json()["schema"]["$id"] == "database.json"
    # Putting one needs a writer holding the service in every environment: these tokens
    # hold two of three, so only the admin may.
    for service in ("user-service", "billing"):
        current = client.get(f"/v1/schemas/{service}") if role == "admin" else None
        schema = current.json()["schema"] if current is not None else {"type": "object"}
        response = client.put(f"/v1/schemas/{service}", json=schema)
        if role == "admin":
            assert response.status_code == 200, response.text
        else:
            assert_error(response, 403, "forbidden")


def test_writer_holding_every_environment_may_put_a_schema(seeded: ServerProcess) -> None:
    writer = seeded.create_token("writer", ["billing"], ["*"])
    reader = seeded.create_token("reader", ["billing"], ["*"])
    with seeded.client(writer) as client:
        assert client.put("/v1/schemas/billing", json={"type": "object"}).status_code == 200
        assert_error(client.put("/v1/schemas/user-service", json={"type": "object"}), 403, "forbidden")
    with seeded.client(reader) as client:
        assert_error(client.put("/v1/schemas/billing", json={"type": "object"}), 403, "forbidden")


@pytest.mark.parametrize("role", list(RANK))
def test_admin_routes_matrix(clients: dict[str, httpx.Client], role: str) -> None:
    client = clients[role]
    responses = [
        client.get("/v1/tokens"),
        client.get("/v1/audit"),
        client.post("/v1/tokens", json={"name": "x", "role": "reader", "services": ["*"], "environments": ["*"]}),
        client.delete("/v1/tokens/does-not-exist"),
    ]
    if role == "admin":
        assert [response.status_code for response in responses] == [200, 200, 201, 404]
    else:
        for response in responses:
            assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("role", list(RANK))
def test_services_list_shows_only_the_scope(clients: dict[str, httpx.Client], role: str) -> None:
    services = {item["service"]: item for item in clients[role].get("/v1/services").json()["services"]}
    if role == "admin":
        assert {"user-service", "billing"} <= set(services)
    else:
        assert set(services) == {"user-service"}
        assert set(services["user-service"]["environments"]) == {"development", "staging"}


def test_missing_or_bad_tokens_are_401_before_anything_else(seeded: ServerProcess, tokens: dict[str, str]) -> None:
    anonymous = seeded.client()
    cases = [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer tskcfg_abcdef_wrongsecret"},
        {"Authorization": "Bearer " + tokens["admin"][:-2] + "xx"},
    ]
    for headers in cases:
        # 401 even where the document, the environment or the body would be wrong.
        assert_error(anonymous.get("/v1/configs/user-service/staging", headers=headers), 401, "unauthorized")
        assert_error(anonymous.get("/v1/configs/nope/qa", headers=headers), 401, "unauthorized")
        assert_error(anonymous.put("/v1/configs/user-service/staging", content=b"\xff", headers=headers), 401, "unauthorized")
        assert_error(anonymous.get("/v1/services", headers=headers), 401, "unauthorized")
        assert_error(anonymous.get("/v1/audit", headers=headers), 401, "unauthorized")
    anonymous.close()


def test_forbidden_comes_before_anything_about_the_document(clients: dict[str, httpx.Client]) -> None:
    reader = clients["reader"]
    # Whether the document or the version exists is not revealed outside the scope.
    assert_error(reader.get("/v1/configs/billing/staging/versions/999"), 403, "forbidden")
    assert_error(reader.get("/v1/configs/no-such-service-x/production"), 403, "forbidden")
    assert_error(reader.get("/v1/configs/billing/no-such-env"), 403, "forbidden")
    writer = clients["writer"]
    assert_error(push(writer, "billing", "staging", 'x: "'), 403, "forbidden")


def test_tokens_are_shown_once_and_revoked_at_once(seeded: ServerProcess, admin: httpx.Client) -> None:
    created = admin.post(
        "/v1/tokens",
        json={"name": "ci", "role": "writer", "services": ["user-*"], "environments": ["staging"]},
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "role", "services", "environments", "created_at", "created_by", "token"}
    secret = body["token"]
    listed = admin.get("/v1/tokens")
    assert secret not in listed.text
    entry = next(item for item in listed.json()["tokens"] if item["id"] == body["id"])
    assert "token" not in entry and "secret_hash" not in entry and entry["revoked_at"] is None
    with seeded.client(secret) as client:
        assert client.get("/v1/configs/user-service/staging").status_code == 200
        assert admin.delete(f"/v1/tokens/{body['id']}").status_code == 204
        assert_error(client.get("/v1/configs/user-service/staging"), 401, "unauthorized")
    revoked = next(item for item in admin.get("/v1/tokens").json()["tokens"] if item["id"] == body["id"])
    assert revoked["revoked_at"] is not None
    assert secret not in seeded.log()
    assert_error(admin.delete("/v1/tokens/unknown"), 404, "not_found")


def test_token_requests_are_checked(admin: httpx.Client) -> None:
    for body in (
        {"role": "reader", "services": ["*"], "environments": ["*"]},
        {"name": "x", "role": "owner", "services": ["*"], "environments": ["*"]},
        {"name": "x", "role": "reader", "environments": ["*"]},
        {"name": "x", "role": "reader", "services": [], "environments": ["*"]},
        {"name": "x", "role": "reader", "services": "*", "environments": ["*"]},
        {"name": "x", "role": "reader", "services": ["*"], "environments": [1]},
    ):
        assert_error(admin.post("/v1/tokens", json=body), 400, "bad_request")
    assert_error(admin.post("/v1/tokens", content=b"{}", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert_error(admin.post("/v1/tokens", content=b"{", headers={"Content-Type": "application/json"}), 400, "bad_request")


def test_audit_records_every_write_with_request_id(seeded: ServerProcess, admin: httpx.Client) -> None:
    pushed = push(admin, "audited", "staging", "a: 1\n", headers={"X-Request-ID": "audit-push-1"})
    assert pushed.status_code == 201
    assert admin.put("/v1/schemas/audited", json={"type": "object"}, headers={"X-Request-ID": "audit-schema-1"}).status_code == 201
    token = admin.post(
        "/v1/tokens",
        json={"name": "audited", "role": "reader", "services": ["*"], "environments": ["*"]},
        headers={"X-Request-ID": "audit-token-1"},
    ).json()
    assert admin.delete(f"/v1/tokens/{token['id']}", headers={"X-Request-ID": "audit-revoke-1"}).status_code == 204
    entries = admin.get("/v1/audit", params={"limit": 50}).json()["entries"]
    by_request = {entry["request_id"]: entry for entry in entries}
    assert by_request["audit-push-1"]["action"] == "push"
    assert by_request["audit-push-1"]["service"] == "audited"
    assert by_request["audit-push-1"]["environment"] == "staging"
    assert by_request["audit-push-1"]["version"] == 1
    assert by_request["audit-push-1"]["actor"] == "admin"
    assert by_request["audit-schema-1"]["action"] == "schema"
    assert by_request["audit-token-1"]["action"] == "token_create"
    assert by_request["audit-revoke-1"]["action"] == "token_revoke"
    assert token["token"] not in admin.get("/v1/audit", params={"limit": 1000}).text
    filtered = admin.get("/v1/audit", params={"service": "audited", "action": "push"}).json()["entries"]
    assert [entry["request_id"] for entry in filtered] == ["audit-push-1"]
    page = admin.get("/v1/audit", params={"limit": 2}).json()
    assert len(page["entries"]) == 2 and page["next_before"] == page["entries"][-1]["id"]
    ids = [entry["id"] for entry in entries]
    assert ids == sorted(ids, reverse=True)
