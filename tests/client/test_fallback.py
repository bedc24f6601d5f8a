"""Start-up without the server (cache, then file), damaged caches, and backoff while the server is away."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from clienttest import DEVELOPMENT, SERVICE, LiveServer, free_port, wait_for

from tskcfg import (
    ConfigClient,
    Forbidden,
    InvalidConfig,
    RetryPolicy,
    ServerUnavailable,
    load_config,
)


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_nothing_to_fall_back_on_names_everything_tried(tmp_path: Path) -> None:
    with pytest.raises(ServerUnavailable) as caught:
        load_config(
            SERVICE,
            "development",
            server=down_url(),
            cache_dir=tmp_path / "cache",
            environments_dir=tmp_path,
        )
    message = str(caught.value)
    assert "server http://127.0.0.1:" in message
    assert f"cache {tmp_path / 'cache' / SERVICE / 'development.json'}: none usable" in message
    assert f"file {tmp_path / 'development' / (SERVICE + '.tsk')}: not found" in message


def test_server_down_at_start_uses_the_cache_then_the_file(
    tmp_path: Path, environments: Path
) -> None:
    server = LiveServer(tmp_path / "server").start()
    try:
        pushed = server.push(DEVELOPMENT.replace("pool_size: 2", "pool_size: 7"))
        online = load_config(
            SERVICE,
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / "cache",
        )
        assert online.source == "server" and online.version == pushed["version"]
    finally:
        server.stop()

    # Server gone: the last-known-good copy written by the load above wins over the file.
    cached = load_config(
        SERVICE,
        "development",
        server=server.url,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
    )
    assert (cached.source, cached.version, cached.hash) == (
        "cache",
        pushed["version"],
        pushed["hash"],
    )
    assert cached.get("database.pool_size") == 7

    # No cache: the local file.
    from_file = load_config(
        SERVICE,
        "development",
        server=server.url,
        cache_dir=tmp_path / "empty",
        environments_dir=environments,
    )
    assert (from_file.source, from_file.version) == ("file", None)
    assert from_file.get("database.pool_size") == 2


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_a_corrupt_cache_is_ignored_for_the_file(
    tmp_path: Path, environments: Path, damage: str
) -> None:
    cache = tmp_path / "cache" / SERVICE / "development.json"
    cache.parent.mkdir(parents=True)
    from config_service import tsk

    data = tsk.loads(DEVELOPMENT.replace("pool_size: 2", "pool_size: 9"))
    record = {
        "service": SERVICE,
        "environment": "development",
        "version": 4,
        "hash": tsk.document_hash(data),
        "config": tsk.to_wire(data),
    }
    text = json.dumps(record)
    cache.write_text(
        text[:100] if damage == "truncate" else text.replace('"pool_size": 9', '"pool_size": 900')
    )
    config = load_config(
        SERVICE,
        "development",
        server=down_url(),
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
    )
    assert config.source == "file" and config.get("database.pool_size") == 2


class CountingListener:
    """Accepts connections and drops them at once: a server that is there but never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.count += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


def test_backoff_while_the_server_is_away_is_not_a_busy_loop(
    tmp_path: Path, environments: Path
) -> None:
    listener = CountingListener()
    client = ConfigClient(
        SERVICE,
        "development",
        server=listener.url,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
    )
    try:
        client.start()
        assert client.config.source == "file"
        time.sleep(3.0)
        attempts = listener.count
    finally:
        client.stop()
        listener.close()
    # One at start, then backoff: at most the breaker's threshold (5) before it opens for 2-4 s.
    assert 2 <= attempts <= 7, attempts
    assert client.retry.failures >= attempts - 1


