"""The shared core without a server: building a Config, planning and running an apply, retry timing,
last-known-good files, settings, the event-stream parser."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from clienttest import ROOT, SERVICE, wait_for

from config_service import tsk
from tskcfg import ApplyFailed, Config, ConfigClient, HashMismatch, InvalidConfig, RetryPolicy
from tskcfg._answers import Received, SchemaAnswer
from tskcfg._core import ClientCore
from tskcfg._documents import build
from tskcfg._effects import Offload, Report, drive
from tskcfg._events import EventStreamParser, ServerEvent
from tskcfg._lkg import read_lkg, write_lkg
from tskcfg._schemas import sections_to_fetch
from tskcfg._settings import Settings, make_settings
from tskcfg._transaction import plan
from tskcfg._watching import announces_news, pause_after_check

DOCUMENT = (ROOT / "environments" / "development" / f"{SERVICE}.tsk").read_text(encoding="utf-8")


def run_calls(flow: Any) -> None:
    """Drive a transaction whose only effects are applier and handler calls."""
    drive(flow, lambda call: call())


def run_apply(flow: Any) -> list[Report]:
    """Drive an apply flow: calls made, file work done, the reports it sends returned."""
    reports: list[Report] = []

    def perform(effect: Any) -> Any:
        if isinstance(effect, Report):
            reports.append(effect)
            return None
        if isinstance(effect, Offload):
            return effect.function()
        return effect()

    drive(flow, perform)
    return reports


def settings_for(tmp_path: Path, **kwargs: Any) -> Settings:
    return make_settings(
        SERVICE, "development", cache_dir=tmp_path / "cache", environments_dir=tmp_path, **kwargs
    )


def core_for(tmp_path: Path, **kwargs: Any) -> ClientCore:
    return ClientCore(settings_for(tmp_path, **kwargs))


def received(source: str, version: int = 1) -> Received:
    data = tsk.loads(source)
    return Received(version=version, hash=tsk.document_hash(data), wire=tsk.to_wire(data))


# ---------------------------------------------------------------------------- building


def test_build_resolves_env_with_the_type_of_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", " 9100 ")
    monkeypatch.setenv("SIGNUP", "no")
    monkeypatch.setenv("ORIGINS", '["https://a.example", "https://b.example"]')
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = build(
        settings_for(tmp_path),
        received(
            'port: @env("PORT", 8001)\n'
            'signup: @env("SIGNUP", true)\n'
            'origins: @env("ORIGINS", [])\n'
            'url: @env("DATABASE_URL", "sqlite:///x.db")\n'
        ),
        "server",
    )
    assert config["port"] == 9100 and isinstance(config["port"], int)
    assert config["signup"] is False
    assert config["origins"] == ["https://a.example", "https://b.example"]
    assert config["url"] == "sqlite:///x.db"
    # The wire form keeps the reference for the next process.
    assert config.wire["port"] == {"$env": "PORT", "default": 8001}


def test_build_names_a_variable_that_does_not_convert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(InvalidConfig, match="PORT") as caught:
        build(settings_for(tmp_path), received('port: @env("PORT", 8001)\n'), "server")
    assert caught.value.details[0]["variable"] == "PORT"


def test_an_apply_failure_quoting_a_secret_from_the_environment_is_reported_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tskcfg import DatabaseApplier

    def connect(section: Any) -> Any:
        raise RuntimeError(f"could not connect to {section['url']}")

    monkeypatch.setenv("TSKCFG_TEST_DB_URL", "postgresql://app:pa55word@db.internal/app")
    settings = make_settings(SERVICE, "development", cache_dir=tmp_path, environments_dir=tmp_path)
    core = ClientCore(settings, database=DatabaseApplier(connect))
    config = build(core.settings, received('[database]\nurl: @env("TSKCFG_TEST_DB_URL")\n'), "server")
    reports: list[Report] = []

    def perform(effect: Any) -> Any:
        if isinstance(effect, Report):
            reports.append(effect)
            return None
        return effect()

    with pytest.raises(ApplyFailed):
        drive(core.apply_flow(config, None), perform)
    [failed] = reports
    assert failed.status == "failed" and failed.error is not None
    assert "pa55word" not in failed.error and "pa55word" not in caplog.text
    assert "could not connect to @env(TSKCFG_TEST_DB_URL)" in failed.error


def test_a_variable_that_does_not_convert_is_named_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TSKCFG_TEST_KEYS", '["s3cret-one", "s3cret-two"')  # the ] is missing
    with pytest.raises(InvalidConfig, match="TSKCFG_TEST_KEYS") as caught:
        build(settings_for(tmp_path), received('keys: @env("TSKCFG_TEST_KEYS", [])\n'), "server")
    assert "s3cret" not in str(caught.value) + repr(caught.value.details)
    assert "expected an array" in str(caught.value)


def test_build_refuses_an_unset_variable_without_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TSKCFG_TEST_SECRET", raising=False)
    with pytest.raises(InvalidConfig, match="TSKCFG_TEST_SECRET"):
        build(settings_for(tmp_path), received('secret: @env("TSKCFG_TEST_SECRET")\n'), "server")


def test_a_schema_failure_does_not_repeat_a_value_that_came_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message is logged and reported to the server: a secret from @env must not be in it."""
    from config_service.schema import SchemaSet

    monkeypatch.setenv("TSKCFG_TEST_TOKEN", "hunter2")
    monkeypatch.setenv("TSKCFG_TEST_KEYS", '["s3cret-one", "s3cret-one"]')
    schema = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "minLength": 40},
            "keys": {"type": "array", "uniqueItems": True},
            "name": {"type": "string", "maxLength": 2},
        },
    }
    schemas = SchemaSet({SERVICE: schema}, generation=0)
    with pytest.raises(InvalidConfig) as caught:
        build(
            settings_for(tmp_path),
            received(
                'token: @env("TSKCFG_TEST_TOKEN")\n'
                'keys: @env("TSKCFG_TEST_KEYS", [])\n'
                'name: "plain"\n'
            ),
            "server",
            schemas,
        )
    text = str(caught.value) + repr(caught.value.details)
    assert "hunter2" not in text and "s3cret-one" not in text
    messages = {detail["path"]: detail["message"] for detail in caught.value.details}
    assert messages["/token"] == "@env(TSKCFG_TEST_TOKEN) is too short"
    assert "@env(TSKCFG_TEST_KEYS)" in messages["/keys"]
    assert messages["/name"] == "'plain' is too long"  # written in the document: nothing to hide


