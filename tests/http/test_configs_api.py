"""End-to-end: the configs API (push, get, ETag, history, services) and bad input, on a real server."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import quote

import httpx

from config_service import tsk
from tests.serving import USER_SERVICE, ServerProcess, assert_error, push


def test_push_tsk_creates_version_one_then_two(admin: httpx.Client) -> None:
    first = push(admin, "user-service", "development", USER_SERVICE, "first")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["version"] == 1
    assert body["service"] == "user-service" and body["environment"] == "development"
    assert body["kind"] == "push" and body["author"] == "admin" and body["message"] == "first"
    assert body["hash"] == tsk.document_hash(tsk.loads(USER_SERVICE))
    assert body["promoted_from"] is None and body["rolled_back_to"] is None
    assert body["created_at"].endswith("Z")
    assert first.headers["etag"] == '"1"'
    second = push(admin, "user-service", "development", USER_SERVICE.replace("20", "25"))
    assert second.status_code == 201
    assert second.json()["version"] == 2


def test_identical_source_answers_200_with_the_current_version(admin: httpx.Client) -> None:
    source = 'name: "same"\n'
    assert push(admin, "identical", "development", source).status_code == 201
    again = push(admin, "identical", "development", source, "no change")
    assert again.status_code == 200
    assert again.json()["version"] == 1
    history = admin.get("/v1/configs/identical/development/versions").json()
    assert len(history["versions"]) == 1


def test_push_json_body_with_message(admin: httpx.Client) -> None:
    response = admin.put(
        "/v1/configs/json-body/staging",
        json={"source": 'name: "j"\nport: 1\n', "message": "from CI ✓"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["message"] == "from CI ✓"


def test_message_header_is_percent_encoded_utf8(admin: httpx.Client) -> None:
    response = push(admin, "messages", "staging", "a: 1\n", quote("déploiement #42"))
    assert response.status_code == 201
    assert response.json()["message"] == "déploiement #42"
    bad = push(admin, "messages", "staging", "a: 2\n", "%ff%fe")
    assert_error(bad, 400, "bad_request")


def test_get_returns_wire_json_etag_and_304(admin: httpx.Client) -> None:
    source = 'port: @env("PORT", 8001)\nhost: @env("HOST")\nname: "x"\n'
    created = push(admin, "getter", "staging", source)
    assert created.status_code == 201
    response = admin.get("/v1/configs/getter/staging")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    body = response.json()
    assert body["config"] == {
        "port": {"$env": "PORT", "default": 8001},
        "host": {"$env": "HOST"},
        "name": "x",
    }
    assert body["version"] == 1 and body["kind"] == "push"
    # The client can verify the hash from what it received.
    canonical = json.dumps(body["config"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == body["hash"]
    not_modified = admin.get("/v1/configs/getter/staging", headers={"If-None-Match": '"1"'})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == '"1"'
    assert not_modified.content == b""
    stale = admin.get("/v1/configs/getter/staging", headers={"If-None-Match": '"7"'})
    assert stale.status_code == 200
    source_response = admin.get("/v1/configs/getter/staging", headers={"Accept": "text/x-tsk"})
    assert source_response.status_code == 200
    assert source_response.headers["content-type"].startswith("text/x-tsk")
    assert source_response.text == source


def test_accept_naming_tsk_with_quality_zero_answers_json(admin: httpx.Client) -> None:
    assert push(admin, "accepting", "staging", "n: 1\n").status_code == 201
    for path in ("/v1/configs/accepting/staging", "/v1/configs/accepting/staging/versions/1"):
        for accept in ("text/x-tsk;q=0", "application/json, text/x-tsk; q=0.0"):
            refused = admin.get(path, headers={"Accept": accept})
            assert refused.headers["content-type"].startswith("application/json"), (path, accept)
            assert refused.json()["config"] == {"n": 1}
        for accept in ("text/x-tsk;q=0.5", "application/json;q=0.1, TEXT/X-TSK"):
            wanted = admin.get(path, headers={"Accept": accept})
            assert wanted.headers["content-type"].startswith("text/x-tsk"), (path, accept)
            assert wanted.text == "n: 1\n"


def test_get_of_a_missing_document_is_404(admin: httpx.Client) -> None:
    assert_error(admin.get("/v1/configs/never-pushed/staging"), 404, "not_found")


def test_unknown_environment_is_404_and_bad_names_are_422(admin: httpx.Client) -> None:
    assert_error(admin.get("/v1/configs/user-service/qa"), 404, "unknown_environment")
    assert_error(push(admin, "user-service", "qa", "a: 1\n"), 404, "unknown_environment")
    assert_error(push(admin, "Bad_Name", "staging", "a: 1\n"), 422, "invalid_name")
    assert_error(push(admin, "-dash", "staging", "a: 1\n"), 422, "invalid_name")
    assert_error(push(admin, "a" * 64, "staging", "a: 1\n"), 422, "invalid_name")
    assert_error(admin.get("/v1/configs/x/Staging"), 422, "invalid_name")


def test_invalid_tsk_is_422_with_line_and_column_and_stores_nothing(admin: httpx.Client) -> None:
    response = push(admin, "broken", "staging", 'a: 1\nb: "unclosed\n')
    body = assert_error(response, 422, "invalid_tsk")
    assert body["details"][0]["line"] == 2
    assert body["details"][0]["column"] == 4
    assert body["details"][0]["message"]
    assert_error(admin.get("/v1/configs/broken/staging"), 404, "not_found")


def test_bytes_that_are_not_utf8_are_invalid_tsk_with_position(admin: httpx.Client) -> None:
    response = admin.put(
        "/v1/configs/binary/staging",
        content=b'a: 1\nb: "\xff\xfe"\n',
        headers={"Content-Type": "text/x-tsk"},
    )
    body = assert_error(response, 422, "invalid_tsk")
    assert body["details"][0]["line"] == 2
    assert body["details"][0]["column"] == 5


def test_schema_violation_lists_every_failure_at_its_own_path(admin: httpx.Client) -> None:
    source = 'name: "user-service"\nversion: "1.0"\nport: 70000\n[database]\npool_size: 0\n'
    body = assert_error(push(admin, "user-service", "staging", source), 422, "schema_violation")
    paths = {failure["path"] for failure in body["details"]}
    # All of them, not the first; the missing key at its own path.
    assert paths == {"/version", "/port", "/database/pool_size", "/database/url"}
    assert all(failure["message"] for failure in body["details"])


def test_env_reference_stands_for_its_default_in_validation(admin: httpx.Client) -> None:
    wrong_default = USER_SERVICE.replace('@env("PORT", 8001)', '@env("PORT", "eighty")')
    body = assert_error(push(admin, "user-service", "production", wrong_default), 422, "schema_violation")
    assert [failure["path"] for failure in body["details"]] == ["/port"]
    # Without a default, validation skips that path: the service's own process resolves it.
    no_default = USER_SERVICE.replace(
        '@env("DATABASE_URL", "postgresql://db.internal:5432/users")', '@env("DATABASE_URL")'
    )
    assert push(admin, "user-service", "production", no_default).status_code == 201


def test_if_match_compare_and_set(admin: httpx.Client) -> None:
    document = "/v1/configs/cas/staging"
    assert_error(push(admin, "cas", "staging", "a: 1\n", headers={"If-Match": "*"}), 412, "precondition_failed")
    assert push(admin, "cas", "staging", "a: 1\n", headers={"If-Match": '"0"'}).status_code == 201
    body = assert_error(
        push(admin, "cas", "staging", "a: 2\n", headers={"If-Match": '"0"'}), 412, "precondition_failed"
    )
    assert body["details"] == [{"current_version": 1}]
    assert_error(push(admin, "cas", "staging", "a: 2\n", headers={"If-Match": '"5"'}), 412, "precondition_failed")
    # The precondition is checked before the identical-source shortcut.
    assert_error(push(admin, "cas", "staging", "a: 1\n", headers={"If-Match": '"3"'}), 412, "precondition_failed")
    assert push(admin, "cas", "staging", "a: 2\n", headers={"If-Match": '"1"'}).status_code == 201
    assert push(admin, "cas", "staging", "a: 3\n", headers={"If-Match": "*"}).status_code == 201
    for bad in ("1", "W/\"1\"", '"one"', "", '"-1"'):
        assert_error(push(admin, "cas", "staging", "a: 4\n", headers={"If-Match": bad}), 400, "bad_request")
    assert admin.get(document).json()["version"] == 3


def test_body_limits_and_content_types(admin: httpx.Client) -> None:
    too_big = "a: " + '"' + "x" * (1024 * 1024) + '"\n'
    assert_error(push(admin, "big", "staging", too_big), 413, "too_large")
    assert_error(
        admin.put("/v1/configs/big/staging", content=b"a: 1\n", headers={"Content-Type": "application/xml"}),
        415,
        "unsupported_media_type",
    )
    assert_error(admin.put("/v1/configs/big/staging", content=b"a: 1\n"), 415, "unsupported_media_type")
    # Bodies are UTF-8: one declared in another charset is refused, not misread.
    for declared in ("text/x-tsk; charset=latin-1", 'application/json; charset="iso-8859-1"'):
        refused = assert_error(
            admin.put("/v1/configs/big/staging", content="a: \"é\"\n".encode("latin-1"), headers={"Content-Type": declared}),
            415,
            "unsupported_media_type",
        )
        assert "UTF-8" in refused["message"]
    for declared in ("text/x-tsk; charset=UTF-8", "text/x-tsk;charset=utf8"):
        headers = {"Content-Type": declared}
        assert admin.put("/v1/configs/charset/staging", content="a: \"é\"\n".encode(), headers=headers).status_code in (200, 201)
    assert_error(
        admin.put("/v1/configs/big/staging", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    assert_error(admin.put("/v1/configs/big/staging", json=["a"]), 400, "bad_request")
    assert_error(admin.put("/v1/configs/big/staging", json={"message": "no source"}), 400, "bad_request")
    assert_error(admin.put("/v1/configs/big/staging", content=b"[" * 100_000, headers={"Content-Type": "application/json"}), 400, "bad_request")
    # text/plain is TSK too.
    plain = admin.put("/v1/configs/big/staging", content=b"a: 1\n", headers={"Content-Type": "text/plain; charset=utf-8"})
    assert plain.status_code == 201
    assert_error(admin.get("/v1/configs/big/staging/versions/2"), 404, "not_found")


def test_history_is_paginated_newest_first(admin: httpx.Client) -> None:
    for number in range(1, 6):
        assert push(admin, "paged", "development", f"n: {number}\n").status_code == 201
    first = admin.get("/v1/configs/paged/development/versions", params={"limit": 2}).json()
    assert [item["version"] for item in first["versions"]] == [5, 4]
    assert first["next_before"] == 4
    second = admin.get(
        "/v1/configs/paged/development/versions", params={"limit": 2, "before": first["next_before"]}
    ).json()
    assert [item["version"] for item in second["versions"]] == [3, 2]
    last = admin.get("/v1/configs/paged/development/versions", params={"limit": 2, "before": 2}).json()
    assert [item["version"] for item in last["versions"]] == [1]
    assert last["next_before"] is None
    assert "config" not in first["versions"][0]
    assert_error(admin.get("/v1/configs/paged/development/versions", params={"limit": "x"}), 400, "bad_request")
    assert_error(admin.get("/v1/configs/paged/development/versions", params={"limit": 0}), 400, "bad_request")


def test_one_version_is_immutable_and_cacheable(admin: httpx.Client) -> None:
    assert push(admin, "immutable", "staging", "n: 1\n").status_code == 201
    assert push(admin, "immutable", "staging", "n: 2\n").status_code == 201
    old = admin.get("/v1/configs/immutable/staging/versions/1")
    assert old.status_code == 200
    assert old.json()["config"] == {"n": 1}
    assert old.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert old.headers["etag"] == '"1"'
    assert admin.get("/v1/configs/immutable/staging/versions/1", headers={"Accept": "text/x-tsk"}).text == "n: 1\n"
    assert_error(admin.get("/v1/configs/immutable/staging/versions/3"), 404, "not_found")
    assert_error(admin.get("/v1/configs/immutable/staging/versions/abc"), 400, "bad_request")


def test_services_lists_current_versions_per_environment(admin: httpx.Client) -> None:
    assert push(admin, "listed", "development", "a: 1\n").status_code == 201
    assert push(admin, "listed", "staging", "a: 1\n").status_code == 201
    assert push(admin, "listed", "staging", "a: 2\n").status_code == 201
    services = {item["service"]: item for item in admin.get("/v1/services").json()["services"]}
    listed = services["listed"]["environments"]
    assert set(listed) == {"development", "staging"}
    assert listed["staging"]["version"] == 2
    assert set(listed["staging"]) == {"version", "hash", "created_at"}


def test_request_id_is_echoed_or_made(admin: httpx.Client, server: ServerProcess) -> None:
    echoed = admin.get("/v1/services", headers={"X-Request-ID": "ci-run.42_a"})
    assert echoed.headers["x-request-id"] == "ci-run.42_a"
    made = admin.get("/v1/services", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces"
    assert len(made.headers["x-request-id"]) >= 8
    assert httpx.get(server.url + "/nowhere").headers["x-request-id"]
    assert_error(httpx.get(server.url + "/nowhere"), 404, "not_found")
    assert_error(httpx.delete(server.url + "/health"), 405, "method_not_allowed")


def test_access_log_has_one_json_line_per_request(admin: httpx.Client, server: ServerProcess) -> None:
    admin.get("/v1/configs/user-service/development", headers={"X-Request-ID": "logged-1"})
    admin.get("/v1/configs/nothing-here/development", headers={"X-Request-ID": "logged-2"})
    deadline = time.monotonic() + 5
    lines: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline and len(lines) < 2:
        time.sleep(0.1)
        for line in server.log().splitlines():
            if '"request_id": "logged-' in line:
                entry = json.loads(line)
                lines[str(entry["request_id"])] = entry
    assert lines["logged-1"]["status"] == 200
    assert lines["logged-1"]["route"] == "/v1/configs/{service}/{environment}"
    assert lines["logged-2"]["status"] == 404
    assert lines["logged-2"]["path"] == "/v1/configs/nothing-here/development"
    assert str(lines["logged-1"]["at"]).endswith("Z")
    assert server.admin_token not in server.log()


def test_health_metrics_and_openapi_need_no_token(server: ServerProcess, admin: httpx.Client) -> None:
    health = httpx.get(server.url + "/health")
    assert health.json() == {"status": "ok", "store": "ok", "version": "0.1.0"}
    push(admin, "metered", "staging", 'bad: "\n')
    metrics = httpx.get(server.url + "/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert "tskcfg_http_requests_total" in text
    assert "tskcfg_http_request_duration_seconds_bucket" in text
    assert 'tskcfg_versions_written_total{kind="push"}' in text
    assert 'tskcfg_validation_failures_total{kind="invalid_tsk"}' in text
    # Route templates only: no service names or values.
    assert "metered" not in text and "user-service" not in text
    spec = httpx.get(server.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    expected = {
        ("/v1/configs/{service}/{environment}", "put"),
        ("/v1/configs/{service}/{environment}", "get"),
        ("/v1/configs/{service}/{environment}/versions", "get"),
        ("/v1/configs/{service}/{environment}/versions/{version}", "get"),
        ("/v1/configs/{service}/{environment}/sync", "post"),
        ("/v1/schemas/{service}", "put"),
        ("/v1/tokens", "post"),
        ("/v1/tokens/{token_id}", "delete"),
        ("/v1/audit", "get"),
        ("/v1/services", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
    }
    listed = {(path, method) for path, methods in spec["paths"].items() for method in methods}
    assert expected <= listed
