"""Every `tskcfg` server command against a real `tskcfg serve`: output, --json shapes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import ROOT, Server, ServerProcess, free_port, make_root

DEVELOPMENT = (ROOT / "environments" / "development" / "user-service.tsk").read_text("utf-8")
PRODUCTION = (ROOT / "environments" / "production" / "user-service.tsk").read_text("utf-8")
METADATA_KEYS = {
    "service", "environment", "version", "hash", "created_at", "author", "message", "kind",
    "promoted_from", "rolled_back_to", "kept_local",
}


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_push_then_get_gives_back_the_same_source(server: Server, tmp_path: Path) -> None:
    file = write(tmp_path / "a.tsk", 'name: "alpha"  # kept\n[database]\nurl: @env("DB", "sqlite://")\n')
    first = server.cli("push", "alpha", "development", file, "-m", "first")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("alpha/development: version 1 (hash ")
    assert first.stdout.endswith(") created\n")
    again = server.cli("push", "alpha", "development", file)
    assert again.exit_code == 0
    assert again.stdout.startswith("alpha/development: unchanged, version 1 (hash ")
    source = server.cli("get", "alpha", "development")
    assert source.exit_code == 0 and source.stdout == Path(file).read_text("utf-8")
    data = server.cli("get", "alpha", "development", "--format", "json")
    assert json.loads(data.stdout) == {
        "name": "alpha",
        "database": {"url": {"$env": "DB", "default": "sqlite://"}},
    }
    full = server.cli("--json", "get", "alpha", "development")
    body = json.loads(full.stdout)
    assert set(body) == METADATA_KEYS | {"config"}
    assert body["version"] == 1 and body["message"] == "first" and body["kind"] == "push"


def test_push_from_stdin_with_json_output_and_a_unicode_message(server: Server) -> None:
    result = server.cli(
        "push", "beta", "staging", "-", "-m", "pool → 10 ✓ 100%", "--json", input="a: 1\n"
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == METADATA_KEYS
    assert (body["service"], body["environment"], body["version"]) == ("beta", "staging", 1)
    assert body["message"] == "pool → 10 ✓ 100%"
    history = server.cli("history", "beta", "staging")
    assert "pool → 10 ✓ 100%" in history.stdout


def test_history_pages_and_get_reads_an_older_version(server: Server) -> None:
    for value in range(1, 4):
        assert server.cli("push", "gamma", "development", "-", input=f"value: {value}\n").exit_code == 0
    page = server.cli("history", "gamma", "development", "--limit", "2")
    assert page.exit_code == 0
    rows = page.stdout.splitlines()
    assert rows[0].split() == ["VERSION", "CREATED", "AUTHOR", "KIND", "HASH", "MESSAGE"]
    assert [row.split()[0] for row in rows[1:]] == ["3", "2"]
    assert page.stderr == "(older: --before 2)\n"
    body = json.loads(server.cli("history", "gamma", "development", "--json", "--before", "2").stdout)
    assert [meta["version"] for meta in body["versions"]] == [1]
    assert body["next_before"] is None
    old = server.cli("get", "gamma", "development", "--version", "1")
    assert old.exit_code == 0 and old.stdout == "value: 1\n"
    missing = server.cli("get", "gamma", "development", "--version", "9")
    assert missing.exit_code == 1
    assert "(404 from GET " in missing.stderr


def test_invalid_tsk_is_refused_with_the_line_and_a_caret(server: Server, tmp_path: Path) -> None:
    file = write(tmp_path / "bad.tsk", 'name: "x"\nport: 8000-9000\n')
    result = server.cli("push", "delta", "development", file)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("tskcfg: ") and "(422 from PUT " in lines[0]
    assert lines[1:] == [
        f'{file}:2:7: ranges are not supported: write "8000-9000" or [8000, 9000]',
        "    port: 8000-9000",
        "          ^",
    ]
    as_json = server.cli("push", "delta", "development", file, "--json")
    body = json.loads(as_json.stdout)
    assert body["error"] == "invalid_tsk"
    assert body["details"] == [
        {"line": 2, "column": 7, "message": 'ranges are not supported: write "8000-9000" or [8000, 9000]'}
    ]
    assert server.cli("get", "delta", "development").exit_code == 1  # nothing was stored


def test_schema_violation_lists_each_path(server: Server) -> None:
    broken = DEVELOPMENT.replace("pool_size: 2", "pool_size: 0").replace('level: "DEBUG"', 'level: "LOUD"')
    result = server.cli("push", "user-service", "staging", "-", input=broken)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "  /database/pool_size: 0 is less than the minimum of 1",
        "  /logging/level: 'LOUD' is not one of ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL']",
    ]
    body = json.loads(server.cli("push", "user-service", "staging", "-", "--json", input=broken).stdout)
    assert body["error"] == "schema_violation"
    assert [item["path"] for item in body["details"]] == ["/database/pool_size", "/logging/level"]


def test_if_version_makes_push_compare_and_set(server: Server) -> None:
    assert server.cli("push", "epsilon", "development", "-", "--if-version", "0", input="a: 1\n").exit_code == 0
    again = server.cli("push", "epsilon", "development", "-", "--if-version", "0", input="a: 2\n")
    assert again.exit_code == 1
    assert "(412 from PUT " in again.stderr
    stale = server.cli("push", "epsilon", "development", "-", "--if-version", "5", input="a: 2\n")
    assert stale.exit_code == 1
    ok = server.cli("push", "epsilon", "development", "-", "--if-version", "1", input="a: 2\n")
    assert ok.exit_code == 0 and "version 2" in ok.stdout


def test_a_scoped_ci_token_is_refused_for_production(server: Server) -> None:
    created = server.cli(
        "token", "create", "ci", "--role", "writer", "--service", "zeta-*",
        "--env", "development", "--env", "staging",
    )
    assert created.exit_code == 0, created.output
    ci_token = created.stdout.strip()
    assert len(ci_token) >= 32 and "\n" not in ci_token  # stdout holds the token alone
    assert "not shown again" in created.stderr and ci_token not in created.stderr
    assert server.cli("push", "zeta-api", "development", "-", token=ci_token, input="a: 1\n").exit_code == 0
    refused = server.cli("push", "zeta-api", "production", "-", token=ci_token, input="a: 1\n")
    assert refused.exit_code == 1
    assert "(403 from PUT " in refused.stderr and ci_token not in refused.output
    assert server.cli(
        "promote", "zeta-api", "--from", "development", "--to", "staging", token=ci_token
    ).exit_code == 0
    promote = server.cli("promote", "zeta-api", "--from", "staging", "--to", "production", token=ci_token)
    assert promote.exit_code == 1 and "(403 from POST " in promote.stderr
    other = server.cli("push", "alpha-api", "development", "-", token=ci_token, input="a: 1\n")
    assert other.exit_code == 1  # outside its service pattern
    listed = server.cli("token", "list")
    assert "ci" in listed.stdout and ci_token not in listed.stdout
    listed_json = json.loads(server.cli("token", "list", "--json").stdout)
    ci = next(item for item in listed_json["tokens"] if item["name"] == "ci")
    assert "token" not in ci and ci["role"] == "writer" and ci["environments"] == ["development", "staging"]
    revoked = server.cli("token", "revoke", ci["id"])
    assert revoked.exit_code == 0 and revoked.stdout == f"token {ci['id']} revoked\n"
    after = server.cli("get", "zeta-api", "development", token=ci_token)
    assert after.exit_code == 1 and "(401 from GET " in after.stderr


def test_token_create_json_shows_the_token_once(server: Server) -> None:
    body = json.loads(server.cli(
        "token", "create", "reader-x", "--role", "reader", "--service", "*", "--env", "*", "--json"
    ).stdout)
    assert set(body) >= {"id", "name", "role", "services", "environments", "created_at", "token"}
    assert body["services"] == ["*"] and body["role"] == "reader"
    denied = server.cli("push", "alpha", "development", "-", token=body["token"], input="a: 9\n")
    assert denied.exit_code == 1 and "(403 from PUT " in denied.stderr


def test_no_output_ever_shows_the_admin_token(server: Server) -> None:
    outputs = [
        server.cli(*args)
        for args in (
            ["services"], ["services", "--json"], ["history", "alpha", "development", "--json"],
            ["get", "alpha", "development", "--json"], ["token", "list", "--json"], ["audit", "--json"],
            ["get", "nobody", "development"],
        )
    ]
    for result in outputs:
        assert server.admin_token not in result.output


def test_a_wrong_token_exits_1_without_echoing_it(server: Server) -> None:
    result = server.cli("services", token="not-a-real-token-value")
    assert result.exit_code == 1
    assert "(401 from GET " in result.stderr and "not-a-real-token-value" not in result.output


def test_token_discovery_from_the_environment_and_data_admin_token(server: Server, elsewhere: Path) -> None:
    from click.testing import CliRunner

    from config_service.cli import main

    runner = CliRunner()
    none = runner.invoke(main, ["--server", server.url, "services"])
    assert none.exit_code == 1
    assert "give --token, set TSKCFG_TOKEN, or run where data/admin.token is" in none.stderr
    from_env = runner.invoke(main, ["services"], env={"TSKCFG_TOKEN": server.admin_token, "TSKCFG_SERVER": server.url})
    assert from_env.exit_code == 0 and "alpha" in from_env.stdout
    (elsewhere / "data").mkdir()
    (elsewhere / "data" / "admin.token").write_text(server.admin_token + "\n")
    from_file = runner.invoke(main, ["--server", server.url, "services"])
    assert from_file.exit_code == 0 and "alpha" in from_file.stdout
    (elsewhere / "data" / "admin.token").unlink()
    moved = runner.invoke(
        main, ["--server", server.url, "services"], env={"TSKCFG_DATA_DIR": str(server.root / "data")}
    )
    assert moved.exit_code == 0 and "alpha" in moved.stdout


def test_the_pipeline_promote_diff_and_rollback(server: Server) -> None:
    assert server.cli("push", "pipeline-svc", "development", "-", input=DEVELOPMENT).exit_code == 0
    dry = server.cli("promote", "pipeline-svc", "--from", "development", "--to", "staging", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("pipeline-svc/staging: promoting from development would create a new version:\n")
    # A service without a schema (so nothing is environment-local): staging has no document
    # yet, so every top-level key is an addition, in document order.
    assert dry.stdout.splitlines()[1:4] == [
        '+ /name: "user-service"', '+ /version: "1.0.0"', '+ /port: @env("PORT", 8001)'
    ]
    assert '+ /health_check: {"endpoint": "/health", "interval": 10, "timeout": 2}' in dry.stdout
    dry_json = json.loads(server.cli(
        "promote", "pipeline-svc", "--from", "development", "--to", "staging", "--dry-run", "--json"
    ).stdout)
    assert dry_json["would_create"] is True and {"changes", "unified"} <= set(dry_json["diff"])
    assert server.cli("get", "pipeline-svc", "staging").exit_code == 1  # the dry run created nothing

    promoted = server.cli("promote", "pipeline-svc", "--from", "development", "--to", "staging", "-m", "r1")
    assert promoted.exit_code == 0
    assert promoted.stdout.startswith("pipeline-svc/staging: version 1 (hash ")
    assert promoted.stdout.endswith("created from development version 1\n")
    skipping = server.cli("promote", "pipeline-svc", "--from", "development", "--to", "production")
    assert skipping.exit_code == 1 and "(409 from POST " in skipping.stderr
    production = json.loads(server.cli(
        "promote", "pipeline-svc", "--from", "staging", "--to", "production", "--json"
    ).stdout)
    assert production["kind"] == "promote"
    assert production["promoted_from"] == {"environment": "staging", "version": 1}
    same = server.cli("promote", "pipeline-svc", "--from", "staging", "--to", "production")
    assert same.exit_code == 0 and "unchanged" in same.stdout

    none = server.cli("diff", "pipeline-svc", "--from-env", "staging", "--to-env", "production")
    assert none.exit_code == 0 and none.stdout == "no differences\n"

    bigger = DEVELOPMENT.replace("pool_size: 2", "pool_size: 40")
    assert server.cli("push", "pipeline-svc", "production", "-", input=bigger).exit_code == 0
    changed = server.cli("diff", "pipeline-svc", "production", "--from", "1", "--to", "2")
    assert changed.exit_code == 0
    lines = changed.stdout.splitlines()
    assert lines[0] == "~ /database/pool_size: 2 -> 40"
    assert "-pool_size: 2" in lines and "+pool_size: 40" in lines
    assert "\x1b[" not in changed.stdout  # no colour when stdout is not a terminal
    from click.testing import CliRunner

    from config_service.cli import main

    coloured = CliRunner().invoke(
        main,
        ["--server", server.url, "--token", server.admin_token, "diff", "pipeline-svc", "production",
         "--from", "1", "--to", "2"],
        color=True,  # as on a terminal
    )
    assert "\x1b[32m+pool_size: 40\x1b[0m" in coloured.stdout
    assert "\x1b[31m-pool_size: 2\x1b[0m" in coloured.stdout
    across = json.loads(server.cli(
        "diff", "pipeline-svc", "--from-env", "staging", "--to-env", "production", "--json"
    ).stdout)
    assert across["from"] == {"environment": "staging", "version": 1}
    assert across["to"] == {"environment": "production", "version": 2}
    assert across["changes"] == [{"op": "change", "path": "/database/pool_size", "old": 2, "new": 40}]
    assert "+pool_size: 40" in across["unified"]

    rolled = server.cli("rollback", "pipeline-svc", "production", "1", "-m", "too many connections")
    assert rolled.exit_code == 0
    assert rolled.stdout.startswith("pipeline-svc/production: version 3 (hash ")
    assert rolled.stdout.endswith("created from version 1\n")
    history = json.loads(server.cli("history", "pipeline-svc", "production", "--json").stdout)
    assert [(meta["version"], meta["kind"], meta["rolled_back_to"]) for meta in history["versions"]] == [
        (3, "rollback", 1), (2, "push", None), (1, "promote", None),
    ]
    assert server.cli("get", "pipeline-svc", "production").stdout == DEVELOPMENT
    table = server.cli("history", "pipeline-svc", "production").stdout
    assert "rollback to v1" in table and "promote from staging v1" in table
    missing = server.cli("rollback", "pipeline-svc", "production", "99")
    assert missing.exit_code == 1


def test_schema_push_and_get(server: Server, tmp_path: Path) -> None:
    got = server.cli("schema", "get", "user-service")
    assert got.exit_code == 0
    assert json.loads(got.stdout) == json.loads((ROOT / "schemas" / "user-service.json").read_text())
    assert server.cli("push", "eta", "staging", "-", input="port: 80\n").exit_code == 0
    strict = {"type": "object", "properties": {"port": {"type": "integer", "minimum": 1024}}}
    schema_file = write(tmp_path / "eta.json", json.dumps(strict))
    conflict = server.cli("schema", "push", "eta", schema_file)
    assert conflict.exit_code == 1
    assert "  staging v1 /port: 80 is less than the minimum of 1024" in conflict.stderr.splitlines()
    forced = server.cli("schema", "push", "eta", schema_file, "--force")
    assert forced.exit_code == 0 and forced.stdout == "eta: schema version 1 stored\n"
    conflict_json = json.loads(server.cli("schema", "push", "eta", "-", "--json", input=json.dumps(
        {"type": "object", "properties": {"port": {"type": "integer", "minimum": 8000}}}
    )).stdout)
    assert conflict_json["error"] == "schema_conflict"
    assert "(409 from" not in conflict_json["message"]  # the API's own error object
    assert conflict_json["details"][0]["path"] == "/port"
    same = server.cli("schema", "push", "eta", schema_file, "--force", "--json")
    assert json.loads(same.stdout)["version"] == 1
    body = json.loads(server.cli("schema", "get", "eta", "--json").stdout)
    assert body["schema"] == strict and body["version"] == 1
    not_json = server.cli("schema", "push", "eta", "-", input="{not json")
    assert not_json.exit_code == 1 and "is not JSON" in not_json.stderr
    invalid = server.cli("schema", "push", "eta", "-", input='{"type": 5}')
    assert invalid.exit_code == 1 and "(422 from PUT " in invalid.stderr


def test_validate_against_the_schema_on_the_server(server: Server, tmp_path: Path) -> None:
    good = write(tmp_path / "user-service.tsk", PRODUCTION)
    result = server.cli("validate", good, "--service", "user-service")
    assert result.exit_code == 0, result.output
    bad = write(tmp_path / "bad.tsk", PRODUCTION.replace("ttl: 300", "ttl: -1"))
    refused = server.cli("validate", bad, "--service", "user-service")
    assert refused.exit_code == 1
    assert refused.stderr == f"{bad}: /cache/ttl: -1 is less than the minimum of 0\n"


def test_services_instances_and_audit(server: Server) -> None:
    assert server.cli("push", "theta", "production", "-", input="a: 1\n").exit_code == 0
    with server.http() as http:
        current = http.get("/v1/configs/theta/production").json()
        report = {
            "instance_id": "theta-7f9c", "service": "theta", "environment": "production",
            "version": 1, "hash": current["hash"], "status": "applied", "error": None,
        }
        assert http.post("/v1/instances", json=report).status_code == 204
    listed = server.cli("instances", "theta", "production")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["INSTANCE", "VERSION", "STATUS", "LAST", "SEEN", "BEHIND", "STALE", "ERROR"]
    assert row.split()[:3] == ["theta-7f9c", "1", "applied"]
    body = json.loads(server.cli("instances", "theta", "production", "--json").stdout)
    assert {"instance_id", "version", "hash", "status", "error", "last_seen", "stale", "behind"} <= set(
        body["instances"][0]
    )

    services = server.cli("services")
    theta = next(line for line in services.stdout.splitlines() if line.startswith("theta "))
    assert "v1" in theta
    services_json = json.loads(server.cli("services", "--json").stdout)
    entry = next(item for item in services_json["services"] if item["service"] == "theta")
    assert entry["environments"]["production"]["version"] == 1

    audit = json.loads(server.cli("audit", "--service", "theta", "--since", "1h", "--json").stdout)
    assert audit["entries"] and all(item["service"] == "theta" for item in audit["entries"])
    assert "push" in {item["action"] for item in audit["entries"]}
    pushes = json.loads(server.cli(
        "audit", "--env", "production", "--action", "push", "--actor", "admin", "--json"
    ).stdout)["entries"]
    assert pushes and {(item["environment"], item["action"], item["actor"]) for item in pushes} == {
        ("production", "push", "admin")
    }
    future = json.loads(server.cli("audit", "--since", "2999-01-01T00:00:00Z", "--json").stdout)
    assert future["entries"] == []
    assert server.cli("audit", "--since", "yesterday").exit_code == 2
    text = server.cli("audit", "--service", "theta", "--limit", "1")
    assert text.exit_code == 0 and len(text.stdout.splitlines()) == 2


def test_watch_prints_each_new_version(server: Server) -> None:
    assert server.cli("push", "iota", "development", "-", input="n: 0\n").exit_code == 0
    command = [
        sys.executable, "-c", "from config_service.cli import main; main()",
        "--server", server.url, "--token", server.admin_token,
        "watch", "iota", "development", "--count", "1", "--json",
    ]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stderr is not None
        assert watcher.stderr.readline().startswith("watching iota/development")
        # The stream is open; push until the watcher has seen one (bounded: 20 pushes, ~10 s).
        for value in range(1, 21):
            server.cli("push", "iota", "development", "-", input=f"n: {value}\n")
            try:
                out, _ = watcher.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            pytest.fail("watch printed no event for 20 pushes")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=5)
    assert watcher.returncode == 0
    event = json.loads(out.strip())
    assert event["service"] == "iota" and event["environment"] == "development"
    assert event["version"] >= 2 and len(event["hash"]) == 64


def test_watch_with_a_bad_token_exits_1(server: Server) -> None:
    result = server.cli("watch", "kappa", "production", "--count", "1", token="tskcfg_revoked_or_wrong")
    assert result.exit_code == 1
    assert "(401 from GET " in result.stderr


def test_unknown_things_are_refused_not_crashed(server: Server) -> None:
    unknown_env = server.cli("push", "alpha", "qa", "-", input="a: 1\n")
    assert unknown_env.exit_code == 1 and "(404 from PUT " in unknown_env.stderr
    bad_name = server.cli("push", "Bad Name", "development", "-", input="a: 1\n")
    assert bad_name.exit_code == 1 and "Traceback" not in bad_name.output
    assert server.cli("get", "nobody", "development").exit_code == 1


def test_usage_errors_exit_2(server: Server) -> None:
    for args in (
        ["push", "alpha"],
        ["get"],
        ["diff", "alpha", "development", "--from-env", "staging"],
        ["diff", "alpha", "--from-env", "staging"],
        ["promote", "alpha", "--to", "staging"],
        ["token", "create", "x", "--role", "root", "--service", "*", "--env", "*"],
        ["history", "alpha", "development", "--limit", "0"],
        ["no-such-command"],
    ):
        result = server.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_a_server_url_that_is_not_a_url_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from config_service.cli import main

    result = CliRunner().invoke(main, ["--server", "ftp://example", "--token", "t", "services"])
    assert result.exit_code == 2
    assert result.stderr == "tskcfg: the server URL 'ftp://example' is not valid: give --server http://host:port\n"


def test_an_unreachable_server_exits_3_naming_the_url() -> None:
    from click.testing import CliRunner

    from config_service.cli import main

    url = f"http://127.0.0.1:{free_port()}"
    runner = CliRunner()
    result = runner.invoke(main, ["--server", url, "--token", "t", "get", "alpha", "development"])
    assert result.exit_code == 3
    assert result.stderr == (
        f"tskcfg: cannot reach the config server at {url}/v1/configs/alpha/development: "
        "the connection was refused or the host is unknown\n"
    )
    as_json = runner.invoke(main, ["--server", url, "--token", "t", "services", "--json"])
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout)["error"] == "unreachable"
    watch = runner.invoke(main, ["--server", url, "--token", "t", "watch", "alpha", "development"])
    assert watch.exit_code == 3


class FailingHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        # /v1/configs/...: a web page answering 200, as a wrong --server would; else a 502.
        if self.path.startswith("/v1/configs/"):
            body = b"<html>welcome</html>"
            self.send_response(200)
        else:
            body = b"<html>bad gateway</html>"
            self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def failing_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FailingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_failing_server_exits_3(failing_server: str) -> None:
    from click.testing import CliRunner

    from config_service.cli import main

    started = time.monotonic()
    result = CliRunner().invoke(main, ["--server", failing_server, "--token", "t", "services"])
    assert result.exit_code == 3
    assert result.stderr == (
        f"tskcfg: the config server failed (502 at GET {failing_server}/v1/services): Bad Gateway\n"
    )
    assert time.monotonic() - started < 5


def test_a_server_that_is_not_the_config_api_exits_3(failing_server: str) -> None:
    from click.testing import CliRunner

    from config_service.cli import main

    result = CliRunner().invoke(main, ["--server", failing_server, "--token", "t", "history", "a", "b"])
    assert result.exit_code == 3
    assert result.stderr == (
        f"tskcfg: GET {failing_server}/v1/configs/a/b/versions answered 200 with something that is "
        "not the config API's JSON; is --server the config server?\n"
    )


def test_watch_reconnects_after_the_server_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.serving as shared

    process = ServerProcess(make_root(tmp_path), open_services=True).start()
    url, token = process.url, process.admin_token
    command = [
        sys.executable, "-c", "from config_service.cli import main; main()",
        "--server", url, "--token", token, "watch", "lambda", "development", "--count", "1", "--json",
    ]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stderr is not None
        assert watcher.stderr.readline().startswith("watching lambda/development")
        process.kill()  # kill -9: no goodbye on the open stream
        assert watcher.stderr.readline().startswith("connection lost; reconnecting in ")
        # Restart on the same port, where the watcher keeps knocking.
        monkeypatch.setattr(shared, "free_port", lambda: process.port)
        restarted = Server(process.start())
        # Push until the reconnected watcher reports one (bounded: 20 pushes, ~10 s).
        for value in range(1, 21):
            restarted.cli("push", "lambda", "development", "-", input=f"n: {value}\n")
            try:
                out, _ = watcher.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            pytest.fail("watch printed no event after the restart")
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=5)
        process.stop()
    assert watcher.returncode == 0
    event = json.loads(out.strip())
    assert (event["service"], event["environment"]) == ("lambda", "development")


def test_a_document_over_the_size_limit_is_refused(server: Server) -> None:
    big = "".join(f'key_{index}: "{"x" * 100}"\n' for index in range(11_000))  # about 1.2 MB
    result = server.cli("push", "mu", "development", "-", input=big)
    assert result.exit_code == 1
    assert "(413 from PUT " in result.stderr
    assert server.cli("get", "mu", "development").exit_code == 1


def test_validate_with_a_narrow_token_reads_section_schemas_from_the_server(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = json.loads(server.cli(
        "token", "create", "user-reader", "--role", "reader", "--service", "user-*",
        "--env", "development", "--json",
    ).stdout)["token"]
    with server.http(reader) as http:
        # the token covers user-*, and so the section schemas user-service.json refers to
        assert http.get("/v1/schemas/database").status_code == 200
        assert http.get("/v1/schemas/billing").status_code == 403
    bad = write(tmp_path / "user-service.tsk", PRODUCTION.replace("pool_size: 20", "pool_size: 0"))
    monkeypatch.chdir(tmp_path)  # no ./schemas here: the sections must come from the server
    result = server.cli("validate", bad, "--service", "user-service", token=reader)
    assert result.exit_code == 1, result.output
    assert result.stderr == f"{bad}: /database/pool_size: 0 is less than the minimum of 1\n"


RED_MESSAGE = "\x1b[31mred\x1b[0m\rover"


def test_text_from_the_server_is_printed_with_control_characters_escaped(server: Server) -> None:
    writer = server.process.create_token("writer", ["esc-*"], ["*"], name="esc\x1b]0;owned\x07writer")
    pushed = server.cli("push", "esc-api", "development", "-", "-m", RED_MESSAGE, token=writer, input="a: 1\n")
    assert pushed.exit_code == 0, pushed.output
    escaped = "\\x1b[31mred\\x1b[0m\\rover"

    history = server.cli("history", "esc-api", "development")
    audit = server.cli("audit", "--service", "esc-api")
    got = server.cli("get", "esc-api", "development")
    for result in (history, audit, got):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\r" not in result.output and "\x07" not in result.output
    assert escaped in history.stdout and "esc\\x1b]0;owned\\x07writer" in history.stdout
    assert '"message": "\\u001b[31mred\\u001b[0m\\rover"' in audit.stdout  # the detail column is JSON
    assert got.stdout == "a: 1\n"  # the document itself, as stored
    assert got.stderr.startswith("esc-api/development: version 1 (hash ")
    created_at = json.loads(server.cli("get", "esc-api", "development", "--json").stdout)["created_at"]
    assert got.stderr.endswith(f", push by esc\\x1b]0;owned\\x07writer at {created_at}: {escaped}\n")
    # --json stays JSON, with the data intact.
    as_json = server.cli("history", "esc-api", "development", "--json")
    assert json.loads(as_json.stdout)["versions"][0]["message"] == RED_MESSAGE
    assert "\x1b" not in as_json.stdout


def test_a_refusal_quoting_the_server_is_printed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from config_service.cli._errors import CommandFailed

    CommandFailed("no \x1b[2Jversion", details=[{"path": "/a", "message": "x\x1b]0;t\x07"}]).show()
    assert capsys.readouterr().err == "tskcfg: no \\x1b[2Jversion\n  /a: x\\x1b]0;t\\x07\n"


def test_escape_controls_writes_each_control_character_as_an_escape() -> None:
    from config_service.cli._output import cell_text, escape_controls, json_text

    assert escape_controls("a\x1b[2Jb\nc\rd\te\x7f\x9b\u202eé✓") == "a\\x1b[2Jb\\nc\\rd\\te\\x7f\\x9b\\u202eé✓"
    assert escape_controls("a\tb\x1b", keep_tabs=True) == "a\tb\\x1b"
    assert cell_text({"message": "x\x1by"}) == '{"message": "x\\u001by"}'
    text = json_text({"m": "\x1b\x9b\u2028é"})
    assert json.loads(text) == {"m": "\x1b\x9b\u2028é"} and "\x9b" not in text and "é" in text


def test_global_options_are_accepted_after_the_command(server: Server) -> None:
    from click.testing import CliRunner

    from config_service.cli import main

    assert server.cli("push", "opt-api", "staging", "-", input="a: 1\n").exit_code == 0
    runner = CliRunner()
    env = {"TSKCFG_TOKEN": None, "TSKCFG_SERVER": None, "TSKCFG_DATA_DIR": None}
    after = runner.invoke(
        main,
        ["history", "opt-api", "staging", "--server", server.url, "--token", server.admin_token, "--json"],
        env=env,
    )
    assert after.exit_code == 0, after.output
    assert [meta["version"] for meta in json.loads(after.stdout)["versions"]] == [1]
    # Given both before and after the command, the one after wins.
    both = runner.invoke(
        main,
        ["--server", "http://127.0.0.1:1", "--token", "wrong", "token", "list",
         "--server", server.url, "--token", server.admin_token],
        env=env,
    )
    assert both.exit_code == 0 and "admin" in both.stdout
    # The environment's server still applies when the command names only the token.
    from_env = runner.invoke(
        main, ["services", "--token", server.admin_token], env={**env, "TSKCFG_SERVER": server.url}
    )
    assert from_env.exit_code == 0 and "opt-api" in from_env.stdout
    validate = runner.invoke(
        main, ["validate", "-", "--service", "opt-api", "--server", server.url, "--token", server.admin_token],
        input="a: 1\n", env=env,
    )
    assert validate.exit_code == 1 and "'opt-api' has no schema" in validate.stderr  # it asked that server
    assert "--server URL" in runner.invoke(main, ["get", "--help"]).stdout


def test_diff_without_a_range_compares_the_previous_version_with_the_current(server: Server) -> None:
    for value in (1, 2, 3):
        assert server.cli("push", "diff-api", "development", "-", input=f"value: {value}\n").exit_code == 0
    last = server.cli("diff", "diff-api", "development")
    assert last.exit_code == 0, last.output
    assert last.stdout.splitlines()[0] == "~ /value: 2 -> 3"
    body = json.loads(server.cli("diff", "diff-api", "development", "--json").stdout)
    assert (body["from"]["version"], body["to"]["version"]) == (2, 3)
    older = json.loads(server.cli("diff", "diff-api", "development", "--to", "2", "--json").stdout)
    assert (older["from"]["version"], older["to"]["version"]) == (1, 2)
    since = json.loads(server.cli("diff", "diff-api", "development", "--from", "1", "--json").stdout)
    assert (since["from"]["version"], since["to"]["version"]) == (1, 3)
    assert server.cli("push", "diff-api", "staging", "-", input="value: 1\n").exit_code == 0
    first = server.cli("diff", "diff-api", "staging")
    assert first.exit_code == 1
    assert first.stderr == "tskcfg: diff-api/staging has no version before version 1 to compare it with\n"


def test_an_unknown_service_is_named_with_the_nearest_one_the_token_may_read(server: Server) -> None:
    assert server.cli("push", "user-service", "development", "-", input=DEVELOPMENT).exit_code == 0
    expected = "tskcfg: unknown service 'user-servce' (did you mean 'user-service'?)\n"
    for args in (
        ["get", "user-servce", "development"],
        ["history", "user-servce", "development"],
        ["diff", "user-servce", "development"],
        ["diff", "user-servce", "--from-env", "development", "--to-env", "staging"],
        ["rollback", "user-servce", "development", "1"],
        ["promote", "user-servce", "--from", "development", "--to", "staging"],
        ["instances", "user-servce", "development"],
        ["schema", "get", "user-servce"],
    ):
        result = server.cli(*args)
        assert (result.exit_code, result.stderr) == (1, expected), args
    as_json = json.loads(server.cli("get", "user-servce", "development", "--json").stdout)
    assert as_json == {
        "error": "unknown_service",
        "message": "unknown service 'user-servce' (did you mean 'user-service'?)",
        "details": [],
    }
    # Services that exist keep the server's own answer.
    assert "has no version 99" in server.cli("get", "user-service", "development", "--version", "99").stderr
    assert server.cli("history", "user-service", "production").exit_code == 0  # has a schema, no documents yet
    # A name the token may not read is never suggested.
    assert server.cli("push", "vault-keeper", "production", "-", input="a: 1\n").exit_code == 0
    reader = server.process.create_token("reader", ["*"], ["development"], name="dev-reader")
    hidden = server.cli("get", "vault-keepr", "development", token=reader)
    assert (hidden.exit_code, hidden.stderr) == (1, "tskcfg: unknown service 'vault-keepr'\n")


def test_audit_with_an_unknown_action_lists_the_valid_ones(server: Server) -> None:
    result = server.cli("audit", "--action", "pushed")
    assert result.exit_code == 2
    assert "'pushed' is not one of 'push', 'sync', 'rollback', 'promote', 'schema', 'token_create'" in result.stderr


def test_services_columns_follow_the_pipeline(server: Server) -> None:
    assert server.cli("push", "aaa-first", "production", "-", input="a: 1\n").exit_code == 0
    assert server.cli("push", "aaa-second", "staging", "-", input="a: 1\n").exit_code == 0
    assert server.cli("push", "aaa-second", "development", "-", input="a: 1\n").exit_code == 0
    header, *rows = server.cli("services").stdout.splitlines()
    assert header.split() == ["SERVICE", "DEVELOPMENT", "STAGING", "PRODUCTION"]
    assert rows[0].split() == ["aaa-first", "-", "-", "v1"]
    assert rows[1].split() == ["aaa-second", "v1", "v1", "-"]
    body = json.loads(server.cli("services", "--json").stdout)
    second = next(item for item in body["services"] if item["service"] == "aaa-second")
    assert list(second["environments"]) == ["development", "staging"]


def test_environment_columns_keep_each_services_order() -> None:
    from config_service.cli.configs import environment_columns

    def columns(*services: list[str]) -> list[str]:
        return environment_columns([{"environments": dict.fromkeys(names, {})} for names in services])

    default = ["development", "staging", "production"]
    assert columns(["production"], ["development", "staging"]) == default
    assert columns(["production"], ["staging", "production"], ["development", "production"]) == default
    # A pipeline of the server's own: the order the services show wins over the default one.
    assert columns(["qa", "production"], ["development", "qa"]) == ["development", "qa", "production"]
    assert columns(["production", "staging"]) == ["production", "staging"]
