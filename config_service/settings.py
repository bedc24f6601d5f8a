"""Server settings: one frozen value, built by `tskcfg serve` from its flags (each with its `TSKCFG_*` variable)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_PIPELINE = ("development", "staging", "production")
DEFAULT_MAX_BODY = 1024 * 1024
# Open connections: above the 10,000 idle watchers one process is built to hold, below what
# a flood of idle or half-sent connections may cost (each holds buffers and a parser).
DEFAULT_MAX_CONNECTIONS = 16_384
# From the end of a request's head to the end of its body.
DEFAULT_BODY_TIMEOUT = 30.0
# The section schemas every service schema may `$ref` (docs/server.md, "Schemas").
DEFAULT_SECTIONS = ("database", "cache", "logging", "security")
DEFAULT_MAX_MESSAGE = 4 * 1024
DEFAULT_SESSION_IDLE = 30 * 60.0


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know at start; nothing is read from globals later."""

    host: str = "127.0.0.1"
    port: int = 8005
    data_dir: Path = Path("data")
    # A store URL (`postgresql://...`, `sqlite:///...`); None: SQLite in `data_dir`.
    store: str | None = None
    environments_dir: Path = Path("environments")
    schemas_dir: Path = Path("schemas")
    pipeline: tuple[str, ...] = DEFAULT_PIPELINE
    sections: tuple[str, ...] = DEFAULT_SECTIONS
    sync: bool = True
    max_body: int = DEFAULT_MAX_BODY
    # A version's message, in bytes of UTF-8 after decoding.
    max_message: int = DEFAULT_MAX_MESSAGE
    workers: int = 1
    # Long polls are clamped to this many seconds (at most 120; docs/server.md).
    max_wait: float = 120.0
    # How many report intervals an instance may miss before it is marked stale.
    instance_report_interval: float = 60.0
    # Instances remembered per document; past it, a new one replaces a stale one or is 429.
    max_instances_per_document: int = 1000
    # Instance reports one token may send in a minute; more are 429 until the minute ends.
    instance_reports_per_minute: int = 6000
    log_level: str = "info"
    access_log: bool = True
    # Connections beyond this many open ones are closed as soon as they are accepted.
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # A request body not complete this many seconds after its head is answered 408.
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    # A push to a service that does not exist creates it (else 404 unknown_service).
    open_services: bool = False
    # A console session unused for this many seconds ends (docs/console.md, "Sessions").
    session_idle: float = DEFAULT_SESSION_IDLE
    # Addresses of reverse proxies whose X-Forwarded-Proto counts (a console cookie is Secure
    # over HTTPS, as the browser sees it).
    trusted_proxies: tuple[str, ...] = ()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "config.db"

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    def previous_environment(self, environment: str) -> str | None:
        """The step before `environment` in the pipeline, or None for the first step."""
        index = self.pipeline.index(environment)
        return self.pipeline[index - 1] if index > 0 else None

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced; `None` values are ignored."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})


def parse_pipeline(text: str) -> tuple[str, ...]:
    """`development,staging,production` -> a tuple of distinct, valid environment names."""
    from config_service.names import check_name

    steps = tuple(part.strip() for part in text.split(",") if part.strip())
    if not steps:
        raise ValueError("the pipeline needs at least one environment")
    if len(set(steps)) != len(steps):
        raise ValueError(f"the pipeline names an environment twice: {text!r}")
    for step in steps:
        check_name(step, "environment")
    return steps


def parse_sections(text: str) -> tuple[str, ...]:
    """`tracing,queue` -> the default section names followed by these (each a valid name)."""
    from config_service.names import check_name

    added = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in added:
        check_name(name, "section")
    return tuple(dict.fromkeys(DEFAULT_SECTIONS + added))
