"""The shared core without a server: planning and running an apply, all or nothing, and what it reports."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from clienttest import SERVICE
from flowtest import DOCUMENT, core_for, received, run_apply, run_calls

from tskcfg import ApplyFailed, ConfigClient
from tskcfg._core import ClientCore
from tskcfg._documents import build
from tskcfg._settings import make_settings
from tskcfg._transaction import plan

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


def test_the_thread_client_refuses_coroutine_handlers() -> None:

    client = ConfigClient(SERVICE, "development", mode="files")

    async def handler(new: Any, old: Any) -> None:
        return None

    with pytest.raises(TypeError, match="AsyncConfigClient"):
        client.on("features")(handler)
    client.on("features")(lambda new, old: None)
    assert len(client._core.handlers) == 1
