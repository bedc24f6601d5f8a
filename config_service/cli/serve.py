"""`tskcfg serve`: run the config server with uvicorn (uvloop, httptools), in one process or `--workers N`."""

from __future__ import annotations

import gc
import importlib.metadata
import logging
import resource
import socket
import sys
from pathlib import Path
from typing import Any

import click

from config_service.cli._group import main
from config_service.cli._workers import MAX_WORKERS, bind, supervise
from config_service.settings import Settings, parse_pipeline, parse_sections
from config_service.store.data_folder import DataFolderInUse, lock_data_folder, open_to_others
from config_service.store.sqlite_schema import StoreTooNew, refuse_newer
from config_service.store.urls import parse_store_url

logger = logging.getLogger("config_service")


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # One line per record; access lines carry a JSON object as their message.
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger("config_service")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _option(*names: str, envvar: str, **kwargs: Any) -> Any:
    """A `serve` option that its `TSKCFG_*` variable sets too; the flag wins over the variable."""
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


@main.command()
@_option("--host", envvar="TSKCFG_HOST", default=None, help="Address to listen on (default 127.0.0.1).")
@_option("--port", envvar="TSKCFG_PORT", type=int, default=None, help="Port (default 8005).")
@_option(
    "--data-dir", envvar="TSKCFG_DATA_DIR", type=click.Path(path_type=Path), default=None,
    help="Where config.db and admin.token live (default ./data); with a PostgreSQL --store, only admin.token.",
)
@_option(
    "--store", envvar="TSKCFG_STORE", default=None,
    help="Store URL: postgresql://user@host/db for replicas sharing PostgreSQL, or "
    "sqlite:///path/config.db (default: SQLite in --data-dir).",
)
@_option(
    "--environments", "environments_dir", envvar="TSKCFG_ENVIRONMENTS", type=click.Path(path_type=Path),
    default=None, help="Folder of <environment>/<service>.tsk documents (default ./environments).",
)
@_option(
    "--schemas", "schemas_dir", envvar="TSKCFG_SCHEMAS", type=click.Path(path_type=Path), default=None,
    help="Folder of <name>.json schemas (default ./schemas).",
)
@_option(
    "--pipeline", envvar="TSKCFG_PIPELINE", default=None,
    help="Environments in promotion order (default development,staging,production).",
)
@_option(
    "--sections", envvar="TSKCFG_SECTIONS", default=None,
    help="Section schemas to add to database,cache,logging,security (comma-separated).",
)
@_option(
    "--sync/--no-sync", envvar="TSKCFG_SYNC", default=True,
    help="Import and watch environments/ and schemas/ (default: on).",
)
@_option("--max-body", envvar="TSKCFG_MAX_BODY", type=int, default=None,
         help="Largest request body in bytes (default 1 MiB).")
@_option("--max-message", envvar="TSKCFG_MAX_MESSAGE", type=int, default=None,
         help="Longest version message in bytes of UTF-8 (default 4096).")
@_option(
    "--max-connections", envvar="TSKCFG_MAX_CONNECTIONS", type=int, default=None,
    help="Open connections; more are closed at once (default 16384).",
)
@_option(
    "--body-timeout", envvar="TSKCFG_BODY_TIMEOUT", type=float, default=None,
    help="Seconds a request body may take after its head before a 408 (default 30).",
)
@_option("--workers", envvar="TSKCFG_WORKERS", type=int, default=None,
         help="Server processes sharing the port and the store (default 1; docs/replicas.md).")
@_option(
    "--instance-report-interval", envvar="TSKCFG_INSTANCE_REPORT_INTERVAL", type=float, default=None,
    help="Seconds between an instance's reports; silent for 3 intervals is stale (default 60).",
)
@_option(
    "--max-instances", envvar="TSKCFG_MAX_INSTANCES", type=int, default=None,
    help="Instances remembered per document (default 1000).",
)
@_option(
    "--instance-reports-per-minute", envvar="TSKCFG_INSTANCE_REPORTS_PER_MINUTE", type=int, default=None,
    help="Instance reports one token may send in a minute (default 6000).",
)
@_option(
    "--session-idle", envvar="TSKCFG_SESSION_IDLE", type=float, default=None,
    help="Seconds a console session may stay unused before it ends (default 1800).",
)
@_option(
    "--trusted-proxy", "trusted_proxies", envvar="TSKCFG_TRUSTED_PROXY", multiple=True,
    help="Address of a reverse proxy whose X-Forwarded-Proto counts (repeatable; the console's "
    "cookie is Secure when it says https).",
)
@_option("--log-level", envvar="TSKCFG_LOG_LEVEL", default=None,
         help="debug, info, warning or error (default info).")
