"""The client against a real server: pushes reach a running ConfigClient, all or nothing, reported back."""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from clienttest import DEVELOPMENT, SERVICE, LiveServer, wait_for

from tskcfg import ConfigClient, NotFound, Unauthorized

FEATURES = "[features]\nsignup_enabled: true\nrate_limit_per_minute: 600\n"


def client_for(server: LiveServer, tmp_path: Path, environment: str, **kwargs: Any) -> ConfigClient:
    return ConfigClient(
        SERVICE,
        environment,
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        environments_dir=tmp_path / "nowhere",
        instance_id=f"test:{environment}:{kwargs.pop('tag', 'main')}",
        **kwargs,
    )


def with_features(rate: int, extra: str = "") -> str:
    return (
        DEVELOPMENT.replace("rate_limit_per_minute: 10000", f"rate_limit_per_minute: {rate}")
        + extra
    )


def test_a_push_is_applied_live_and_reported(server: LiveServer, tmp_path: Path) -> None:
    server.push(with_features(1), "development")
    client = client_for(server, tmp_path, "development")
    seen: list[tuple[Any, Any]] = []
    client.on("features")(lambda new, old: seen.append((new, old)))
    with client:
        first = client.config
        assert first.source == "server" and first.get("features.rate_limit_per_minute") == 1
        assert seen == [({"signup_enabled": True, "rate_limit_per_minute": 1}, None)]
        pushed = server.push(with_features(2), "development")
        wait_for(lambda: client.config.version == pushed["version"])
        assert client.config.hash == pushed["hash"]
        assert seen[-1] == (
            {"signup_enabled": True, "rate_limit_per_minute": 2},
            {"signup_enabled": True, "rate_limit_per_minute": 1},
        )
        report = wait_for(
            lambda: (
                (entry := server.instance("test:development:main"))
                and entry["version"] == pushed["version"]
                and entry
            )
        )
        assert report["status"] == "applied" and report["hash"] == pushed["hash"]
        stored = json.loads((tmp_path / "cache" / SERVICE / "development.json").read_text())
        assert (stored["version"], stored["hash"]) == (pushed["version"], pushed["hash"])
        assert stored["config"]["port"] == {"$env": "PORT", "default": 8001}  # kept unresolved


def test_only_the_changed_sections_are_applied(server: LiveServer, tmp_path: Path) -> None:
    server.push(DEVELOPMENT, "staging")
    client = client_for(server, tmp_path, "staging")
    calls: list[str] = []
    for section in ("features", "security", "cache", "port"):
        client.on(section)(lambda new, old, section=section: calls.append(section))
    with client:
        assert sorted(calls) == ["cache", "features", "port", "security"]
        calls.clear()
        before_origins = client.security.allowed_origins
        pushed = server.push(DEVELOPMENT.replace("ttl: 30", "ttl: 45"), "staging")
        wait_for(lambda: client.config.version == pushed["version"])
        assert calls == ["cache"]
        assert client.cache.ttl == 45  # the built-in applier changed the live cache
        assert client.security.allowed_origins == before_origins


