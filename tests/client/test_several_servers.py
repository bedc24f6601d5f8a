"""A client given several servers: it stays on the one that answers and moves to the next on no
answer or a 5xx, never on a 4xx. Two real `tskcfg serve` processes, each with its own data
folder holding the same documents and tokens; one is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from clienttest import DEVELOPMENT, SERVICE, wait_for

from config_service.cli import main
from tests.serving import REPOSITORY, ServerProcess, free_port, make_root, push
from tskcfg import (
    AdminClient,
    AsyncConfigClient,
    ConfigClient,
    NotFound,
    ServerUnavailable,
    Unauthorized,
    load_config,
)

ENVIRONMENT = "development"


class Pair:
    """Two servers with the same documents and tokens, each in its own folder."""

    def __init__(self, first: ServerProcess, second: ServerProcess, token: str) -> None:
        self.first = first
        self.second = second
        self.token = token  # a read token both servers accept

    @property
    def urls(self) -> list[str]:
        return [self.first.url, self.second.url]

    def push(self, server: ServerProcess, source: str) -> int:
        with server.client(server.admin_token) as admin:
            response = push(admin, SERVICE, ENVIRONMENT, source)
            assert response.status_code == 201, response.text
            return int(response.json()["version"])


def start_pair(base: Path) -> Pair:
    """The first server gets the document and a read token, stops cleanly, and its data folder is
    copied for the second; then both start."""
    first = ServerProcess(make_root(base / "a")).start()
    try:
        with first.client(first.admin_token) as admin:
            assert push(admin, SERVICE, ENVIRONMENT, DEVELOPMENT).status_code == 201
        token = first.create_token("reader", [SERVICE], [ENVIRONMENT])
    finally:
        first.stop()
    second = ServerProcess(make_root(base / "b"))
    shutil.copytree(first.data_dir, second.data_dir)
    first.start()
    try:
        second.start()
    except BaseException:
        first.stop()
        raise
    return Pair(first, second, token)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two servers that stay up for the module's tests."""
    servers = start_pair(tmp_path_factory.mktemp("pair"))
    yield servers
    servers.first.stop()
    servers.second.stop()


@pytest.fixture
def doomed_pair(tmp_path: Path) -> Iterator[Pair]:
    """Two servers for one test, which may kill the first."""
    servers = start_pair(tmp_path)
    yield servers
    servers.first.kill()
    servers.second.stop()


