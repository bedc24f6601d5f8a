"""Promotion keeps environment-local values: the shipped documents go development -> staging ->
production through a real server, and every value the shipped schemas mark stays its
environment's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from config_service import tsk
from tests.serving import REPOSITORY, ServerProcess, assert_error, make_root, push

# What the shipped schemas mark "x-environment-local" and the shipped documents hold.
MARKED = [
    "/cache/max_size", "/cache/ttl", "/database/pool_size", "/database/timeout", "/database/url",
    "/dependencies", "/features/rate_limit_per_minute", "/health_check/interval",
    "/health_check/timeout", "/logging/level", "/logging/loggers", "/security/allowed_origins",
    "/security/region", "/security/require_mtls", "/security/token_ttl",
]
ENVIRONMENTS = ("development", "staging", "production")


def _at(data: Any, pointer: str) -> Any:
    for key in pointer.strip("/").split("/"):
        data = data[key]
    return data


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = make_root(tmp_path_factory.mktemp("shipped"))
    for environment in ENVIRONMENTS:
        shutil.copy(
            REPOSITORY / "environments" / environment / "user-service.tsk",
            root / "environments" / environment / "user-service.tsk",
        )
    process = ServerProcess(root).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def admin(shipped: ServerProcess) -> Iterator[httpx.Client]:
    with shipped.client(shipped.admin_token) as client:
        yield client


def _data(admin: httpx.Client, environment: str) -> Any:
    response = admin.get(f"/v1/configs/user-service/{environment}")
    assert response.status_code == 200, response.text
    return tsk.from_wire(response.json()["config"])


def test_the_shipped_documents_promote_along_the_pipeline_keeping_every_marked_value(
    admin: httpx.Client,
) -> None:
    original = {
        environment: tsk.loads((REPOSITORY / "environments" / environment / "user-service.tsk").read_text("utf-8"))
        for environment in ENVIRONMENTS
    }
    assert _data(admin, "production") == original["production"]
    development = (REPOSITORY / "environments" / "development" / "user-service.tsk").read_text("utf-8")
    changed = (
        development.replace('version: "1.0.0"', 'version: "1.1.0"')
        .replace("signup_enabled: true", "signup_enabled: false")
        .replace("pool_size: 2", "pool_size: 4")
    )
    assert push(admin, "user-service", "development", changed, "release 1.1").status_code == 201

    for source, target in (("development", "staging"), ("staging", "production")):
        path = f"/v1/configs/user-service/{target}/promote"
        preview = admin.post(path, json={"from": source, "dry_run": True})
        assert preview.status_code == 200, preview.text
        body = preview.json()
        assert body["would_create"] is True and body["kept_local"] == MARKED
        # Only what is shared changes; the kept paths are listed apart.
        assert sorted(change["path"] for change in body["diff"]["changes"]) == [
            "/features/signup_enabled", "/version",
        ]
        promoted = admin.post(path, json={"from": source})
        assert promoted.status_code == 201, promoted.text
        assert promoted.json()["kind"] == "promote" and promoted.json()["kept_local"] == MARKED
        data = _data(admin, target)
        for pointer in MARKED:
            assert _at(data, pointer) == _at(original[target], pointer), (target, pointer)
        assert data["version"] == "1.1.0" and data["features"]["signup_enabled"] is False
        # The text is the source environment's, comments included.
        text = admin.get(path.replace("/promote", ""), headers={"Accept": "text/x-tsk"}).text
        assert text.startswith("# user-service on a developer's machine")
        history = admin.get(path.replace("/promote", "/versions")).json()["versions"]
        assert history[0]["kept_local"] == MARKED and history[1]["kept_local"] is None

    diff = admin.get("/v1/diff/user-service", params={"from": "staging", "to": "production"}).json()
    assert diff["changes"] and all(change["local"] is True for change in diff["changes"])
    shared = admin.get("/v1/diff/user-service", params={"from": "development", "to": "production"}).json()
    assert {change["path"]: change["local"] for change in shared["changes"]}["/database/url"] is True


def test_a_local_value_the_target_lacks_refuses_the_promotion(admin: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"url": {"x-environment-local": True, "type": "string"}, "flag": {"type": "boolean"}},
    }
    assert admin.put("/v1/schemas/mailer", json=schema).status_code == 201
    assert push(admin, "mailer", "development", '$host: "http://dev"\nurl: $host\nflag: true\n').status_code == 201
    promote = "/v1/configs/mailer/staging/promote"
    body = assert_error(admin.post(promote, json={"from": "development"}), 422, "missing_local_value")
    assert body["details"] == [{"path": "/url"}] and "push 'staging' once" in body["message"]
    assert_error(admin.post(promote, json={"from": "development", "dry_run": True}), 422, "missing_local_value")
    assert push(admin, "mailer", "staging", 'url: "http://staging"\nflag: false\n').status_code == 201
    promoted = admin.post(promote, json={"from": "development"})
    assert promoted.status_code == 201, promoted.text
    text = admin.get("/v1/configs/mailer/staging", headers={"Accept": "text/x-tsk"}).text
    # The use of $host is replaced, and its definition, used no more, goes: no value of
    # development's stays in staging's text.
    assert text == 'url: "http://staging"\nflag: true\n'


@pytest.mark.parametrize("keyword", ["allOf", "anyOf", "oneOf"])
def test_a_marker_under_a_combinator_is_refused_at_put(admin: httpx.Client, keyword: str) -> None:
    schema = {keyword: [{"properties": {"url": {"x-environment-local": True}}}]}
    body = assert_error(admin.put("/v1/schemas/combined", json=schema), 422, "invalid_schema")
    assert body["details"][0]["path"] == f"/{keyword}/0/properties/url"
    items = {"properties": {"hosts": {"type": "array", "items": {"x-environment-local": True}}}}
    assert_error(admin.put("/v1/schemas/combined", json=items), 422, "invalid_schema")


def test_a_local_key_is_added_to_a_source_text_without_a_final_newline(admin: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"host": {"x-environment-local": True, "type": "string"}}}
    assert admin.put("/v1/schemas/no-newline", json=schema).status_code == 201
    assert push(admin, "no-newline", "development", "z: 1").status_code == 201
    assert push(admin, "no-newline", "staging", 'host: "stg"\n').status_code == 201
    promoted = admin.post("/v1/configs/no-newline/staging/promote", json={"from": "development"})
    assert promoted.status_code == 201, promoted.text
    assert promoted.json()["kept_local"] == ["/host"]
    text = admin.get("/v1/configs/no-newline/staging", headers={"Accept": "text/x-tsk"}).text
    assert text == 'z: 1\nhost: "stg"\n'


def test_no_source_value_stays_behind_in_a_variable_definition(admin: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"host": {"x-environment-local": True, "type": "string"}}}
    assert admin.put("/v1/schemas/var-host", json=schema).status_code == 201
    development = '# hosts\n$h: "dev-SECRET-host"\nhost: $h\nworkers: 4\n'
    assert push(admin, "var-host", "development", development).status_code == 201
    assert push(admin, "var-host", "staging", 'host: "stg"\nworkers: 2\n').status_code == 201
    promoted = admin.post("/v1/configs/var-host/staging/promote", json={"from": "development"})
    assert promoted.status_code == 201, promoted.text
    text = admin.get("/v1/configs/var-host/staging", headers={"Accept": "text/x-tsk"}).text
    assert text == '# hosts\nhost: "stg"\nworkers: 4\n' and "SECRET" not in text
