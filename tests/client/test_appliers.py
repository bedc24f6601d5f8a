"""The built-in appliers on their own: logging, security, cache, database, each applied and reverted."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tskcfg import CacheApplier, DatabaseApplier, LoggingApplier, SecurityPolicy, TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- logging


def test_logging_applies_level_format_and_named_loggers_then_reverts() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    original_format = logging.Formatter("%(message)s")
    handler.setFormatter(original_format)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    applier = LoggingApplier()
    section = {
        "level": "DEBUG",
        "format": "%(levelname)s|%(message)s",
        "loggers": {"tests.http": "ERROR"},
    }

    applier.apply(section, None)
    assert root.level == logging.DEBUG
    assert handler.formatter is not None and handler.formatter._fmt == "%(levelname)s|%(message)s"
    assert logging.getLogger("tests.http").level == logging.ERROR

    applier.revert(section, None)
    assert root.level == logging.WARNING
    assert handler.formatter is original_format
    assert logging.getLogger("tests.http").level == logging.NOTSET
    root.removeHandler(handler)


def test_logging_resets_a_logger_dropped_from_the_section() -> None:
    applier = LoggingApplier()
    old = {"loggers": {"tests.dropped": "ERROR", "tests.kept": "INFO"}}
    applier.apply(old, None)
    applier.commit()
    applier.apply({"loggers": {"tests.kept": "WARNING"}}, old)
    assert logging.getLogger("tests.dropped").level == logging.NOTSET
    assert logging.getLogger("tests.kept").level == logging.WARNING


def test_logging_keeps_the_http_libraries_at_warning_unless_the_document_names_them() -> None:
    applier = LoggingApplier()
    debug = {"level": "DEBUG"}
    applier.apply(debug, None)
    applier.commit()
    assert logging.getLogger().level == logging.DEBUG
    # Every long poll would otherwise be logged by httpx, and every socket event by httpcore.
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore.http11").getEffectiveLevel() == logging.WARNING

    named = {"level": "DEBUG", "loggers": {"httpx": "DEBUG"}}
    applier.apply(named, debug)
    assert logging.getLogger("httpx").level == logging.DEBUG
    assert logging.getLogger("httpcore").level == logging.WARNING
    applier.revert(named, debug)
    assert logging.getLogger("httpx").level == logging.WARNING

    applier.apply(named, debug)
    applier.commit()
    applier.apply(debug, named)  # dropped from `loggers`: back to WARNING, not inherited DEBUG
    assert logging.getLogger("httpx").level == logging.WARNING


def test_logging_refuses_a_bad_level_without_changing_anything() -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    with pytest.raises(ValueError, match="VERBOSE"):
        LoggingApplier().apply({"level": "DEBUG", "loggers": {"tests.bad": "VERBOSE"}}, None)
    assert root.level == logging.INFO
    assert logging.getLogger("tests.bad").level == logging.NOTSET


# ---------------------------------------------------------------------------- security


def test_security_holds_origins_and_settings() -> None:
    policy = SecurityPolicy()
    policy.apply(
        {
            "allowed_origins": ["https://app.example.com"],
            "token_ttl": 60,
            "require_mtls": True,
            "region": "eu",
        },
        None,
    )
    assert policy.is_origin_allowed("https://app.example.com")
    assert not policy.is_origin_allowed("https://evil.example.com")
    assert (policy.token_ttl, policy.require_mtls, policy.region) == (60, True, "eu")


def test_security_keeps_a_rotated_key_for_the_grace_period_only() -> None:
    clock = Clock()
    policy = SecurityPolicy(clock=clock)
    first = {"keys": ["key-one"], "key_grace_period": 100}
    policy.apply(first, None)
    policy.commit()
    second = {"keys": ["key-two"], "key_grace_period": 100}
    policy.apply(second, first)
    policy.commit()
    assert policy.signing_key == "key-two"
    assert policy.accepts_key("key-two") and policy.accepts_key("key-one")
    clock.now += 99
    assert policy.accepts_key("key-one")
    clock.now += 2
    assert not policy.accepts_key("key-one")
    assert policy.accepts_key("key-two")
    assert policy.verification_keys == ("key-two",)
    assert not policy.accepts_key("key-three")


def test_security_revert_restores_the_previous_state() -> None:
    policy = SecurityPolicy()
    policy.apply({"allowed_origins": ["https://a.example"], "keys": ["k1"]}, None)
    policy.commit()
    before = policy.state
    policy.apply({"allowed_origins": ["https://b.example"], "keys": ["k2"]}, None)
    policy.revert(None, None)
    assert policy.state is before


def test_security_refuses_bad_values() -> None:
    policy = SecurityPolicy()
    with pytest.raises(ValueError, match="require_mtls"):
        policy.apply({"require_mtls": "yes"}, None)
    with pytest.raises(ValueError, match="keys"):
        policy.apply({"keys": "just-one"}, None)
    assert policy.state.keys == ()


# ---------------------------------------------------------------------------- cache


def test_cache_expires_entries_after_ttl_and_ttl_changes_live() -> None:
    clock = Clock()
    cache = TTLCache(ttl=10, max_size=10, clock=clock)
    cache.set("a", 1)
    clock.now += 9
    assert cache.get("a") == 1
    cache.configure(ttl=5)
    assert cache.get("a") is None  # 9 s old, the new ttl is 5 s


def test_cache_ttl_zero_keeps_entries_until_evicted() -> None:
    clock = Clock()
    cache = TTLCache(ttl=0, max_size=2, clock=clock)
    cache.set("a", 1)
    clock.now += 10**6
    assert cache.get("a") == 1


def test_cache_shrinking_evicts_least_recently_used() -> None:
    cache = TTLCache(ttl=60, max_size=3)
    for key in "abc":
        cache.set(key, key)
    cache.get("a")  # a is now the most recently used
    cache.configure(max_size=2)
    assert len(cache) == 2
    assert "b" not in cache and "a" in cache and "c" in cache


def test_cache_is_safe_under_threads() -> None:
    cache = TTLCache(ttl=60, max_size=50)

    def work(offset: int) -> None:
        for number in range(2000):
            cache.set((offset, number), number)
            cache.get((offset, number - 1))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50


def test_cache_applier_configures_memory_and_reverts() -> None:
    applier = CacheApplier()
    applier.apply({"backend": "memory", "ttl": 30, "max_size": 5}, None)
    applier.commit()
    assert (applier.current.ttl, applier.current.max_size) == (30, 5)
    applier.apply({"ttl": 1, "max_size": 1}, None)
    applier.revert(None, None)
    assert (applier.current.ttl, applier.current.max_size) == (30, 5)


def test_cache_applier_shrinking_evicts_and_a_left_out_key_means_the_default() -> None:
    applier = CacheApplier()
    applier.apply({"ttl": 60, "max_size": 4}, None)
    applier.commit()
    cache = applier.current
    for key in "abcd":
        cache.set(key, key)
    applier.apply({"ttl": 60, "max_size": 2}, {"ttl": 60, "max_size": 4})
    applier.commit()
    assert len(cache) == 2 and "c" in cache and "d" in cache
    applier.apply({}, {"ttl": 60, "max_size": 2})
    assert (cache.ttl, cache.max_size) == (300, 1000)


def test_cache_applier_calls_the_factory_of_another_backend() -> None:
    made: list[dict[str, Any]] = []

    def factory(section: Any) -> str:
        made.append(dict(section))
        return "remote-cache"

    applier = CacheApplier({"remote": factory})
    applier.apply({"backend": "remote", "ttl": 5}, None)
    assert applier.current == "remote-cache" and made == [{"backend": "remote", "ttl": 5}]
    with pytest.raises(ValueError, match="redis"):
        CacheApplier().apply({"backend": "redis"}, None)


# ---------------------------------------------------------------------------- database


class Resource:
    """A stand-in connection that records when it is closed."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self._closed = closed

    def close(self) -> None:
        self._closed.append(self.name)