@_option(
    "--access-log/--no-access-log", envvar="TSKCFG_ACCESS_LOG", default=True,
    help="Log one line per request (default: on).",
)
@_option(
    "--open-services/--closed-services", envvar="TSKCFG_OPEN_SERVICES", default=False,
    help="Let a push create the service it names (local work; default: off, an admin creates "
    "services).",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    store: str | None,
    environments_dir: Path | None,
    schemas_dir: Path | None,
    pipeline: str | None,
    sections: str | None,
    sync: bool,
    max_body: int | None,
    max_message: int | None,
    max_connections: int | None,
    body_timeout: float | None,
    workers: int | None,
    instance_report_interval: float | None,
    max_instances: int | None,
    instance_reports_per_minute: int | None,
    session_idle: float | None,
    trusted_proxies: tuple[str, ...],
    log_level: str | None,
    access_log: bool,
    open_services: bool,
) -> None:
    """Run the config server (Ctrl-C stops it)."""
    try:
        settings = Settings().with_overrides(
            host=host,
            port=port,
            data_dir=data_dir,
            store=store,
            environments_dir=environments_dir,
            schemas_dir=schemas_dir,
            pipeline=parse_pipeline(pipeline) if pipeline is not None else None,
            sections=parse_sections(sections) if sections is not None else None,
            sync=sync,
            max_body=max_body,
            max_message=max_message,
            max_connections=max_connections,
            body_timeout=body_timeout,
            workers=workers,
            instance_report_interval=instance_report_interval,
            max_instances_per_document=max_instances,
            instance_reports_per_minute=instance_reports_per_minute,
            session_idle=session_idle,
            trusted_proxies=tuple(trusted_proxies) or None,
            log_level=log_level.lower() if log_level is not None else None,
            access_log=access_log,
            open_services=open_services,
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise click.UsageError(
            f"--workers must be a number of processes from 1 to {MAX_WORKERS}, not {settings.workers}"
        )
    store_url = None
    if settings.store is not None:
        try:
            store_url = parse_store_url(settings.store)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
    if settings.max_body < 1:
        raise click.UsageError("--max-body must be a positive number of bytes")
    if settings.max_connections < 1:
        raise click.UsageError("--max-connections must be a positive number of connections")
    if not 0 < settings.body_timeout < float("inf"):
        raise click.UsageError("--body-timeout must be a positive number of seconds")
    if not 0 < settings.session_idle < float("inf"):
        raise click.UsageError("--session-idle must be a positive number of seconds")
    _configure_logging(settings.log_level)
    store_lock = None
    # Held until this process ends: a second server on the same folder would diverge silently.
    try:
        data_lock = lock_data_folder(settings.data_dir)
        # A SQLite file named by --store elsewhere is held the same way.
        if store_url is not None and store_url.path is not None:
            folder = store_url.path.parent
            if folder.resolve() != settings.data_dir.resolve():
                store_lock = lock_data_folder(folder)
    except DataFolderInUse as error:
        raise click.ClickException(str(error)) from None
    try:
        if store_url is None:
            refuse_newer(settings.database_path)
        elif store_url.path is not None:
            refuse_newer(store_url.path)
    except StoreTooNew as error:
        raise click.ClickException(str(error)) from None
    _warn_if_open_to_others(settings.data_dir)

    _raise_open_file_limit(settings.max_connections)
    # Imported before any worker is forked, so each starts with the modules loaded.
    from config_service.http.app import create_app  # noqa: F401

    store = store_url.shown() if store_url is not None else str(settings.database_path)
    if settings.workers == 1:
        logger.info(
            "serving on http://%s:%d (store %s, data in %s)",
            settings.host, settings.port, store, settings.data_dir,
        )
        status = _run(settings, None)
    else:
        try:
            listener = bind(settings.host, settings.port, BACKLOG)
        except OSError as error:
            data_lock.release()
            if store_lock is not None:
                store_lock.release()
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
            ) from None
        logger.info(
            "serving on http://%s:%d with %d worker processes (store %s, data in %s)",
            settings.host, settings.port, settings.workers, store, settings.data_dir,
        )
        status = supervise(settings.workers, listener, lambda index, shared: _run(settings, shared))
    data_lock.release()
    if store_lock is not None:
        store_lock.release()
    if status:
        sys.exit(status)


