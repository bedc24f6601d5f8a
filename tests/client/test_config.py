"""`Config`: one version as the service reads it, never changed by what a reader does."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowtest import DOCUMENT, received, settings_for

from tskcfg import Config
from tskcfg._documents import build


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


def test_config_repr_names_the_version(tmp_path: Path) -> None:
    config = build(settings_for(tmp_path), received("a: 1\n", 4), "cache")
    assert isinstance(config, Config) and "version=4" in repr(config) and config.source == "cache"
