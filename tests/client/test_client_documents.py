"""Turning a received document into a Config: the hash checked, `@env` resolved, validated, and
nothing from the environment repeated in what is logged or reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clienttest import SERVICE
from flowtest import received, settings_for

from tskcfg import ApplyFailed, HashMismatch, InvalidConfig
from tskcfg._answers import Received
from tskcfg._core import ClientCore
from tskcfg._documents import build
from tskcfg._effects import Report, drive
from tskcfg._settings import make_settings

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