def test_build_rejects_data_that_does_not_match_its_hash(tmp_path: Path) -> None:
    good = received("pool_size: 20\n")
    tampered = Received(version=1, hash=good.hash, wire={"pool_size": 2000})
    with pytest.raises(HashMismatch):
        build(settings_for(tmp_path), tampered, "server")


def test_config_never_changes_through_what_it_returns(tmp_path: Path) -> None:
    config = build(settings_for(tmp_path), received(DOCUMENT), "server")
    section = config.section("security")
    section["allowed_origins"].append("https://evil.example")
    config.to_dict()["cache"]["ttl"] = 1
    assert "https://evil.example" not in config.get("security.allowed_origins")
    assert config.get("cache.ttl") == 30
    assert config.get("database.pool_size") == 2
    assert config.get("security.allowed_origins.0") == "http://localhost:3000"
    assert config.get("no.such.key", "fallback") == "fallback"
    with pytest.raises(KeyError, match="nothing"):
        config.section("nothing")
    with pytest.raises(AttributeError, match="never changes"):
        config.version = 99  # type: ignore[misc]
    assert config.version == 1


# ---------------------------------------------------------------------------- planning and applying


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def handler(self, name: str, fail_on: Any = None) -> Any:
        def handle(new: Any, old: Any) -> None:
            self.calls.append((name, new, old))
            if fail_on is not None and new == fail_on:
                raise RuntimeError(f"{name} refuses")

        return handle


