"""The built-in `logging` applier: levels, format and per-logger levels through the `logging` module."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tskcfg._appliers import section_mapping


def _level(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        number = logging.getLevelNamesMapping().get(value.strip().upper())
        if number is not None:
            return number
    raise ValueError(
        f"{where}: {value!r} is not a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
    )


@dataclass
class _LoggingSnapshot:
    root_level: int
    formatters: list[tuple[logging.Handler, logging.Formatter | None]]
    logger_levels: dict[str, int]
    added_handler: logging.Handler | None = None


# The client's own HTTP libraries: at DEBUG, httpcore logs every socket event and httpx every
# request (each long poll), which floods a service whose document asks for DEBUG.
QUIET_LOGGERS = ("httpx", "httpcore")


class LoggingApplier:
    """Applies `level`, `format` and `loggers: {name: level}` through the standard `logging` module.

    `level` sets the root logger's level, `format` the formatter of every handler on the root
    logger (a stderr handler is added when the root has none), `loggers` the level of each
    named logger; a logger dropped from `loggers` goes back to NOTSET (it inherits again).
    The client's HTTP libraries (`httpx`, `httpcore`) stay at WARNING unless `loggers` names
    them. A revert restores the levels, formatters and handlers exactly as they were.
    """

    def __init__(self) -> None:
        self._undo: list[_LoggingSnapshot] = []

    def apply(self, new: Any, old: Any) -> None:
        section = section_mapping(new, "logging")
        previous = section_mapping(old, "logging")
        # Everything is checked before anything changes, so a refusal leaves logging untouched.
        root_level = _level(section["level"], "logging.level") if "level" in section else None
        formatter = None
        if "format" in section:
            if not isinstance(section["format"], str):
                raise ValueError("logging.format must be a string")
            formatter = logging.Formatter(section["format"], validate=True)
        wanted = {name: logging.WARNING for name in QUIET_LOGGERS}
        wanted.update(
            (str(name), _level(value, f"logging.loggers.{name}"))
            for name, value in section_mapping(section.get("loggers"), "logging.loggers").items()
        )
        dropped = [
            str(name)
            for name in section_mapping(previous.get("loggers"), "logging.loggers")
            if name not in wanted
        ]

        root = logging.getLogger()
        touched = [*wanted, *dropped]
        snapshot = _LoggingSnapshot(
            root_level=root.level,
            formatters=[(handler, handler.formatter) for handler in root.handlers],
            logger_levels={name: logging.getLogger(name).level for name in touched},
        )
        if root_level is not None:
            root.setLevel(root_level)
        if formatter is not None:
            if not root.handlers:
                snapshot.added_handler = logging.StreamHandler()
                root.addHandler(snapshot.added_handler)
            for handler in root.handlers:
                handler.setFormatter(formatter)
        for name, level in wanted.items():
            logging.getLogger(name).setLevel(level)
        for name in dropped:
            logging.getLogger(name).setLevel(logging.NOTSET)
        self._undo.append(snapshot)

    def revert(self, new: Any, old: Any) -> None:
        snapshot = self._undo.pop()
        root = logging.getLogger()
        if snapshot.added_handler is not None:
            root.removeHandler(snapshot.added_handler)
        root.setLevel(snapshot.root_level)
        for handler, formatter in snapshot.formatters:
            handler.setFormatter(formatter)
        for name, level in snapshot.logger_levels.items():
            logging.getLogger(name).setLevel(level)

    def commit(self) -> None:
        self._undo.clear()
