"""End-to-end: what `tskcfg serve` does at start: admin token, schemas/ and environments/ import, flags."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.serving import (
    REPOSITORY,
    TSKCFG,
    USER_SERVICE,
    ServerProcess,
    assert_error,
    make_root,
    push,
)


def test_first_start_writes_an_admin_token_0600_and_logs_only_its_path(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync", open_services=True).start()
    try:
        path = server.data_dir / "admin.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = server.admin_token
        assert str(path) in server.log()
        assert secret not in server.log()
        with server.client(secret) as admin:
            tokens = admin.get("/v1/tokens").json()["tokens"]
            assert [(token["name"], token["role"]) for token in tokens] == [("admin", "admin")]
    finally:
        server.stop()
    path.unlink()
    server.start()  # tokens exist: no new admin token, no file
    try:
        assert not path.exists()
    finally:
        server.stop()


def test_environment_files_are_imported_once_and_never_overwrite_later_pushes(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    for environment in ("development", "staging", "production"):
        shutil.copy(
            REPOSITORY / "environments" / environment / "user-service.tsk",
            root / "environments" / environment / "user-service.tsk",
        )
    (root / "environments" / "qa").mkdir()
    (root / "environments" / "qa" / "user-service.tsk").write_text(USER_SERVICE)
    (root / "environments" / "staging" / "broken.tsk").write_text('a: 1\nb: "unclosed\n')
    server = ServerProcess(root, open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            staging = admin.get("/v1/configs/user-service/staging").json()
            assert staging["version"] == 1
            assert staging["kind"] == "sync"
            assert staging["author"] == "file:staging/user-service.tsk"
            source = admin.get("/v1/configs/user-service/staging", headers={"Accept": "text/x-tsk"}).text
            assert source == (root / "environments" / "staging" / "user-service.tsk").read_text()
            services = admin.get("/v1/services").json()["services"]
            assert [item["service"] for item in services] == ["user-service"]
            assert set(services[0]["environments"]) == {"development", "staging", "production"}
            # The broken file is logged with line and column, audited, and stored nowhere.
            assert_error(admin.get("/v1/configs/broken/staging"), 404, "not_found")
            assert "staging/broken.tsk" in server.log() and "line 2, column 4" in server.log()
            refused = admin.get("/v1/audit", params={"action": "sync_failed"}).json()["entries"]
            assert refused[0]["service"] == "broken" and refused[0]["detail"]["details"][0]["line"] == 2
            assert "qa is not a configured environment" in server.log()
            # An API push after the sync...
            assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201
    finally:
        server.stop()
    server.start()
    try:
        with server.client(server.admin_token) as admin:
            # ...is not overwritten by a restart, since the file did not change.
            current = admin.get("/v1/configs/user-service/staging").json()
            assert current["version"] == 2 and current["kind"] == "push"
    finally:
        server.stop()
    changed = root / "environments" / "staging" / "user-service.tsk"
    changed.write_text(changed.read_text().replace("pool_size: 10", "pool_size: 12"))
    server.start()
    try:
        with server.client(server.admin_token) as admin:
            # ...and a file changed after that push does not overwrite it either: one source of
            # truth per document, so the file's change waits as a sync conflict.
            current = admin.get("/v1/configs/user-service/staging").json()
            assert current["version"] == 2 and current["kind"] == "push"
            services = admin.get("/v1/services").json()["services"]
            assert services[0]["environments"]["staging"]["sync"] == {
                "state": "conflict",
                "file": "staging/user-service.tsk",
                "file_version": 1,
                "current_version": 2,
            }
            assert admin.get("/v1/configs/user-service/development").json()["version"] == 1
    finally:
        server.stop()


def test_schema_file_that_breaks_documents_is_refused_not_forced(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    server = ServerProcess(root, open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201
    finally:
        server.stop()
    schema = json.loads((root / "schemas" / "user-service.json").read_text())
    schema["required"].append("owner")
    (root / "schemas" / "user-service.json").write_text(json.dumps(schema))
    (root / "schemas" / "garbage.json").write_text("{not json")
    server.start()
    try:
        with server.client(server.admin_token) as admin:
            assert admin.get("/v1/schemas/user-service").json()["version"] == 1
            entries = admin.get("/v1/audit", params={"action": "schema_refused"}).json()["entries"]
            assert {entry["service"] for entry in entries} == {"user-service", "garbage"}
            assert "schemas/user-service.json" in server.log()
    finally:
        server.stop()


def test_no_sync_imports_nothing_and_settings_come_from_the_environment(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    shutil.copy(REPOSITORY / "environments" / "staging" / "user-service.tsk", root / "environments" / "staging")
    server = ServerProcess(root, "--no-sync", environ={"TSKCFG_MAX_BODY": "100"}, open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            assert_error(admin.get("/v1/configs/user-service/staging"), 404, "not_found")
            assert_error(admin.get("/v1/schemas/user-service"), 404, "not_found")
            assert_error(push(admin, "small", "staging", "a: " + "1" * 100 + "\n"), 413, "too_large")
            assert push(admin, "small", "staging", "a: 1\n").status_code == 201
    finally:
        server.stop()


def test_custom_pipeline(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync", "--pipeline", "dev,prod", open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            assert push(admin, "piped", "prod", "a: 1\n").status_code == 201
            assert_error(admin.get("/v1/configs/piped/staging"), 404, "unknown_environment")
    finally:
        server.stop()


@pytest.mark.parametrize("workers", ["0", "65", "-1"])
def test_a_number_of_workers_out_of_bounds_is_refused_with_the_bounds(tmp_path: Path, workers: str) -> None:
    # (Several workers are served since the workers follow the store: tests/http/test_workers.py.)
    result = subprocess.run(
        [str(TSKCFG), "serve", "--workers", workers, "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"--workers must be a number of processes from 1 to 64, not {workers}" in result.stderr
    assert not (tmp_path / "data").exists()
    bad = subprocess.run(
        [str(TSKCFG), "serve", "--pipeline", "dev,dev", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "twice" in bad.stderr


def test_two_apps_with_two_databases_in_one_process(tmp_path: Path) -> None:
    import asyncio

    from config_service.http.app import create_app
    from config_service.settings import Settings

    async def main() -> None:
        apps = [
            create_app(Settings(data_dir=tmp_path / name, sync=False, access_log=False, open_services=True))
            for name in ("one", "two")
        ]
        lifespans = [app.router.lifespan_context(app) for app in apps]
        for context in lifespans:
            await context.__aenter__()
        try:
            clients = []
            for index, app in enumerate(apps):
                token = (tmp_path / ("one", "two")[index] / "admin.token").read_text().strip()
                clients.append(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app),
                        base_url="http://test",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )
            first = await clients[0].put(
                "/v1/configs/shared/staging", content=b"a: 1\n", headers={"Content-Type": "text/x-tsk"}
            )
            assert first.status_code == 201
            assert (await clients[1].get("/v1/configs/shared/staging")).status_code == 404
            # A token of one server means nothing to the other.
            other = await clients[0].get(
                "/v1/services", headers={"Authorization": clients[1].headers["Authorization"]}
            )
            assert other.status_code == 401
            for client in clients:
                await client.aclose()
        finally:
            for context in lifespans:
                await context.__aexit__(None, None, None)

    asyncio.run(main())


def test_importing_the_package_does_not_import_the_server() -> None:
    code = (
        "import sys, config_service, config_service.tsk, config_service.settings, config_service.store;"
        "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    )
    result = subprocess.run([str(TSKCFG.with_name("python")), "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "[]", result.stderr


def test_health_is_503_when_the_store_fails(tmp_path: Path) -> None:
    import asyncio

    from config_service.http.app import create_app
    from config_service.settings import Settings

    async def main() -> None:
        app = create_app(Settings(data_dir=tmp_path, sync=False, access_log=False, open_services=True))
        context = app.router.lifespan_context(app)
        await context.__aenter__()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                assert (await client.get("/health")).status_code == 200
                app.state.core.store.close()
                failed = await client.get("/health")
                assert failed.status_code == 503
                assert failed.json()["status"] == "error" and failed.json()["store"] == "failed"
        finally:
            await context.__aexit__(None, None, None)

    asyncio.run(main())


def test_connection_bounds_must_be_positive(tmp_path: Path) -> None:
    for flag, value in (("--max-connections", "0"), ("--body-timeout", "0"), ("--body-timeout", "nan")):
        result = subprocess.run(
            [str(TSKCFG), "serve", flag, value, "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, (flag, value, result.stderr)
        assert f"{flag} must be a positive number" in result.stderr
    assert not (tmp_path / "data").exists()


def test_missing_private_internals_fall_back_loudly_and_the_server_still_serves(tmp_path: Path) -> None:
    # What a uvicorn that renamed a hook and a jsonschema without `_resolver` look like to the
    # server, simulated in the server's own process before it starts.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "from config_service.http1 import internals\n"
        "from config_service.schema import keywords\n"
        "internals._PROTOCOL_METHODS += ('_renamed_by_a_later_uvicorn',)\n"
        "keywords.JSONSCHEMA_INTERNALS_MISSING = 'simulated: no _resolver'\n"
    )
    root = make_root(tmp_path / "root")
    (root / "schemas" / "strict.json").write_text(
        json.dumps({"type": "object", "properties": {"a": {}}, "unevaluatedProperties": False})
    )
    server = ServerProcess(root, environ={"PYTHONPATH": str(hooks)}, open_services=True).start()
    try:
        log = server.log()
        uvicorn_version = importlib.metadata.version("uvicorn")
        jsonschema_version = importlib.metadata.version("jsonschema")
        assert (
            f"WARNING config_service uvicorn {uvicorn_version} lacks internals this server builds on "
            "(HttpToolsProtocol._renamed_by_a_later_uvicorn)"
        ) in log, log
        assert "the hot read path is off" in log and "--max-connections" in log
        assert (
            f"WARNING config_service jsonschema {jsonschema_version} lacks internals this server "
            "builds on (simulated: no _resolver)"
        ) in log, log
        with server.client(server.admin_token) as admin:
            assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201
            assert admin.get("/v1/configs/user-service/staging").json()["version"] == 1
            poll = admin.get(
                "/v1/configs/user-service/staging", params={"wait": "0.2"}, headers={"If-None-Match": '"1"'}
            )
            assert poll.status_code == 304
            # unevaluatedProperties still holds, through jsonschema's own keyword.
            assert push(admin, "strict", "staging", "a: 1\n").status_code == 201
            refused = push(admin, "strict", "staging", "a: 1\nb: 2\n")
            assert_error(refused, 422, "schema_violation")
        assert "Traceback" not in server.log()
    finally:
        server.stop()
