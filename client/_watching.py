"""How a watching client paces its checks, and which server events call for one."""

from __future__ import annotations

import json
import logging

from tskcfg import exceptions
from tskcfg._events import ServerEvent
from tskcfg._retry import RetryPolicy
from tskcfg._settings import MIN_CHECK_INTERVAL, Settings

logger = logging.getLogger("tskcfg")


def pause_after_check(settings: Settings, retry: RetryPolicy, changed: bool, elapsed: float) -> float:
    """Seconds to wait after a check that succeeded (failures ask `retry`)."""
    retry.success()
    if settings.mode == "poll":
        return settings.poll_interval
    if changed:
        return 0.0
    return max(0.0, MIN_CHECK_INTERVAL - elapsed)


def pause_after_failure(settings: Settings, retry: RetryPolicy, error: Exception) -> float:
    """Count a failed check, say why, and give the seconds to wait (backoff, breaker)."""
    pause = retry.failure()
    if isinstance(error, exceptions.ConfigError):
        logger.warning("watching %s: %s; next try in %.1f s", settings.service, error, pause)
    else:
        logger.error(
            "watching %s failed; next try in %.1f s", settings.service, pause, exc_info=error
        )
    return pause


def announces_news(event: ServerEvent | None, seen_version: int | None) -> bool:
    """Whether a server-sent event names a version of the document other than `seen_version`."""
    if event is None or event.event not in ("version", "retired"):
        return False
    try:
        announced = json.loads(event.data)
    except ValueError:
        logger.warning("ignored an event whose data is not JSON: %r", event.data[:200])
        return False
    return isinstance(announced, dict) and announced.get("version") != seen_version