class RecordingTransport(httpx.HTTPTransport):
    """Passes every request to the real server and keeps the instance reports it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            self.reports.append(json.loads(request.read()))
        return super().handle_request(request)


def restarting_client(
    server: LiveServer, token: str, tmp_path: Path, environments: Path
) -> tuple[ConfigClient, RecordingTransport]:
    """A client of a server that is down now; it polls fast so the test sees it catch up."""
    transport = RecordingTransport()
    client = ConfigClient(
        SERVICE,
        "development",
        server=server.url,
        token=token,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
        mode="poll",
        poll_interval=0.1,
        retry=RetryPolicy(base=0.05, cap=0.2),
        transport=transport,
    )
    return client, transport


def test_started_from_a_fallback_the_client_reports_it_and_catches_up(
    tmp_path: Path, environments: Path
) -> None:
    server = LiveServer(tmp_path / "server").start()
    token = server.token
    pushed = server.push(DEVELOPMENT.replace("pool_size: 2", "pool_size: 11"))
    server.stop()
    client, transport = restarting_client(server, token, tmp_path, environments)
    with client:
        assert client.config.source == "file" and client.config.get("database.pool_size") == 2
        server.start()  # the same data and port: a restart
        try:
            wait_for(lambda: client.config.version == pushed["version"], timeout=10)
            assert (
                client.config.source == "server" and client.config.get("database.pool_size") == 11
            )
            wait_for(lambda: len(transport.reports) >= 2)
            fallback, applied = transport.reports[:2]
            assert (fallback["status"], fallback["version"]) == ("fallback", None)
            assert (applied["status"], applied["version"], applied["hash"]) == (
                "applied",
                pushed["version"],
                pushed["hash"],
            )
        finally:
            client.stop()
            server.stop()


def test_started_from_the_cache_of_the_current_version_it_reports_applied_once_back(
    tmp_path: Path, environments: Path
) -> None:
    server = LiveServer(tmp_path / "server").start()
    token = server.token
    pushed = server.push(DEVELOPMENT)
    load_config(
        SERVICE, "development", server=server.url, token=token, cache_dir=tmp_path / "cache"
    )
    server.stop()
    client, transport = restarting_client(server, token, tmp_path, environments)
    with client:
        assert (client.config.source, client.config.version) == ("cache", pushed["version"])
        server.start()
        try:
            wait_for(lambda: client.config.source == "server", timeout=10)
            wait_for(lambda: len(transport.reports) >= 2)
            assert [(report["status"], report["version"]) for report in transport.reports[:2]] == [
                ("fallback", pushed["version"]),
                ("applied", pushed["version"]),
            ]
        finally:
            client.stop()
            server.stop()


class WaitDroppingTransport(httpx.HTTPTransport):
    """A proxy that drops `?wait=`: every long poll comes back at once with 304."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/configs/"):
            self.checks += 1
            request.url = request.url.copy_remove_param("wait")
        return super().handle_request(request)


