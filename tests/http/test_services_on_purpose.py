"""Services exist on purpose: a push to an unknown service is 404 `unknown_service` with the nearest
name the token may read; admins create services; schemas and files make them too; the server can
open services again for local work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import USER_SERVICE, ServerProcess, assert_error, make_root, push


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = make_root(tmp_path_factory.mktemp("closed"))
    (root / "environments" / "staging" / "from-file.tsk").write_text("a: 1\n", encoding="utf-8")
    process = ServerProcess(root).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(closed: ServerProcess) -> Iterator[httpx.Client]:
    with closed.client(closed.admin_token) as client:
        yield client


def test_a_typo_is_refused_with_the_nearest_service(admin: httpx.Client) -> None:
    body = assert_error(push(admin, "user-servce", "staging", USER_SERVICE), 404, "unknown_service")
    assert "did you mean 'user-service'?" in body["message"]
    assert body["details"] == [{"service": "user-servce", "suggestion": "user-service"}]
    # Nothing was created: the name is still unknown.
    listed = admin.get("/v1/services").json()["services"]
    assert "user-servce" not in [entry["service"] for entry in listed]
    # A name like nothing gets no guess, and the way to create it.
    body = assert_error(push(admin, "zzzz", "staging", "a: 1\n"), 404, "unknown_service")
    assert "tskcfg service create" in body["message"]


def test_the_suggestion_never_names_a_service_the_token_may_not_read(closed: ServerProcess) -> None:
    token = closed.create_token("writer", ["user-servce"], ["*"], name="narrow")
    with closed.client(token) as narrow:
        body = assert_error(push(narrow, "user-servce", "staging", "a: 1\n"), 404, "unknown_service")
    assert "user-service" not in body["message"].replace("user-servce", "")
    assert body["details"] == [{"service": "user-servce", "suggestion": None}]


def test_an_admin_creates_a_service_and_pushes_are_accepted(closed: ServerProcess, admin: httpx.Client) -> None:
    made = admin.post("/v1/services", json={"service": "billing"})
    assert made.status_code == 201, made.text
    assert made.json()["service"] == "billing" and made.json()["origin"] == "api"
    again = admin.post("/v1/services", json={"service": "billing"})
    assert again.status_code == 200 and again.json()["created_at"] == made.json()["created_at"]
    listed = {entry["service"]: entry for entry in admin.get("/v1/services").json()["services"]}
    assert listed["billing"]["environments"] == {}
    assert push(admin, "billing", "staging", "a: 1\n").status_code == 201
    audit = admin.get("/v1/audit", params={"action": "service_create"}).json()["entries"]
    assert [(entry["service"], entry["actor"]) for entry in audit] == [("billing", "admin")]

    writer = closed.create_token("writer", ["*"], ["*"], name="writer")
    with closed.client(writer) as client:
        assert_error(client.post("/v1/services", json={"service": "other"}), 403, "forbidden")
    assert_error(admin.post("/v1/services", json={"service": "Bad Name"}), 422, "invalid_name")
    assert_error(admin.post("/v1/services", json={"service": "database"}), 422, "invalid_name")
    assert_error(admin.post("/v1/services", json={}), 400, "bad_request")
    assert_error(admin.post("/v1/services", content=b"x", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")


def test_schemas_and_files_make_services(admin: httpx.Client) -> None:
    put = admin.put("/v1/schemas/orders", json={"type": "object"})
    assert put.status_code == 201, put.text
    assert push(admin, "orders", "development", "a: 1\n").status_code == 201
    # environments/staging/from-file.tsk was there at start.
    assert admin.get("/v1/configs/from-file/staging").status_code == 200
    assert push(admin, "from-file", "production", "a: 2\n").status_code == 201


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_open_services_restores_create_on_push(tmp_path: Path, how: str) -> None:
    root = make_root(tmp_path)
    if how == "flag":
        process = ServerProcess(root, open_services=True)
    else:
        process = ServerProcess(root, environ={"TSKCFG_OPEN_SERVICES": "1"})
    process.start()
    try:
        with process.client(process.admin_token) as client:
            assert push(client, "brand-new", "development", "a: 1\n").status_code == 201
            listed = client.get("/v1/services").json()["services"]
            assert "brand-new" in [entry["service"] for entry in listed]
    finally:
        process.stop()
