"""`GET /v1/configs/{service}/{environment}?path=/a/b`: one key of the current version, through the
server's hot path; `tskcfg get --path`."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from config_service.cli import main
from tests.serving import USER_SERVICE, ServerProcess, assert_error, push


def test_one_key_by_json_pointer(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "keyed", "staging", 'hosts: ["a", "b"]\n"we/ird~key": 1\n' + USER_SERVICE).status_code == 201
    document = "/v1/configs/keyed/staging"
    answer = admin.get(document, params={"path": "/database/pool_size"})
    assert answer.status_code == 200 and answer.headers["etag"] == '"1"'
    assert answer.json() == {"path": "/database/pool_size", "value": 20, "version": 1}
    assert admin.get(document, params={"path": "/database/url"}).json()["value"] == {
        "$env": "DATABASE_URL", "default": "postgresql://db.internal:5432/users",
    }
    assert admin.get(document, params={"path": "/hosts/1"}).json()["value"] == "b"
    assert admin.get(document, params={"path": "/we~1ird~0key"}).json()["value"] == 1
    assert admin.get(document, params={"path": "/cache"}).json()["value"]["ttl"] == 300
    body = assert_error(admin.get(document, params={"path": "/database/nothing"}), 404, "not_found")
    assert "/database/nothing" in body["message"]
    assert_error(admin.get(document, params={"path": "/hosts/01"}), 404, "not_found")
    assert_error(admin.get(document, params={"path": "database"}), 400, "bad_request")
    assert_error(admin.get(document, params={"path": "/a~2"}), 400, "bad_request")
    assert_error(admin.get(document, params={"path": "/" + "a" * 2000}), 400, "bad_request")
    assert_error(admin.get("/v1/configs/keyed/production", params={"path": "/a"}), 404, "not_found")

    env = {"TSKCFG_TOKEN": None, "TSKCFG_SERVER": None}
    shown = CliRunner().invoke(
        main, ["--server", server.url, "--token", server.admin_token, "get", "keyed", "staging",
               "--path", "/database/pool_size"], env=env,
    )
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == "20\n" and "version 1" in shown.stderr
    as_json = CliRunner().invoke(
        main, ["--server", server.url, "--token", server.admin_token, "--json", "get", "keyed", "staging",
               "--path", "/hosts"], env=env,
    )
    assert json.loads(as_json.stdout) == {"path": "/hosts", "value": ["a", "b"], "version": 1}