def sqlite_connect(section: Any) -> sqlite3.Connection:
    return sqlite3.connect(section["url"].removeprefix("sqlite:///"), check_same_thread=False)


def test_database_swaps_in_a_checked_connection_and_closes_the_old(tmp_path: Path) -> None:
    applier = DatabaseApplier(sqlite_connect, check=lambda conn: conn.execute("select 1"))
    first = {"url": f"sqlite:///{tmp_path / 'one.db'}"}
    applier.apply(first, None)
    applier.commit()
    old = applier.current
    second = {"url": f"sqlite:///{tmp_path / 'two.db'}"}
    applier.apply(second, first)
    applier.commit()
    assert applier.current is not old
    with pytest.raises(sqlite3.ProgrammingError):
        old.execute("select 1")  # closed
    with applier.connection() as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_database_keeps_the_old_connection_when_check_fails(tmp_path: Path) -> None:
    closed: list[str] = []

    def check(conn: Any) -> None:
        if conn.name == "bad":
            raise RuntimeError("cannot reach the database")

    applier = DatabaseApplier(lambda section: Resource(section["url"], closed), check=check)
    applier.apply({"url": "good"}, None)
    applier.commit()
    with pytest.raises(RuntimeError, match="cannot reach"):
        applier.apply({"url": "bad"}, {"url": "good"})
    assert applier.current.name == "good"
    assert closed == ["bad"]