def test_a_server_that_answers_long_polls_at_once_gets_one_check_a_second(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(DEVELOPMENT, "production", service="no-wait")
    transport = WaitDroppingTransport()
    with ConfigClient(
        "no-wait",
        "production",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        transport=transport,
    ):
        time.sleep(2.5)
    # The load, then at most one check per second: not a busy loop.
    assert 2 <= transport.checks <= 5, transport.checks


class ConditionDroppingTransport(httpx.HTTPTransport):
    """A proxy that drops `?wait=` and `If-None-Match`: every check answers 200 with the current version."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/configs/"):
            self.checks += 1
            request.url = request.url.copy_remove_param("wait")
            request.headers.pop("If-None-Match", None)
        return super().handle_request(request)


def test_a_refused_version_served_again_and_again_is_not_retried(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(DEVELOPMENT, "staging", service="no-condition")
    transport = ConditionDroppingTransport()
    client = ConfigClient(
        "no-condition",
        "staging",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        transport=transport,
    )
    attempts: list[Any] = []

    @client.on("features")
    def refuse_zero(new: Any, old: Any) -> None:
        attempts.append(new)
        if new["rate_limit_per_minute"] == 0:
            raise RuntimeError("zero")

    with client:
        first = client.config
        server.push(
            DEVELOPMENT.replace("rate_limit_per_minute: 10000", "rate_limit_per_minute: 0"),
            "staging",
            service="no-condition",
        )
        wait_for(lambda: len(attempts) >= 2)
        checks = transport.checks
        time.sleep(2.5)
        checks = transport.checks - checks
    assert client.config is first
    assert len(attempts) == 2, attempts  # the first load, then the refused version once
    assert checks <= 4, checks  # about one check a second, not a busy loop


class BlipTransport(httpx.HTTPTransport):
    """While `down`, a plain GET of a config fails to connect: the server is away for a moment."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down and request.url.path.startswith("/v1/configs/"):
            raise httpx.ConnectError("connection refused", request=request)
        return super().handle_request(request)


def test_a_running_client_keeps_its_config_when_a_load_finds_the_server_away(
    server: LiveServer, tmp_path: Path, environments: Path
) -> None:
    server.push(DEVELOPMENT.replace("pool_size: 2", "pool_size: 7"), "staging")
    transport = BlipTransport()
    client = ConfigClient(
        SERVICE,
        "staging",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
        mode="poll",
        poll_interval=60,
        transport=transport,
    )
    with client:
        current = client.config
        assert current.source == "server" and current.get("database.pool_size") == 7
        (tmp_path / "cache" / SERVICE / "staging.json").unlink()  # say it could not be written
        transport.down = True
        assert client.load() is current  # not the local file, older than what runs
        assert client.config is current


def test_a_fallback_replaced_by_load_is_not_reported_as_fallback_afterwards(
    tmp_path: Path, environments: Path
) -> None:
    server = LiveServer(tmp_path / "server").start()
    token = server.token
    pushed = server.push(DEVELOPMENT)
    server.stop()
    transport = RecordingTransport()
    client = ConfigClient(
        SERVICE,
        "development",
        server=server.url,
        token=token,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
        mode="poll",
        poll_interval=60,
        retry=RetryPolicy(base=60, cap=60, random=lambda: 1.0),  # the watch keeps out of the way
        transport=transport,
    )
    with client:
        assert client.config.source == "file"
        server.start()
        try:
            assert client.load().version == pushed["version"]  # the caller catches up by hand
            client.refresh()
            wait_for(lambda: transport.reports)
            time.sleep(0.2)
            assert [(report["status"], report["version"]) for report in transport.reports] == [
                ("applied", pushed["version"])
            ]
        finally:
            client.stop()
            server.stop()


class FailingServer:
    """A real HTTP server on 127.0.0.1 that answers every request with one status (a broken proxy)."""

    def __init__(self, status: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                counter.count += 1
                body = json.dumps({"error": "unavailable", "message": "try later", "details": []})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.count = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_answer_falls_back_and_is_retried_with_backoff(
    tmp_path: Path, environments: Path, status: int
) -> None:
    failing = FailingServer(status)
    try:
        with ConfigClient(
            SERVICE,
            "development",
            server=failing.url,
            cache_dir=tmp_path / "cache",
            environments_dir=environments,
        ) as client:
            assert client.config.source == "file"
            time.sleep(2.0)
    finally:
        failing.close()
    assert 2 <= failing.count <= 7, failing.count  # backoff, then the breaker opens


def test_a_4xx_answer_is_raised_even_with_a_fallback_at_hand(
    tmp_path: Path, environments: Path
) -> None:
    failing = FailingServer(403)
    try:
        with pytest.raises(Forbidden) as caught:
            load_config(
                SERVICE,
                "development",
                server=failing.url,
                cache_dir=tmp_path / "cache",
                environments_dir=environments,
            )
    finally:
        failing.close()
    assert caught.value.status == 403 and caught.value.code == "unavailable"


def test_stop_leaves_no_reporter_behind_when_the_server_takes_reports_and_never_answers(
    tmp_path: Path, environments: Path
) -> None:
    from tskcfg._effects import Report

    silent = socket.create_server(("127.0.0.1", 0))  # connections wait in its backlog, unanswered
    try:
        client = ConfigClient(
            SERVICE,
            "development",
            server=f"http://127.0.0.1:{silent.getsockname()[1]}",
            cache_dir=tmp_path,
            environments_dir=environments,
        )
        for _ in range(120):  # more than the queue holds: the last ones are dropped
            client._report(Report("applied", None))
        started = time.monotonic()
        client.stop()
        wait_for(
            lambda: (
                not [thread for thread in threading.enumerate() if thread.name == "tskcfg-reports"]
            ),
            timeout=3,
        )
        assert time.monotonic() - started < 6
    finally:
        silent.close()


def test_a_config_this_process_makes_invalid_is_raised_not_hidden_by_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = LiveServer(tmp_path / "server").start()
    try:
        server.push(DEVELOPMENT)
        monkeypatch.setenv("PORT", "9000")
        load_config(
            SERVICE, "development", server=server.url, token=server.token, cache_dir=tmp_path / "cache"
        )
        pushed = server.push(DEVELOPMENT.replace("pool_size: 2", "pool_size: 3"))
        monkeypatch.setenv("PORT", "70000")  # the schema's maximum is 65535
        transport = RecordingTransport()
        client = ConfigClient(
            SERVICE,
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / "cache",  # holds the older version, with the same mistake
            transport=transport,
        )
        with pytest.raises(InvalidConfig) as caught:
            client.start()
        client.stop()
        assert "/port" in str(caught.value) and "65535" in str(caught.value)
        assert f"version {pushed['version']}" in str(caught.value)
        assert caught.value.details[0]["path"] == "/port"
        assert "config server unavailable" not in caplog.text
        failed = [report for report in transport.reports if report["status"] == "failed"]
        assert failed and failed[0]["failed_version"] == pushed["version"]
        assert not [report for report in transport.reports if report["status"] == "fallback"]

        # Without a cache the same mistake is the same error, not ServerUnavailable.
        with pytest.raises(InvalidConfig, match="/port"):
            load_config(
                SERVICE, "development", server=server.url, token=server.token, cache_dir=tmp_path / "none"
            )
    finally:
        server.stop()


def test_a_variable_of_the_wrong_type_is_raised_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = LiveServer(tmp_path / "server").start()
    try:
        server.push(DEVELOPMENT)
        monkeypatch.setenv("PORT", "eighty")
        with pytest.raises(InvalidConfig, match="PORT") as caught:
            load_config(
                SERVICE, "development", server=server.url, token=server.token, cache_dir=tmp_path
            )
        assert caught.value.details[0]["variable"] == "PORT"
        assert not isinstance(caught.value, ServerUnavailable)
    finally:
        server.stop()


def test_the_cache_keeps_its_schema_and_is_validated_against_it_when_the_server_is_away(
    tmp_path: Path, environments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = LiveServer(tmp_path / "server").start()
    try:
        pushed = server.push(DEVELOPMENT)
        monkeypatch.setenv("PORT", "9000")
        load_config(
            SERVICE, "development", server=server.url, token=server.token, cache_dir=tmp_path / "cache"
        )
    finally:
        server.stop()
    stored = json.loads((tmp_path / "cache" / SERVICE / "development.json").read_text())
    assert stored["version"] == pushed["version"]
    assert stored["schema"][SERVICE]["properties"]["port"]["maximum"] == 65535
    assert stored["schema"]["database"]["properties"]["pool_size"]["minimum"] == 1

    def start() -> Any:
        return load_config(
            SERVICE,
            "development",
            server=server.url,
            cache_dir=tmp_path / "cache",
            environments_dir=environments,
        )

    monkeypatch.setenv("PORT", "70000")
    # Neither the cache nor the local file (checked against the cached schema) passes here.
    with pytest.raises(InvalidConfig) as caught:
        start()
    message = str(caught.value)
    assert "/port" in message and "65535" in message
    assert "cache " in message and "file " in message  # what was tried, and why each failed
    assert "version None" not in message

    monkeypatch.setenv("PORT", "9000")
    config = start()
    assert (config.source, config.version, config["port"]) == ("cache", pushed["version"], 9000)


def test_a_file_fallback_is_named_by_its_path_not_version_none(
    tmp_path: Path, environments: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tskcfg"):
        config = load_config(
            SERVICE,
            "development",
            server=down_url(),
            cache_dir=tmp_path / "cache",
            environments_dir=environments,
        )
    assert config.source == "file"
    assert "version None" not in caplog.text
    assert f"file {environments / 'development' / (SERVICE + '.tsk')}" in caplog.text


def test_a_restarted_server_is_found_again_within_5_seconds(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "server").start()
    server.push(DEVELOPMENT)
    client = ConfigClient(
        SERVICE,
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        environments_dir=tmp_path / "nowhere",
    )  # the default retry policy: that is what is under test
    try:
        with client:
            server.stop()
            # Long enough for more failures in a row than the breaker's threshold.
            time.sleep(7.6)
            server.start()
            pushed = server.push(DEVELOPMENT.replace("pool_size: 2", "pool_size: 5"))
            wait_for(lambda: client.config.version == pushed["version"], timeout=5.0)
    finally:
        server.stop()


def test_the_default_retry_never_waits_longer_than_a_restart_may_take() -> None:
    retry = RetryPolicy(random=lambda: 1.0)
    delays = [retry.failure() for _ in range(40)]
    assert delays[0] <= 1.0  # the first retry within about a second
    assert max(delays) <= 4.0, delays  # with the request itself, found again within 5 s
    assert RetryPolicy(random=lambda: 0.0).failure() == 0.0  # full jitter