# Thousands of watchers may reconnect at once after a restart.
BACKLOG = 4096


def _run(settings: Settings, listener: socket.socket | None) -> int:
    """Serve in this process (on `listener`, shared with the other workers, when given) until
    told to stop; the exit status."""
    import uvicorn

    from config_service.http.app import create_app

    app = create_app(settings)
    _warn_about_missing_internals()
    http = _http_protocol(app)
    _tune_garbage_collector()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools with bounds on connections (uvicorn has few for httptools), answering
        # config reads and parking long polls itself (config_service/http1/protocol.py).
        http=http,
        access_log=False,
        # Only --trusted-proxy names proxies whose X-Forwarded-* count (the console reads
        # X-Forwarded-Proto itself); uvicorn would otherwise trust any local process.
        proxy_headers=False,
        log_level=settings.log_level,
        lifespan="on",
        backlog=BACKLOG,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=None if listener is None else [listener])
    # As uvicorn.run: a server that never started (its lifespan failed) is a failure.
    return 0 if server.started else 3


def _warn_if_open_to_others(folder: Path) -> None:
    """A folder the operator made (not created 0700 here) may let other users read the store."""
    for path in (folder, folder / "config.db"):
        mode = open_to_others(path) if path.exists() else None
        if mode is not None:
            logger.warning(
                "%s has mode %o: other users of this machine may read documents and token "
                "hashes; chmod %s it", path, mode, "700" if path.is_dir() else "600",
            )


def _http_protocol(app: Any) -> Any:
    """The protocol factory of `config_service/http1/protocol.py` for `app`, or uvicorn's plain
    httptools protocol when this uvicorn lacks the internals it builds on (said loudly: bounds
    and the hot path are off)."""
    try:
        from config_service.http1.internals import missing_uvicorn_internals
        from config_service.http1.protocol import protocol_for

        missing = missing_uvicorn_internals()
    except ImportError as error:
        missing = [f"an import failed ({error})"]
    if not missing:
        return protocol_for(app)
    logger.warning(
        "uvicorn %s lacks internals this server builds on (%s): serving with uvicorn's plain "
        "httptools protocol, so the hot read path is off and so are the bounds on request heads "
        "and bodies, pipelining and open connections (--max-connections, --body-timeout); "
        "install a uvicorn version in the range pyproject.toml names",
        _version_of("uvicorn"),
        "; ".join(missing),
    )
    return "httptools"


def _warn_about_missing_internals() -> None:
    """Say at start when jsonschema lacks the private resolver validation builds on."""
    from config_service.schema import keywords

    missing = keywords.JSONSCHEMA_INTERNALS_MISSING
    if missing is not None:
        logger.warning(
            "jsonschema %s lacks internals this server builds on (%s): unevaluatedProperties is "
            "checked by jsonschema's own keyword, whose patternProperties run on Python's re rather "
            "than RE2; install a jsonschema version in the range pyproject.toml names",
            _version_of("jsonschema"),
            missing,
        )


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _raise_open_file_limit(max_connections: int) -> None:
    """Let the process hold `max_connections` sockets: each is an open file, and past the limit
    accepting fails with errors instead of the clean refusal `--max-connections` gives."""
    wanted = max_connections + 256  # the store, logs, watched folders and some to spare
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft < wanted:
        logger.warning(
            "this process may open only %d files, fewer than --max-connections %d needs; "
            "raise the limit (ulimit -n) or lower --max-connections",
            soft,
            max_connections,
        )


def _tune_garbage_collector() -> None:
    """Keep full collections out of a watcher fan-out.

    Idle watchers are many long-lived objects; a full collection that walks 10,000 of them
    in the middle of waking them costs hundreds of milliseconds (bench/propagation.py).
    What start-up made is frozen out of collection, and the young generation is collected
    after 50,000 allocations instead of 700: cycles are still freed, in fewer, larger passes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