def test_database_closes_the_old_connection_only_after_its_users_finish() -> None:
    closed: list[str] = []

    applier = DatabaseApplier(lambda section: Resource(section["url"], closed))
    applier.apply({"url": "one"}, None)
    applier.commit()
    with applier.connection() as in_use:
        applier.apply({"url": "two"}, {"url": "one"})
        applier.commit()
        assert closed == []  # still lent out
        assert in_use.name == "one" and applier.current.name == "two"
    assert closed == ["one"]


def test_database_revert_restores_the_old_connection_and_closes_the_new() -> None:
    closed: list[str] = []

    applier = DatabaseApplier(lambda section: Resource(section["url"], closed))
    applier.apply({"url": "one"}, None)
    applier.commit()
    applier.apply({"url": "two"}, {"url": "one"})
    applier.revert({"url": "two"}, {"url": "one"})
    assert applier.current.name == "one"
    assert closed == ["two"]


def test_database_without_a_factory_does_nothing() -> None:
    applier = DatabaseApplier()
    applier.apply({"url": "anything"}, None)
    applier.commit()
    assert applier.current is None


def test_database_never_closes_the_connection_in_use_when_the_factory_hands_it_back() -> None:
    """A factory may keep one pool per url and return it again; that pool is still the current one."""
    closed: list[str] = []
    pools: dict[str, Resource] = {}

    def connect(section: Any) -> Resource:
        return pools.setdefault(section["url"], Resource(section["url"], closed))

    def check(resource: Any) -> None:
        if resource.name == "one" and len(pools) > 1:
            raise RuntimeError("cannot reach the database")

    applier = DatabaseApplier(connect, check=check)
    applier.apply({"url": "one", "pool_size": 5}, None)
    applier.commit()
    applier.apply({"url": "one", "pool_size": 10}, {"url": "one", "pool_size": 5})
    applier.commit()
    assert closed == [] and applier.current is pools["one"]
    applier.apply({"url": "one", "pool_size": 20}, {"url": "one", "pool_size": 10})
    applier.revert({"url": "one", "pool_size": 20}, {"url": "one", "pool_size": 10})
    assert closed == []
    pools["two"] = Resource("two", closed)
    with pytest.raises(RuntimeError, match="cannot reach"):
        applier.apply({"url": "one", "pool_size": 30}, {"url": "one", "pool_size": 10})
    assert closed == [] and applier.current is pools["one"]


def test_database_check_failure_is_raised_even_when_closing_the_new_one_fails() -> None:
    def close(resource: Any) -> None:
        raise OSError("close failed")

    def check(resource: Any) -> None:
        raise RuntimeError("cannot reach the database")

    applier = DatabaseApplier(lambda section: Resource("new", []), close=close, check=check)
    with pytest.raises(RuntimeError, match="cannot reach"):
        applier.apply({"url": "new"}, None)
    assert applier.current is None
