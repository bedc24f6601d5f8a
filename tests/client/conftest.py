"""Fixtures shared by the client tests: a scratch copy of the environments, and logging put back after each test."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from clienttest import ROOT, LiveServer


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The logging applier changes process-wide state; every test leaves it as it found it."""
    root = logging.getLogger()
    level = root.level
    handlers = list(root.handlers)
    formatters = [handler.formatter for handler in handlers]
    named = {name: logging.getLogger(name).level for name in list(logging.root.manager.loggerDict)}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler, formatter in zip(handlers, formatters, strict=True):
        handler.setFormatter(formatter)
    root.setLevel(level)
    for name in list(logging.root.manager.loggerDict):
        logging.getLogger(name).setLevel(named.get(name, logging.NOTSET))


@pytest.fixture
def environments(tmp_path: Path) -> Path:
    """A copy of the project's environments/ directory the test may edit."""
    target = tmp_path / "environments"
    shutil.copytree(ROOT / "environments", target)
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server per test module; tests keep apart by environment or service name."""
    live = LiveServer(tmp_path_factory.mktemp("server")).start()
    yield live
    live.stop()