def test_a_failing_handler_reverts_everything_and_is_reported_failed(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(with_features(1), "production")
    client = client_for(server, tmp_path, "production")
    applied: list[Any] = []

    @client.on("features")
    def record(new: Any, old: Any) -> None:
        applied.append(new["rate_limit_per_minute"])

    @client.on("features")
    def refuse_zero(new: Any, old: Any) -> None:
        if new["rate_limit_per_minute"] == 0:
            raise RuntimeError("a rate limit of 0 would stop all traffic")

    with client:
        cache_before = client.cache.ttl
        first = client.config
        bad = server.push(with_features(0).replace("ttl: 30", "ttl: 99"), "production")
        report = wait_for(
            lambda: (
                (entry := server.instance("test:production:main", "production"))
                and entry["status"] == "failed"
                and entry
            )
        )
        # The version the instance still runs; the refused one is its failed_version.
        assert report["version"] == first.version != bad["version"]
        assert report["hash"] == first.hash
        # It still runs the version before the one it could not apply.
        assert report["failed_version"] == bad["version"] and report["version"] == bad["version"] - 1
        assert "a rate limit of 0 would stop all traffic" in report["error"]
        assert applied == [1, 0, 1]  # applied, then reverted by being called with (old, new)
        assert client.cache.ttl == cache_before  # the built-in cache applier was reverted too
        assert client.config is first
        stored = json.loads((tmp_path / "cache" / SERVICE / "production.json").read_text())
        assert stored["version"] == first.version  # the refused version is not last-known-good
        fixed = server.push(with_features(5), "production")
        wait_for(lambda: client.config.version == fixed["version"])
        assert applied[-1] == 5
        wait_for(
            lambda: (
                (entry := server.instance("test:production:main", "production"))
                and entry["status"] == "applied"
                and entry["version"] == fixed["version"]
            )
        )


class TamperingTransport(httpx.HTTPTransport):
    """Changes the data of config answers while `active`, as a broken proxy or an attacker would."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.reports: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            self.reports.append(json.loads(request.read()))
        response = super().handle_request(request)
        if not self.active or request.method != "GET" or "/v1/configs/" not in request.url.path:
            return response
        response.read()
        if response.status_code != 200:
            return response
        body = response.json()
        body["config"]["features"]["rate_limit_per_minute"] = 1_000_000
        headers = {
            key: value for key, value in response.headers.items() if key.lower() != "content-length"
        }
        return httpx.Response(200, headers=headers, content=json.dumps(body).encode())


def test_a_document_that_does_not_match_its_hash_is_rejected_and_reported(
    server: LiveServer, tmp_path: Path
) -> None:
    service_doc = with_features(7)
    server.push(service_doc, "development", service="tamper-check")
    transport = TamperingTransport()
    client = ConfigClient(
        "tamper-check",
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        environments_dir=tmp_path,
        instance_id="test:tamper",
        transport=transport,
    )
    rates: list[int] = []
    client.on("features")(lambda new, old: rates.append(new["rate_limit_per_minute"]))
    with client:
        transport.active = True
        pushed = server.push(with_features(8), "development", service="tamper-check")
        report = wait_for(
            lambda: (
                (entry := server.instance("test:tamper", "development", service="tamper-check"))
                and entry["status"] == "failed"
                and entry
            )
        )
        # What the instance runs, and what it could not apply.
        assert report["version"] == client.config.version and "hash" in report["error"]
        sent = [body for body in transport.reports if body["status"] == "failed"][-1]
        assert (sent["version"], sent["failed_version"]) == (client.config.version, pushed["version"])
        assert report["failed_version"] == pushed["version"] and "hash" in report["error"]
        assert rates == [7] and client.config.get("features.rate_limit_per_minute") == 7


def test_env_is_resolved_in_the_client_and_validated_against_the_schema(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "9123")
    server.push(
        DEVELOPMENT.replace("pool_size: 2", "pool_size: 3"), "development", service="user-service"
    )
    client = client_for(server, tmp_path, "development", tag="env")
    with client:
        assert client.config["port"] == 9123
        # The server validated port with its default (8001); this process's PORT breaks the schema.
        monkeypatch.setenv("PORT", "70000")
        pushed = server.push(DEVELOPMENT.replace("pool_size: 2", "pool_size: 4"), "development")
        report = wait_for(
            lambda: (
                (entry := server.instance("test:development:env"))
                and entry["status"] == "failed"
                and entry
            )
        )
        assert report["version"] == client.config.version != pushed["version"]  # what it runs
        assert report["failed_version"] == pushed["version"]
        assert "/port" in report["error"] and "65535" in report["error"]
        assert client.config["port"] == 9123 and client.config.get("database.pool_size") == 3


def test_the_servers_refusals_are_raised_not_hidden_by_a_fallback(
    server: LiveServer, tmp_path: Path, environments: Path
) -> None:
    # A 4xx is a mistake to fix, not a reason to fall back: even with a local file present
    # (user-service has one in `environments`), a wrong token is raised.
    with pytest.raises(NotFound) as not_found:
        with ConfigClient(
            "no-such-service",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path,
            environments_dir=environments,
        ):
            pass
    assert not_found.value.status == 404 and not_found.value.code == "not_found"
    with pytest.raises(Unauthorized):
        with ConfigClient(
            SERVICE,
            "development",
            server=server.url,
            token="wrong",
            cache_dir=tmp_path,
            environments_dir=environments,
        ):
            pass


def test_poll_and_sse_modes_follow_pushes(server: LiveServer, tmp_path: Path) -> None:
    for mode, service in (("poll", "poll-check"), ("sse", "sse-check")):
        server.push(with_features(1), "development", service=service)
        client = ConfigClient(
            service,
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / mode,
            environments_dir=tmp_path,
            mode=mode,
            poll_interval=0.2,
        )
        with client:
            pushed = server.push(with_features(2), "development", service=service)
            wait_for(
                lambda client=client, pushed=pushed: client.config.version == pushed["version"],
                timeout=5,
            )
            assert client.config.get("features.rate_limit_per_minute") == 2, mode


def test_readers_on_other_threads_see_whole_configs(server: LiveServer, tmp_path: Path) -> None:
    server.push(
        with_features(0, "\n[pair]\nleft: 0\nright: 0\n"), "development", service="pair-check"
    )
    client = ConfigClient(
        "pair-check", "development", server=server.url, token=server.token, cache_dir=tmp_path
    )
    mixed: list[Any] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            config = client.config
            if config.get("pair.left") != config.get("pair.right"):
                mixed.append(config.version)

    with client:
        reader = threading.Thread(target=read)
        reader.start()
        for number in range(1, 6):
            pushed = server.push(
                with_features(0, f"\n[pair]\nleft: {number}\nright: {number}\n"),
                "development",
                service="pair-check",
            )
            wait_for(lambda pushed=pushed: client.config.version == pushed["version"])
        stop.set()
        reader.join()
    assert mixed == []


class PushingTransport(httpx.HTTPTransport):
    """Pushes a version just before the client subscribes to the event stream: the worst moment."""

    def __init__(self, server: LiveServer, source: str, service: str) -> None:
        super().__init__()
        self.server, self.source, self.service = server, source, service
        self.pushed: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events" and self.pushed is None:
            self.pushed = self.server.push(self.source, "development", service=self.service)
        return super().handle_request(request)


def test_sse_misses_no_version_pushed_while_it_subscribes(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(with_features(1), "development", service="sse-gap")
    transport = PushingTransport(server, with_features(2), "sse-gap")
    client = ConfigClient(
        "sse-gap",
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        mode="sse",
        transport=transport,
    )
    with client:
        wait_for(lambda: transport.pushed is not None)
        assert transport.pushed is not None
        wait_for(lambda: client.config.version == transport.pushed["version"])  # type: ignore[index]
        assert client.config.get("features.rate_limit_per_minute") == 2


def test_a_tampered_document_at_start_is_not_used_and_the_fallback_is(
    server: LiveServer, tmp_path: Path, environments: Path
) -> None:
    server.push(with_features(3), "staging", service="tamper-start")
    transport = TamperingTransport()
    transport.active = True
    (environments / "staging" / "tamper-start.tsk").write_text(with_features(4))
    client = ConfigClient(
        "tamper-start",
        "staging",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        environments_dir=environments,
        instance_id="test:tamper-start",
        transport=transport,
    )
    with client:
        assert client.config.source == "file"
        assert client.config.get("features.rate_limit_per_minute") == 4
        wait_for(lambda: len(transport.reports) >= 2)
        failed, fallback = transport.reports[:2]
        assert (failed["status"], failed["version"], failed["failed_version"]) == ("failed", None, 1)
        assert "hash" in failed["error"]
        assert (fallback["status"], fallback["version"]) == ("fallback", None)
    assert not (tmp_path / "cache" / "tamper-start").exists()  # nothing tampered was kept


class OvertakingTransport(httpx.HTTPTransport):
    """While armed, holds the answer of a caller's `load()` until the watch thread applied a newer version."""

    def __init__(self, server: LiveServer, source: str, service: str) -> None:
        super().__init__()
        self.server, self.source, self.service = server, source, service
        self.client: ConfigClient | None = None
        self.armed = False
        self.newer: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        plain_get = (
            request.method == "GET"
            and request.url.path.startswith("/v1/configs/")
            and "If-None-Match" not in request.headers
        )
        if not (self.armed and plain_get):
            return response
        self.armed = False
        response.read()
        newer = self.newer = self.server.push(self.source, "development", service=self.service)
        client = self.client
        assert client is not None
        wait_for(lambda: client.config.version == newer["version"])
        return httpx.Response(
            response.status_code,
            headers={k: v for k, v in response.headers.items() if k.lower() != "content-length"},
            content=response.content,
        )


def test_a_load_overtaken_by_the_watch_does_not_go_back_to_an_older_version(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(with_features(1), "development", service="overtaken")
    transport = OvertakingTransport(server, with_features(2), "overtaken")
    client = ConfigClient(
        "overtaken",
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        transport=transport,
    )
    transport.client = client
    rates: list[int] = []
    client.on("features")(lambda new, old: rates.append(new["rate_limit_per_minute"]))
    with client:
        transport.armed = True
        loaded = client.load()  # fetches version 1; version 2 is applied before its answer lands
        assert transport.newer is not None
        assert client.config.version == transport.newer["version"]
        assert loaded is client.config
        assert rates == [1, 2]


class LateLongPollTransport(httpx.HTTPTransport):
    """Opens a new connection per request, and sends the long poll only once stop() is under way."""

    def __init__(self) -> None:
        super().__init__(limits=httpx.Limits(max_keepalive_connections=0))
        self.client: ConfigClient | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self.client
        if client is not None and "wait" in request.url.params:
            wait_for(client._stop.is_set)
            time.sleep(0.5)  # stop() has interrupted the connections it knew of by now
        return super().handle_request(request)


def test_stop_ends_a_long_poll_that_started_while_it_was_stopping(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(with_features(1), "development", service="late-poll")
    transport = LateLongPollTransport()
    client = ConfigClient(
        "late-poll",
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        transport=transport,
    )
    transport.client = client
    client.start()
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 3.0
    assert not [thread for thread in threading.enumerate() if thread.name == "tskcfg-late-poll"]


class StoppingTransport(httpx.HTTPTransport):
    """Has another thread stop the client while its start() is waiting for the first answer."""

    def __init__(self) -> None:
        super().__init__()
        self.client: ConfigClient | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        client = self.client
        if client is not None:
            self.client = None
            stopper = threading.Thread(target=client.stop)
            stopper.start()
            stopper.join(timeout=10)
        return super().handle_request(request)


def test_a_client_stopped_while_starting_does_not_start_watching(
    server: LiveServer, tmp_path: Path, environments: Path
) -> None:
    transport = StoppingTransport()
    client = ConfigClient(
        SERVICE,
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        environments_dir=environments,  # the load falls back to the file once stop() cut it off
        transport=transport,
    )
    transport.client = client
    with pytest.raises(RuntimeError, match="stopped"):
        client.start()
    time.sleep(0.2)
    assert not [thread for thread in threading.enumerate() if thread.name == f"tskcfg-{SERVICE}"]


def test_a_handler_may_stop_its_own_client(server: LiveServer, tmp_path: Path) -> None:
    server.push(with_features(1), "development", service="self-stop")
    client = ConfigClient(
        "self-stop", "development", server=server.url, token=server.token, cache_dir=tmp_path
    )

    @client.on("features")
    def shut_down_on_zero(new: Any, old: Any) -> None:
        if new["rate_limit_per_minute"] == 0:
            client.stop()

    client.start()
    pushed = server.push(with_features(0), "development", service="self-stop")
    wait_for(lambda: client.config.version == pushed["version"])  # the apply itself succeeded
    wait_for(
        lambda: (
            not [thread for thread in threading.enumerate() if thread.name == "tskcfg-self-stop"]
        )
    )


@pytest.mark.parametrize("mode", ["watch", "poll", "sse"])
def test_stop_leaves_no_thread_behind(server: LiveServer, tmp_path: Path, mode: str) -> None:
    service = f"threads-{mode}"
    server.push(with_features(1), "development", service=service)
    before = set(threading.enumerate())
    client = ConfigClient(
        service,
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path,
        mode=mode,
        poll_interval=0.1,
    )
    with client:
        pushed = server.push(with_features(2), "development", service=service)
        wait_for(lambda: client.config.version == pushed["version"])
        threads = set(threading.enumerate()) - before
        assert {thread.name for thread in threads} >= {f"tskcfg-{service}", "tskcfg-reports"}
        assert client.start() is client.config  # started already: nothing more runs
        assert set(threading.enumerate()) - before == threads
        started = time.monotonic()
    assert time.monotonic() - started < 2.0  # a held long poll or stream is cut, not waited out
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(RuntimeError, match="stopped"):
        client.start()


def test_a_handler_that_reloads_its_own_client_fails_instead_of_hanging(
    server: LiveServer, tmp_path: Path
) -> None:
    server.push(with_features(1), "development", service="reentrant")
    client = ConfigClient(
        "reentrant", "development", server=server.url, token=server.token, cache_dir=tmp_path
    )
    errors: list[BaseException] = []

    @client.on("features")
    def reload_on_two(new: Any, old: Any) -> None:
        if new["rate_limit_per_minute"] == 2:
            try:
                client.load()
            except BaseException as error:
                errors.append(error)
                raise

    with client:
        first = client.config
        server.push(with_features(2), "development", service="reentrant")
        wait_for(lambda: errors, timeout=5)
        assert isinstance(errors[0], RuntimeError) and "handler" in str(errors[0])
        assert client.config is first


class ReportRecorder(httpx.HTTPTransport):
    """Passes every request to the real server and keeps the body of each instance report."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            self.reports.append(json.loads(request.read()))
        return super().handle_request(request)


def recorded_client(server: LiveServer, tmp_path: Path, service: str) -> tuple[ConfigClient, ReportRecorder]:
    """A client of `service` in development whose instance reports are kept by its transport."""
    transport = ReportRecorder()
    client = ConfigClient(
        service,
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        instance_id=f"test:{service}",
        transport=transport,
    )
    return client, transport


def test_reports_say_what_runs_what_failed_and_that_the_instance_stopped(
    server: LiveServer, tmp_path: Path
) -> None:
    running = server.push(with_features(4), "development", service="report-check")
    client, transport = recorded_client(server, tmp_path, "report-check")

    @client.on("features")
    def refuse_zero(new: Any, old: Any) -> None:
        if new["rate_limit_per_minute"] == 0:
            raise RuntimeError("a rate limit of 0 would stop all traffic")

    with client:
        refused = server.push(with_features(0), "development", service="report-check")
        wait_for(lambda: any(report["status"] == "failed" for report in transport.reports))
    common = {"instance_id": "test:report-check", "service": "report-check", "environment": "development"}
    applied, failed, stopped = transport.reports
    assert applied == {
        **common,
        "version": running["version"],
        "hash": running["hash"],
        "status": "applied",
        "error": None,
    }
    assert failed == {
        **common,
        "version": running["version"],
        "hash": running["hash"],
        "status": "failed",
        "error": failed["error"],
        "failed_version": refused["version"],
        "failed_hash": refused["hash"],
    }
    assert "a rate limit of 0 would stop all traffic" in failed["error"]
    assert stopped == {
        **common,
        "version": running["version"],
        "hash": running["hash"],
        "status": "stopped",
        "error": None,
    }


def test_a_quiet_instance_reports_its_state_again_every_interval(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = server.push(with_features(4), "development", service="report-again")
    monkeypatch.setenv("CONFIG_REPORT_INTERVAL", "0.3")
    client, transport = recorded_client(server, tmp_path, "report-again")
    with client:
        wait_for(lambda: len(transport.reports) >= 4)
        seen = server.instance("test:report-again", "development", service="report-again")
    statuses = [report["status"] for report in transport.reports]
    assert statuses[:4] == ["applied"] * 4 and statuses[-1] == "stopped", statuses
    assert {report["version"] for report in transport.reports} == {running["version"]}
    assert seen is not None and seen["status"] == "applied" and not seen["stale"]
    # Nothing is sent again after `stopped`.
    count = len(transport.reports)
    time.sleep(0.7)
    assert len(transport.reports) == count


def test_the_report_interval_must_be_a_positive_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_REPORT_INTERVAL", "soon")
    with pytest.raises(ValueError, match="CONFIG_REPORT_INTERVAL must be a number of seconds"):
        ConfigClient("report-again", "development")
    monkeypatch.delenv("CONFIG_REPORT_INTERVAL")
    with pytest.raises(ValueError, match="report_interval must be a positive number"):
        ConfigClient("report-again", "development", report_interval=0)


class SilentReports(httpx.HTTPTransport):
    """Instance reports are taken and never answered: a server that hangs."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/instances":
            time.sleep(30)
        return super().handle_request(request)


def test_the_stopped_report_never_holds_stop_long(server: LiveServer, tmp_path: Path) -> None:
    server.push(with_features(4), "development", service="report-hang")
    client = ConfigClient(
        "report-hang",
        "development",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        transport=SilentReports(),
    )
    client.start()
    started = time.monotonic()
    client.stop()
    assert time.monotonic() - started < 4


def test_stop_right_after_an_apply_returns_after_its_last_known_good_write(
    server: LiveServer, tmp_path: Path
) -> None:
    stored = tmp_path / "cache" / "lkg-sync" / "development.json"
    for round in range(5):
        server.push(with_features(100 + round), "development", service="lkg-sync")
        client = ConfigClient(
            "lkg-sync",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / "cache",
        )
        with client:
            pushed = server.push(with_features(200 + round), "development", service="lkg-sync")
            applied = pushed["version"]
            wait_for(partial(lambda c, v: c.config.version == v, client, applied), step=0.001)
        assert json.loads(stored.read_text())["version"] == pushed["version"], round


def test_a_debug_logging_section_does_not_log_every_poll(
    server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    document = DEVELOPMENT.replace('level: "WARNING"', 'level: "DEBUG"')
    assert 'level: "DEBUG"' in document
    server.push(document, "development", service="quiet-polls")
    with caplog.at_level(logging.DEBUG):
        with ConfigClient(
            "quiet-polls",
            "development",
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / "cache",
            mode="poll",
            poll_interval=0.05,
        ) as client:
            assert logging.getLogger().level == logging.DEBUG
            caplog.clear()
            time.sleep(0.6)
            assert client.config.source == "server"
    noisy = [
        record
        for record in caplog.records
        if record.name.startswith(("httpx", "httpcore"))
        or (record.name.startswith("tskcfg") and record.levelno >= logging.INFO)
    ]
    assert noisy == [], [record.getMessage() for record in noisy[:5]]