def test_first_apply_runs_everything_then_only_changed_sections(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    recorder = Recorder()
    for section in ("features", "port", "cache", "gone"):
        core.on(section)(recorder.handler(section))
    first = build(
        core.settings,
        received("port: 1\ngone: 1\n[features]\nflag: true\n[cache]\nttl: 5\n", 1), "server"
    )
    run_calls(core.transaction(first))
    core.config = first
    assert [call[0] for call in recorder.calls] == ["features", "port", "cache", "gone"]
    assert all(call[2] is None for call in recorder.calls)  # first load: old is None

    recorder.calls.clear()
    second = build(
        core.settings,
        received("port: 1\n[features]\nflag: false\n[cache]\nttl: 5\n", 2), "server"
    )
    steps = plan(core.config, second, core.appliers, core.handlers)
    assert [step.label for step in steps] == [
        "handler Recorder.handler.<locals>.handle for 'features'",
        "handler Recorder.handler.<locals>.handle for 'gone'",
    ]
    run_calls(core.transaction(second))
    assert recorder.calls == [("features", {"flag": False}, {"flag": True}), ("gone", None, 1)]


def test_builtins_run_in_fixed_order_before_handlers(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    core.on("logging")(lambda new, old: None)
    config = build(core.settings, received(DOCUMENT), "server")
    labels = [step.label for step in plan(core.config, config, core.appliers, core.handlers)]
    builtins = [label for label in labels if label.startswith("the built-in")]
    assert builtins == [
        f"the built-in {name} applier" for name in ("logging", "security", "cache", "database")
    ]
    assert labels.index("the built-in database applier") < len(builtins)
    assert labels[-1].startswith("handler") and labels[-1].endswith("'logging'")


def test_a_failing_handler_reverts_every_step_before_it_in_reverse_order(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    recorder = Recorder()
    core.on("a")(recorder.handler("a"))
    core.on("b")(recorder.handler("b"))
    core.on("c")(recorder.handler("c", fail_on=3))
    core.on("d")(recorder.handler("d"))
    first = build(core.settings, received("a: 0\nb: 0\nc: 0\nd: 0\n", 1), "server")
    run_calls(core.transaction(first))
    core.config = first
    recorder.calls.clear()

    second = build(core.settings, received("a: 1\nb: 2\nc: 3\nd: 4\n", 2), "server")
    with pytest.raises(ApplyFailed, match="version 2") as caught:
        run_calls(core.transaction(second))
    assert caught.value.section == "c" and isinstance(caught.value.__cause__, RuntimeError)
    assert recorder.calls == [
        ("a", 1, 0),
        ("b", 2, 0),
        ("c", 3, 0),  # raised: not called back
        ("b", 0, 2),  # reverted, latest first
        ("a", 0, 1),
    ]


def test_a_handler_that_raises_while_reverting_does_not_stop_the_other_reverts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    core = core_for(tmp_path)
    recorder = Recorder()
    core.on("a")(recorder.handler("a"))
    core.on("b")(recorder.handler("b"))
    core.on("c")(recorder.handler("c", fail_on=2))
    first = build(core.settings, received("a: 1\nb: 3\nc: 1\n[cache]\nttl: 5\n", 1), "server")
    run_apply(core.apply_flow(first, None))
    recorder.calls.clear()
    core.handlers[1] = ("b", recorder.handler("b", fail_on=3))
    second = build(core.settings, received("a: 2\nb: 2\nc: 2\n[cache]\nttl: 9\n", 2), "server")
    with pytest.raises(ApplyFailed) as caught:
        run_apply(core.apply_flow(second, first))
    assert caught.value.section == "c"
    assert recorder.calls == [("a", 2, 1), ("b", 2, 3), ("c", 2, 1), ("b", 3, 2), ("a", 1, 2)]
    assert core.cache.memory.ttl == 5 and core.config is first
    assert "reverting handler" in caplog.text


def test_an_interruption_while_reverting_finishes_the_revert_and_is_not_swallowed(
    tmp_path: Path,
) -> None:
    core = core_for(tmp_path)
    recorder = Recorder()
    core.on("a")(recorder.handler("a"))

    @core.on("b")
    def interrupted_going_back(new: Any, old: Any) -> None:
        if (new, old) == (0, 1):
            raise asyncio.CancelledError  # an interruption, like Ctrl-C: not an Exception

    core.on("c")(recorder.handler("c", fail_on=1))
    first = build(core.settings, received("a: 0\nb: 0\nc: 0\n", 1), "server")
    run_apply(core.apply_flow(first, None))
    recorder.calls.clear()
    with pytest.raises(asyncio.CancelledError):
        run_apply(core.apply_flow(build(core.settings, received("a: 1\nb: 1\nc: 1\n", 2), "server"), first))
    assert recorder.calls == [("a", 1, 0), ("c", 1, 0), ("a", 0, 1)]
    assert core.config is first


def test_an_interruption_inside_a_handler_reverts_and_goes_on_as_itself(tmp_path: Path) -> None:
    """Ctrl-C (or a cancelled task) in the middle of an apply: not ApplyFailed, and nothing half applied."""
    core = core_for(tmp_path)
    recorder = Recorder()
    core.on("a")(recorder.handler("a"))

    @core.on("b")
    def interrupted(new: Any, old: Any) -> None:
        raise asyncio.CancelledError  # an interruption, like Ctrl-C: not an Exception

    core.on("c")(recorder.handler("c"))
    config = build(core.settings, received("a: 1\nb: 1\nc: 1\n[cache]\nttl: 5\n", 1), "server")
    ttl = core.cache.memory.ttl
    with pytest.raises(asyncio.CancelledError):
        run_apply(core.apply_flow(config, None))
    assert recorder.calls == [("a", 1, None), ("a", None, 1)]
    assert core.cache.memory.ttl == ttl and core.config is None


def test_a_failing_builtin_reverts_the_builtins_before_it(tmp_path: Path) -> None:
    import logging

    core = core_for(tmp_path)
    logging.getLogger().setLevel(logging.WARNING)
    config = build(core.settings, received('[logging]\nlevel: "DEBUG"\n[cache]\nttl: -5\n', 1), "server")
    with pytest.raises(ApplyFailed, match="cache"):
        run_calls(core.transaction(config))
    assert logging.getLogger().level == logging.WARNING


class Connection:
    def __init__(self, section: Any, closed: list[Any]) -> None:
        self.url = section["url"]
        self._closed = closed

    def close(self) -> None:
        self._closed.append(self.url)


def test_a_failed_first_load_puts_every_builtin_and_handler_back(tmp_path: Path) -> None:
    """Built-ins and handlers mixed, old=None: all reverted, latest first, the raiser not called back."""
    import logging

    from tskcfg import DatabaseApplier

    closed: list[Any] = []
    settings = make_settings(
        SERVICE, "development", cache_dir=tmp_path / "cache", environments_dir=tmp_path
    )
    core = ClientCore(
        settings, database=DatabaseApplier(lambda section: Connection(section, closed))
    )
    order: list[tuple[str, Any, Any]] = []
    core.on("database")(lambda new, old: order.append(("database", new and new["url"], old)))
    core.on("logging")(lambda new, old: order.append(("logging", new and new["level"], old)))

    @core.on("features")
    def refuse(new: Any, old: Any) -> None:
        order.append(("features", new, old))
        raise RuntimeError("refused")

    core.on("port")(lambda new, old: order.append(("port", new, old)))
    root = logging.getLogger()
    handler = logging.StreamHandler()
    formatter = logging.Formatter("%(message)s")
    handler.setFormatter(formatter)
    root.addHandler(handler)
    try:
        root.setLevel(logging.ERROR)
        logging.getLogger("tests.mixed").setLevel(logging.CRITICAL)
        security = core.security.state
        ttl, size = core.cache.memory.ttl, core.cache.memory.max_size
        config = build(
            core.settings,
            received(
                'port: 1\n[logging]\nlevel: "DEBUG"\nformat: "%(levelname)s %(message)s"\n'
                'loggers {\n  "tests.mixed" = "INFO"\n}\n'
                '[security]\nkeys: ["k1"]\nallowed_origins: ["https://a.example"]\n'
                '[cache]\nttl: 5\nmax_size: 3\n[database]\nurl: "sqlite:///one.db"\n'
                "[features]\nflag: true\n"
            ),
            "server",
        )
        with pytest.raises(ApplyFailed, match="features"):
            run_apply(core.apply_flow(config, None))
        assert core.config is None
        assert order == [
            ("database", "sqlite:///one.db", None),
            ("logging", "DEBUG", None),
            ("features", {"flag": True}, None),
            (
                "logging",
                None,
                {
                    "level": "DEBUG",
                    "format": "%(levelname)s %(message)s",
                    "loggers": {"tests.mixed": "INFO"},
                },
            ),
            ("database", None, {"url": "sqlite:///one.db"}),
        ]
        assert root.level == logging.ERROR and handler.formatter is formatter
        assert logging.getLogger("tests.mixed").level == logging.CRITICAL
        assert core.security.state is security
        assert (core.cache.memory.ttl, core.cache.memory.max_size) == (ttl, size)
        assert core.database.current is None and closed == ["sqlite:///one.db"]
        assert core.refused == (config.version, config.hash)
    finally:
        root.removeHandler(handler)


def test_a_changed_variable_is_applied_with_the_next_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """@env is resolved at every apply: a section whose text did not change still changes value."""
    core = core_for(tmp_path)
    seen: list[Any] = []
    core.on("port")(lambda new, old: seen.append((new, old)))
    document = 'port: @env("TSKCFG_TEST_PORT", 8001)\nrelease: {n}\n'
    monkeypatch.setenv("TSKCFG_TEST_PORT", "9000")
    first = build(core.settings, received(document.format(n=1), 1), "server")
    run_apply(core.apply_flow(first, None))
    monkeypatch.setenv("TSKCFG_TEST_PORT", "9001")
    second = build(core.settings, received(document.format(n=2), 2), "server")
    assert second.wire["port"] == first.wire["port"]
    run_apply(core.apply_flow(second, first))
    assert seen == [(9000, None), (9001, 9000)] and core.config is second


# ---------------------------------------------------------------------------- retry


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    retry = RetryPolicy(base=0.5, cap=30.0, failure_threshold=100, random=lambda: 1.0)
    delays = [retry.failure() for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert RetryPolicy(random=lambda: 0.0, failure_threshold=100).failure() == 0.0


def test_breaker_opens_after_threshold_and_success_closes_it() -> None:
    retry = RetryPolicy(base=0.01, failure_threshold=3, recovery_timeout=20.0, random=lambda: 0.0)
    assert [retry.failure() for _ in range(2)] == [0.0, 0.0]
    assert retry.state == "closed"
    assert retry.failure() == 10.0  # open: at least half the recovery timeout, jittered
    assert retry.state == "open"
    assert retry.failure() == 10.0  # the half-open probe failed: open again
    retry.success()
    assert retry.state == "closed" and retry.failure() == 0.0


# ---------------------------------------------------------------------------- last-known-good


def test_lkg_round_trip_is_atomic_and_verified(tmp_path: Path) -> None:
    data = tsk.loads(DOCUMENT)
    path = tmp_path / "cache" / SERVICE / "development.json"
    wire = tsk.to_wire(data)
    write_lkg(
        path,
        service=SERVICE,
        environment="development",
        version=3,
        hash=tsk.document_hash(data),
        wire=wire,
    )
    assert [entry.name for entry in path.parent.iterdir()] == [
        "development.json"
    ]  # no temp file left
    stored = read_lkg(path, service=SERVICE, environment="development")
    assert stored is not None and stored["version"] == 3 and stored["config"] == wire
    assert read_lkg(path, service="other-service", environment="development") is None


def test_lkg_write_syncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync file")
        real_fsync(descriptor)

    def replace(source: Any, target: Any) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    data = tsk.loads("a: 1\n")
    write_lkg(
        tmp_path / SERVICE / "development.json",
        service=SERVICE,
        environment="development",
        version=1,
        hash=tsk.document_hash(data),
        wire=tsk.to_wire(data),
    )
    assert events == ["fsync file", "rename", "fsync dir"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace('"pool_size": 2', '"pool_size": 200'),  # tampered
        lambda text: "",
        lambda text: "[]",
        lambda text: '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}",  # nested past the stack
        lambda text: text.replace(
            '"config": {', '"config": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1
        ),
    ],
)
def test_a_damaged_lkg_file_is_ignored(
    tmp_path: Path, damage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    data = tsk.loads(DOCUMENT)
    path = tmp_path / "development.json"
    write_lkg(
        path,
        service=SERVICE,
        environment="development",
        version=1,
        hash=tsk.document_hash(data),
        wire=tsk.to_wire(data),
    )
    path.write_text(damage(path.read_text()))
    assert read_lkg(path, service=SERVICE, environment="development") is None
    assert "ignored" in caplog.text


# ---------------------------------------------------------------------------- settings and parsing


def test_settings_come_from_the_seed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_ENV", "staging")
    monkeypatch.setenv("CONFIG_STORE", "http://config.internal:9000/")
    monkeypatch.setenv("CONFIG_TOKEN", "secret-token")
    settings = make_settings(SERVICE)
    assert (settings.environment, settings.server, settings.token) == (
        "staging",
        "http://config.internal:9000",
        "secret-token",
    )
    assert settings.instance_id == f"{os.uname().nodename}:{os.getpid()}"
    monkeypatch.delenv("SERVICE_ENV")
    monkeypatch.delenv("CONFIG_STORE")
    assert make_settings(SERVICE).environment == "development"
    assert make_settings(SERVICE).server == "http://localhost:8005"


@pytest.mark.parametrize("name", ["../etc", "User-Service", "", "a" * 64, "user-service\n"])
def test_settings_refuse_names_that_could_escape_the_cache_dir(name: str) -> None:
    with pytest.raises(ValueError, match="is not valid"):
        make_settings(name)
    with pytest.raises(ValueError, match="environment name .* is not valid"):
        make_settings("user-service", name or "\n")


def test_event_stream_parser_reads_events_and_remembers_the_id() -> None:
    parser = EventStreamParser()
    lines = ["retry: 2000", "", ": ping", "id: 7", "event: version", 'data: {"version": 3}', ""]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert (
        len(events) == 1
        and events[0].event == "version"
        and json.loads(events[0].data) == {"version": 3}
    )
    assert parser.last_event_id == "7"


def test_config_repr_names_the_version(tmp_path: Path) -> None:
    config = build(settings_for(tmp_path), received("a: 1\n", 4), "cache")
    assert isinstance(config, Config) and "version=4" in repr(config) and config.source == "cache"


# ---------------------------------------------------------------------------- schemas


def schema_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "schemas" / f"{name}.json").read_text())
    return loaded


SECTIONS = ("cache", "database", "logging", "security")


def test_section_schemas_are_fetched_by_name_even_when_a_schema_carries_copies(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    plain = SchemaAnswer(SERVICE, 1, schema_file(SERVICE))
    assert sections_to_fetch(plain) == list(SECTIONS)
    # A schema is known by its name only: copies under their own `$id` (which a server no
    # longer stores) do not stand in for the section schemas, on the server or here.
    inlined = {**schema_file(SERVICE), "$defs": {name: schema_file(name) for name in SECTIONS}}
    assert sections_to_fetch(SchemaAnswer(SERVICE, 2, inlined)) == list(SECTIONS)
    sections = {name: schema_file(name) for name in SECTIONS}
    compiled = core.compiler.compile(SchemaAnswer(SERVICE, 2, inlined), sections)
    assert compiled is not None
    with pytest.raises(InvalidConfig) as caught:
        build(core.settings, received(DOCUMENT.replace("pool_size: 2", "pool_size: 0")), "server", compiled)
    assert caught.value.details[0]["path"] == "/database/pool_size"


def test_a_schema_whose_sections_cannot_be_had_is_skipped_once_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    core = core_for(tmp_path)
    answer = SchemaAnswer(SERVICE, 3, schema_file(SERVICE))
    assert core.compiler.compile(answer, {}) is None
    assert "cache.json, database.json, logging.json, security.json" in caplog.text
    assert "validating on the server only" in caplog.text
    assert core.compiler.cached(answer) == (True, None)
    complete = core.compiler.compile(
        SchemaAnswer(SERVICE, 4, schema_file(SERVICE)),
        {name: schema_file(name) for name in SECTIONS},
    )
    assert complete is not None and core.compiler.cached(SchemaAnswer(SERVICE, 4, {}))[0]


def test_the_thread_client_refuses_coroutine_handlers() -> None:
    from tskcfg import ConfigClient

    client = ConfigClient(SERVICE, "development", mode="files")

    async def handler(new: Any, old: Any) -> None:
        return None

    with pytest.raises(TypeError, match="AsyncConfigClient"):
        client.on("features")(handler)
    client.on("features")(lambda new, old: None)
    assert len(client._core.handlers) == 1


def test_a_quick_answer_without_news_is_followed_by_a_pause(tmp_path: Path) -> None:
    watch = core_for(tmp_path)
    assert pause_after_check(watch.settings, watch.retry, changed=True, elapsed=0.01) == 0.0
    assert pause_after_check(watch.settings, watch.retry, changed=False, elapsed=0.25) == pytest.approx(0.75)
    assert pause_after_check(watch.settings, watch.retry, changed=False, elapsed=60.0) == 0.0  # a long poll that ran out
    poll = core_for(tmp_path, mode="poll", poll_interval=7)
    assert pause_after_check(poll.settings, poll.retry, changed=True, elapsed=0.01) == 7.0


def test_only_events_naming_an_unseen_version_trigger_a_fetch(tmp_path: Path) -> None:
    core = core_for(tmp_path)
    core.seen_version = 3
    assert announces_news(ServerEvent(id="9", event="version", data='{"version": 4}'), core.seen_version)
    assert not announces_news(ServerEvent(id="9", event="version", data='{"version": 3}'), core.seen_version)
    assert not announces_news(ServerEvent(id="9", event="version", data="not json"), core.seen_version)
    assert not announces_news(ServerEvent(id=None, event="message", data='{"version": 4}'), core.seen_version)


LKG_WRITER = """
import sys
from pathlib import Path
from tskcfg._lkg import write_lkg
from config_service import tsk

path = Path(sys.argv[1])
documents = [tsk.loads(f"[bench]\\ncounter: {n}\\npadding: \\"{'x' * 20000}\\"\\n") for n in range(2)]
print("writing", flush=True)
for number in range(100000):
    data = documents[number % 2]
    write_lkg(path, service="user-service", environment="development", version=number + 1,
              hash=tsk.document_hash(data), wire=tsk.to_wire(data))
"""


def test_a_writer_killed_mid_write_leaves_a_whole_lkg_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "cache" / SERVICE / "development.json"
    process = subprocess.Popen(
        [sys.executable, "-c", LKG_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    # The first write may wait on a busy disk: kill only once there is a file to damage.
    wait_for(path.exists, timeout=10)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    stored = read_lkg(path, service=SERVICE, environment="development")
    assert stored is not None and stored["version"] >= 1
    assert stored["config"]["bench"]["counter"] == (stored["version"] - 1) % 2
    leftovers = [entry.name for entry in path.parent.iterdir() if entry.name != "development.json"]
    assert len(leftovers) <= 1  # at most the temporary file of the write that was cut short


def test_an_http_server_costs_no_ca_bundle_and_an_https_one_is_verified() -> None:
    import ssl

    from tskcfg._settings import tls_verification

    plain = tls_verification("http://127.0.0.1:8005")
    assert isinstance(plain, ssl.SSLContext)
    # Nothing trusted, everything checked: a TLS connection through it could only fail.
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert tls_verification("https://config.internal") is True
    client = ConfigClient("user-service", "staging", server="http://127.0.0.1:9")
    try:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context.cert_store_stats()["x509_ca"] == 0
    finally:
        client.stop()