class Answering(BaseHTTPRequestHandler):
    """Answers every request with the status and API error of its server's `status`."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status = self.server.status  # type: ignore[attr-defined]
        self.server.hits += 1  # type: ignore[attr-defined]
        body = json.dumps({"error": "fixed", "message": f"always {status}", "details": []})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[ThreadingHTTPServer]:
    """A server on 127.0.0.1 that answers every request with the status the test sets."""
    fixed = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    fixed.status = 503  # type: ignore[attr-defined]
    fixed.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=fixed.serve_forever, daemon=True)
    thread.start()
    yield fixed
    fixed.shutdown()
    fixed.server_close()
    thread.join(timeout=5)


def url_of(fixed: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{fixed.server_address[1]}"


# ---------------------------------------------------------------------------- one answer


def test_load_config_takes_the_next_server_when_the_first_has_no_one_listening(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CONFIG_STORE", f"{nowhere}, {pair.first.url}")
    config = load_config(SERVICE, ENVIRONMENT, token=pair.token, cache_dir=tmp_path / "cache")
    assert config.source == "server" and config.get("database.pool_size") == 2
    # A list for `server=` does the same; the cache is not what answered.
    config = load_config(
        SERVICE, ENVIRONMENT, server=[nowhere, pair.second.url], token=pair.token, cache_dir=tmp_path / "c2"
    )
    assert config.source == "server" and config.version == 1


def test_a_server_answering_5xx_is_skipped(
    pair: Pair, answering: ThreadingHTTPServer, tmp_path: Path
) -> None:
    with ConfigClient(
        SERVICE,
        ENVIRONMENT,
        server=[url_of(answering), pair.first.url],
        token=pair.token,
        cache_dir=tmp_path,
        mode="poll",
    ) as client:
        assert client.config.source == "server"
        # It stays on the server that answered: refreshing does not ask the broken one again.
        hits = answering.hits  # type: ignore[attr-defined]
        assert client.refresh() is False
        assert answering.hits == hits  # type: ignore[attr-defined]
        assert hits == 1


@pytest.mark.parametrize(("status", "error"), [(401, Unauthorized), (404, NotFound)])
def test_a_4xx_is_the_answer_and_the_next_server_is_not_asked(
    pair: Pair,
    answering: ThreadingHTTPServer,
    tmp_path: Path,
    status: int,
    error: type[Exception],
) -> None:
    answering.status = status  # type: ignore[attr-defined]
    with pytest.raises(error, match=f"always {status}"):
        load_config(
            SERVICE, ENVIRONMENT, server=[url_of(answering), pair.first.url], token=pair.token, cache_dir=tmp_path
        )


def test_when_no_server_answers_the_error_names_each_and_the_cache_stands_in(
    pair: Pair, answering: ThreadingHTTPServer, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    no_files = tmp_path / "no-environments"
    with pytest.raises(ServerUnavailable) as failed:
        load_config(
            SERVICE,
            ENVIRONMENT,
            server=[nowhere, url_of(answering)],
            token=pair.token,
            cache_dir=tmp_path,
            environments_dir=no_files,
        )
    message = str(failed.value)
    assert f"servers {nowhere}, {url_of(answering)}" in message
    assert "ConnectError" in message and "answered 503: always 503" in message
    # With a last-known-good written by an earlier load, it starts from that instead.
    load_config(SERVICE, ENVIRONMENT, server=pair.first.url, token=pair.token, cache_dir=tmp_path)
    config = load_config(
        SERVICE,
        ENVIRONMENT,
        server=[nowhere, url_of(answering)],
        token=pair.token,
        cache_dir=tmp_path,
        environments_dir=no_files,
    )
    assert config.source == "cache" and config.version == 1


def test_the_admin_client_and_the_cli_take_several_servers(pair: Pair, answering: ThreadingHTTPServer) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    admin_token = pair.second.admin_token
    with AdminClient(f"{nowhere},{url_of(answering)},{pair.second.url}", admin_token) as admin:
        assert admin.get(SERVICE, ENVIRONMENT)["version"] >= 1
        assert admin.server == pair.second.url
        assert [entry["version"] for entry in admin.history(SERVICE, ENVIRONMENT)][-1] == 1
    with AdminClient([nowhere], admin_token) as admin, pytest.raises(ServerUnavailable, match="refused"):
        admin.services()
    for bad in ("http://a:1,ftp://b", "http://a:1,http://a:1", ","):
        with pytest.raises(ValueError, match="is not valid"):
            AdminClient(bad)
    # The command line mirrors it: --server (or TSKCFG_SERVER) takes the same list.
    runner = CliRunner()
    servers = f"{nowhere},{pair.first.url}"
    shown = runner.invoke(main, ["--server", servers, "--token", admin_token, "--json", "get", SERVICE, ENVIRONMENT])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["version"] >= 1
    listed = runner.invoke(main, ["services"], env={"TSKCFG_SERVER": servers, "TSKCFG_TOKEN": admin_token})
    assert listed.exit_code == 0 and SERVICE in listed.stdout
    refused = runner.invoke(main, ["--server", "http://a:1,ftp://b", "services"])
    assert refused.exit_code == 2 and "is not valid" in refused.stderr


def test_the_documented_example_runs_with_the_first_server_away(pair: Pair, tmp_path: Path) -> None:
    text = (REPOSITORY / "docs" / "client.md").read_text(encoding="utf-8")
    start = text.index("### Several servers")
    _, code, printed = re.findall(r"```(?:python)?\n(.*?)```", text[start:], re.DOTALL)[:3]
    nowhere = f"http://127.0.0.1:{free_port()}"
    code = code.replace("http://config-a.internal:8005", nowhere)
    (tmp_path / "several.py").write_text(code.replace("http://config-b.internal:8005", pair.second.url))
    result = subprocess.run(
        [sys.executable, "several.py"],
        cwd=tmp_path,
        env={**os.environ, "CONFIG_TOKEN": pair.token, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
    assert f"config server {nowhere} cannot answer" in result.stderr


# ---------------------------------------------------------------------------- watching


def test_a_watching_client_keeps_following_the_other_server_when_one_is_killed(
    doomed_pair: Pair, tmp_path: Path
) -> None:
    with ConfigClient(
        SERVICE, ENVIRONMENT, server=doomed_pair.urls, token=doomed_pair.token, cache_dir=tmp_path
    ) as client:
        assert client.config.version == 1
        doomed_pair.first.kill()  # the long poll it holds ends with the process
        version = doomed_pair.push(doomed_pair.second, DEVELOPMENT.replace("pool_size: 2\n", "pool_size: 21\n"))
        wait_for(lambda: client.config.version == version, timeout=10)
        assert client.config.get("database.pool_size") == 21
        assert client.refresh() is False  # asked of the second server, which answers
        # It stays on the second one: a third version arrives from it too.
        version = doomed_pair.push(doomed_pair.second, DEVELOPMENT.replace("pool_size: 2\n", "pool_size: 22\n"))
        wait_for(lambda: client.config.version == version, timeout=10)


def test_an_async_event_stream_moves_to_the_other_server_when_one_is_killed(
    doomed_pair: Pair, tmp_path: Path
) -> None:
    async def scenario() -> None:
        client = AsyncConfigClient(
            SERVICE, ENVIRONMENT, server=doomed_pair.urls, token=doomed_pair.token, cache_dir=tmp_path, mode="sse"
        )
        await client.start()
        try:
            assert client.config.version == 1
            doomed_pair.first.kill()
            source = DEVELOPMENT.replace("pool_size: 2\n", "pool_size: 23\n")
            version = await asyncio.to_thread(doomed_pair.push, doomed_pair.second, source)
            for _ in range(200):  # at most 10 s
                if client.config.version == version:
                    break
                await asyncio.sleep(0.05)
            assert client.config.version == version
            assert client.config.get("database.pool_size") == 23
        finally:
            await client.stop()

    asyncio.run(scenario())


def test_sse_mode_of_the_thread_client_follows_the_other_server(doomed_pair: Pair, tmp_path: Path) -> None:
    with ConfigClient(
        SERVICE, ENVIRONMENT, server=doomed_pair.urls, token=doomed_pair.token, cache_dir=tmp_path, mode="sse"
    ) as client:
        doomed_pair.first.kill()
        version = doomed_pair.push(doomed_pair.second, DEVELOPMENT.replace("pool_size: 2\n", "pool_size: 24\n"))
        wait_for(lambda: client.config.version == version, timeout=10)


def test_a_killed_server_is_reported_in_the_log(
    doomed_pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ConfigClient(
        SERVICE, ENVIRONMENT, server=doomed_pair.urls, token=doomed_pair.token, cache_dir=tmp_path, mode="poll", poll_interval=0.2
    ) as client:
        doomed_pair.first.kill()
        with httpx.Client() as plain:  # the first really is gone
            with pytest.raises(httpx.ConnectError):
                plain.get(doomed_pair.urls[0] + "/health")
        wait_for(lambda: any("cannot answer" in record.getMessage() for record in caplog.records), timeout=10)
        assert client.config.version == 1
    messages = [record.getMessage() for record in caplog.records if "cannot answer" in record.getMessage()]
    assert f"config server {doomed_pair.urls[0]} cannot answer" in messages[0]
    assert f"asking {doomed_pair.urls[1]}" in messages[0]
