"""What a client was told (service, environment, server, mode, bounds), with the defaults filled in."""

from __future__ import annotations

import math
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from config_service.names import check_name
from tskcfg._lkg import default_cache_dir, lkg_path
from tskcfg._servers import parse_servers

DEFAULT_SERVER = "http://localhost:8005"
DEFAULT_ENVIRONMENT = "development"
Mode = Literal["watch", "poll", "sse", "files"]
MODES = ("watch", "poll", "sse", "files")
# A long poll is held this long by the server; the deadline leaves room for the answer.
WATCH_WAIT = 60.0
# The whole of one answer (connect, head and body) must arrive within this many seconds,
# beyond a long poll's wait; the largest answer taken. Past either it is a failed answer.
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_REPORT_INTERVAL = 60.0
REPORT_TIMEOUT = 5.0
# An answer that brings nothing new sooner than this is followed by a pause, so a server
# that ignores `wait` cannot turn the watch loop into a busy loop.
MIN_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class Settings:
    """Everything a client was told, with the environment variables' defaults filled in."""

    service: str
    environment: str
    # Asked one at a time, the current one kept in `Servers` (client/_servers.py).
    servers: tuple[str, ...]
    token: str | None
    cache_dir: Path
    environments_dir: Path
    mode: Mode
    poll_interval: float
    instance_id: str
    schemas_dir: Path
    timeout: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # The last report is sent again after this many quiet seconds, so the server can tell a
    # running instance from a gone one (it marks one stale after three missed intervals).
    report_interval: float = DEFAULT_REPORT_INTERVAL
    # What a rollout buckets this instance by (docs/rollouts.md), when not its instance id.
    cohort: str | None = None

    @property
    def lkg_path(self) -> Path:
        return lkg_path(self.cache_dir, self.service, self.environment)

    @property
    def file_path(self) -> Path:
        return self.environments_dir / self.environment / f"{self.service}.tsk"

    @property
    def config_path(self) -> str:
        return f"/v1/configs/{self.service}/{self.environment}"


def make_settings(
    service: str,
    environment: str | None = None,
    *,
    server: str | Sequence[str] | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    environments_dir: str | os.PathLike[str] | None = None,
    mode: str = "watch",
    poll_interval: float = 30.0,
    instance_id: str | None = None,
    schemas_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    report_interval: float | None = None,
    cohort: str | None = None,
) -> Settings:
    """Fill in defaults (`SERVICE_ENV`, `CONFIG_STORE`, `CONFIG_TOKEN`, `CONFIG_REPORT_INTERVAL`,
    `CONFIG_INSTANCE_ID`, `CONFIG_COHORT`) and check every argument."""
    environment = environment or os.environ.get("SERVICE_ENV") or DEFAULT_ENVIRONMENT
    check_name(service, "service")
    check_name(environment, "environment")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    environments = Path(environments_dir) if environments_dir is not None else Path("environments")
    return Settings(
        service=service,
        environment=environment,
        servers=server_urls(server),
        token=token if token is not None else os.environ.get("CONFIG_TOKEN") or None,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        environments_dir=environments,
        mode=mode,  # type: ignore[arg-type]
        poll_interval=positive_seconds(poll_interval, "poll_interval"),
        instance_id=_label(
            instance_id or os.environ.get("CONFIG_INSTANCE_ID") or f"{socket.gethostname()}:{os.getpid()}",
            "instance_id (CONFIG_INSTANCE_ID)",
        ),
        # The layout of this repository: schemas/ beside environments/.
        schemas_dir=Path(schemas_dir) if schemas_dir is not None else environments.parent / "schemas",
        timeout=positive_seconds(timeout, "timeout"),
        max_response_bytes=positive_count(max_response_bytes, "max_response_bytes"),
        report_interval=positive_seconds(_report_interval(report_interval), "report_interval"),
        cohort=_cohort(cohort),
    )


def _cohort(given: str | None) -> str | None:
    """The cohort given, else `CONFIG_COHORT`, else None (the instance id buckets it)."""
    value = given or os.environ.get("CONFIG_COHORT") or None
    return None if value is None else _label(value, "cohort (CONFIG_COHORT)")


# Longest instance id or cohort: what the server keeps of a report's `instance_id` and `cohort`.
MAX_LABEL = 200


def _label(value: str, name: str) -> str:
    """An instance id or cohort as sent in a header: printable ASCII, at most MAX_LABEL long."""
    if not value or len(value) > MAX_LABEL or not value.isascii() or not value.isprintable():
        raise ValueError(
            f"{name} must be 1 to {MAX_LABEL} printable ASCII characters, not {value[:MAX_LABEL + 1]!r}"
        )
    return value


def positive_seconds(value: float, name: str) -> float:
    """`value` as a float, or `ValueError` naming `name` when it is not a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def positive_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return value


def _report_interval(given: float | None) -> float:
    """The interval given, else `CONFIG_REPORT_INTERVAL`, else the default."""
    if given is not None:
        return given
    text = os.environ.get("CONFIG_REPORT_INTERVAL", "").strip()
    try:
        return float(text) if text else DEFAULT_REPORT_INTERVAL
    except ValueError:
        raise ValueError(f"CONFIG_REPORT_INTERVAL must be a number of seconds, not {text!r}") from None


def server_urls(server: str | Sequence[str] | None) -> tuple[str, ...]:
    """The servers given, else `CONFIG_STORE`, else the default: one URL, several separated by
    commas, or a list; each an http:// or https:// URL."""
    return parse_servers(server or os.environ.get("CONFIG_STORE") or DEFAULT_SERVER)


def tls_verification(servers: str | Sequence[str]) -> ssl.SSLContext | bool:
    """How the HTTP client verifies TLS: the default CA bundle when a server is https://.

    For plain http:// servers only, an SSL context holding no certificate authority at all: it
    costs nothing to build, where loading the bundle took 20 to 35 ms of every start, and it
    refuses any TLS connection rather than trusting it (none is ever made: the client only
    sends requests to the servers' own URLs and follows no redirects).
    """
    urls = [servers] if isinstance(servers, str) else servers
    if any(url.startswith("https://") for url in urls):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
