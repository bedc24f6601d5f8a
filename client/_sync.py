"""`ConfigClient`: loads a service's config and keeps it current from a background thread."""

from __future__ import annotations

import inspect
import json
import logging
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpcore
import httpx
import watchfiles

from client import exceptions
from client._appliers import CacheFactory, DatabaseApplier, SecurityPolicy
from client._config import Config
from client._core import (
    MIN_CHECK_INTERVAL,
    WATCH_WAIT,
    ClientCore,
    EventStreamParser,
    Handler,
    Received,
    RetryPolicy,
    Settings,
    raise_for_status,
    run_transaction,
)
from client._core import make_settings as _make_settings
from client._lkg import write_lkg
from config_service.validation import SchemaSet

logger = logging.getLogger("client")


class _InterruptibleBackend(httpcore.SyncBackend):
    """Remembers the sockets it opens, so `stop()` can end a long poll the server is holding.

    Closing a socket does not wake a thread blocked reading it; shutting it down does.
    """

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[httpcore.NetworkStream] = weakref.WeakSet()

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        stream = super().connect_tcp(*args, **kwargs)
        self._streams.add(stream)
        return stream

    def interrupt(self) -> None:
        for stream in list(self._streams):
            raw = stream.get_extra_info("socket")
            if isinstance(raw, socket.socket):
                try:
                    raw.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _default_transport() -> tuple[httpx.HTTPTransport, _InterruptibleBackend | None]:
    transport = httpx.HTTPTransport()
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        return transport, None  # another httpx layout: stop() then waits for the poll to end
    backend = _InterruptibleBackend()
    pool._network_backend = backend
    return transport, backend


class ConfigClient:
    """A service's config, loaded once and then kept current by a background thread.

        client = ConfigClient("user-service")
        @client.on("features")
        def features_changed(new, old): ...
        client.start()            # load (server -> cache -> file), then watch
        client.config.get("database.pool_size")

    `mode` is `"watch"` (long polls, the default), `"poll"` (every `poll_interval` seconds),
    `"sse"` (server-sent events) or `"files"` (no server: the local TSK file, hot-reloaded).
    """

    def __init__(
        self,
        service: str,
        environment: str | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        environments_dir: str | os.PathLike[str] | None = None,
        mode: str = "watch",
        poll_interval: float = 30.0,
        database: DatabaseApplier | None = None,
        cache_backends: Mapping[str, CacheFactory] | None = None,
        retry: RetryPolicy | None = None,
        instance_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = _make_settings(
            service,
            environment,
            server=server,
            token=token,
            cache_dir=cache_dir,
            environments_dir=environments_dir,
            mode=mode,
            poll_interval=poll_interval,
            instance_id=instance_id,
        )
        self._core = ClientCore(
            settings, database=database, cache_backends=cache_backends, retry=retry
        )
        self._interruptible: _InterruptibleBackend | None = None
        if transport is None:
            transport, self._interruptible = _default_transport()
        self._http = httpx.Client(transport=transport)
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reports: queue.Queue[httpx.Request | None] = queue.Queue(maxsize=100)
        self._reporter: threading.Thread | None = None
        self._events = EventStreamParser()

    # -- what a service reads

    @property
    def config(self) -> Config:
        """The current config; replaced atomically, so a reader sees the old or the new one whole."""
        config = self._core.config
        if config is None:
            raise RuntimeError("no config yet: call load() or start() first")
        return config

    @property
    def cache(self) -> Any:
        """The service's cache (a `TTLCache` for `backend: "memory"`), kept in step with the cache section."""
        return self._core.cache.current

    @property
    def security(self) -> SecurityPolicy:
        return self._core.security

    @property
    def database(self) -> DatabaseApplier:
        return self._core.database

    @property
    def settings(self) -> Settings:
        return self._core.settings

    @property
    def retry(self) -> RetryPolicy:
        return self._core.retry

    def on(self, section: str) -> Callable[[Handler], Handler]:
        """Register `handler(new_section, old_section)` for a top-level key; runs after the built-ins."""
        register = self._core.on(section)

        def plain_only(handler: Handler) -> Handler:
            if inspect.iscoroutinefunction(handler):
                raise TypeError(
                    f"{handler.__qualname__} is a coroutine function; ConfigClient calls handlers "
                    "in its thread, so use a plain function here or AsyncConfigClient"
                )
            return register(handler)

        return plain_only

    # -- life cycle

    def load(self) -> Config:
        """Get the config (server, else last-known-good, else the local file) and apply all of it."""
        config = self._core.from_file() if self.settings.mode == "files" else self._initial()
        self._apply(config)
        return config

    def start(self) -> Config:
        """Load if not loaded yet, then keep the config current from a background thread."""
        config = self._core.config or self.load()
        if self._thread is None:
            self._stop.clear()
            target = self._watch_files if self.settings.mode == "files" else self._watch
            self._thread = threading.Thread(
                target=target, name=f"tskcfg-{self.settings.service}", daemon=True
            )
            self._thread.start()
        return config

    def stop(self) -> None:
        """Stop watching, deliver the pending reports (briefly), close connections."""
        self._stop.set()
        if self._reporter is not None:
            try:
                self._reports.put(None, timeout=1.0)
            except queue.Full:
                pass
            self._reporter.join(timeout=2.0)
        if self._interruptible is not None:
            self._interruptible.interrupt()  # ends a long poll in flight, so the thread exits now
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._http.close()

    def __enter__(self) -> ConfigClient:
        try:
            self.start()
        except BaseException:
            self.stop()  # __exit__ will not run: close the connections here
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def refresh(self, wait: float | None = None) -> bool:
        """Ask the server once for a newer version and apply it; True when a new version arrived."""
        received = self._core.read_config(self._send(self._core.config_request(wait=wait)))
        if self._core.fallback_pending:
            self._core.fallback_pending = False
            self._report("fallback", self._core.config)
        if received is None or not self._core.is_news(received.version, received.hash, "server"):
            return False
        try:
            self._apply(self._prepare(received))
        except exceptions.InvalidConfig as error:
            logger.error(
                "version %s of %s not applied: %s", received.version, self.settings.service, error
            )
            self._report("failed", received, str(error))
        except exceptions.ApplyFailed:
            pass  # logged, reverted and reported by _apply
        self._core.seen_version = received.version
        return True

    # -- I/O

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as error:
            raise exceptions.ServerUnavailable(
                f"{request.method} {request.url.copy_with(query=None)}: {type(error).__name__}: {error}"
            ) from error

    def _prepare(self, received: Received) -> Config:
        return self._core.build(received, "server", self._schemas())

    def _schemas(self) -> SchemaSet | None:
        """The service's compiled schema (fetched each time, compiled once per schema version)."""
        core = self._core
        answer = core.read_schema(self._send(core.schema_request()), self.settings.service)
        if answer is None:
            return None
        known, compiled = core.cached_schemas(answer)
        if known:
            return compiled
        sections = {}
        for name in core.sections_to_fetch(answer):
            try:
                section = core.read_schema(self._send(core.schema_request(name)), name)
            except exceptions.RequestRejected:
                continue
            if section is not None:
                sections[name] = section.schema
        return core.compile_schemas(answer, sections)

    def _initial(self) -> Config:
        tried: list[str] = []
        try:
            received = self._core.read_config(
                self._send(self._core.config_request(conditional=False))
            )
            assert received is not None  # an unconditional GET never answers 304
            config = self._prepare(received)
            self._core.seen_version = received.version
            return config
        except exceptions.ServerUnavailable as error:
            tried.append(f"server {self.settings.server}: {error}")
        except exceptions.InvalidConfig as error:
            # Only _prepare raises InvalidConfig, so `received` is bound here.
            logger.error("the server's version of %s not applied: %s", self.settings.service, error)
            self._report("failed", received, str(error))
            self._core.seen_version = received.version  # type: ignore[union-attr]
            tried.append(f"server {self.settings.server}: {error}")
        config = self._core.fallback(tried)
        self._core.fallback_pending = True
        return config

    def _apply(self, config: Config) -> None:
        with self._apply_lock:
            if not self._core.is_news(config.version, config.hash, config.source):
                return  # another caller applied this very version meanwhile
            try:
                run_transaction(self._core.transaction(config))
            except exceptions.ApplyFailed as error:
                logger.error(
                    "%s; version %s stays current",
                    error,
                    getattr(self._core.config, "version", None),
                )
                self._report("failed", config, str(error))
                raise
            self._core.config = config
        if config.source == "server":
            self._remember(config)
            self._report("applied", config)

    def _fetch(self) -> Config:
        """The config as `load()` finds it, without applying it (what `load_config` returns)."""
        config = self._initial()
        if config.source == "server":
            self._remember(config)
        return config

    def _remember(self, config: Config) -> None:
        try:
            write_lkg(
                self.settings.lkg_path,
                service=config.service,
                environment=config.environment,
                version=config.version,
                hash=config.hash,
                wire=config.wire,
            )
        except OSError as error:
            logger.warning("last-known-good %s not written: %s", self.settings.lkg_path, error)

    # -- reports, never blocking the service

    def _report(
        self, status: str, subject: Config | Received | None, error: str | None = None
    ) -> None:
        if self.settings.mode == "files" or self._stop.is_set():
            return
        try:
            self._reports.put_nowait(self._core.report_request(status, subject, error))
        except queue.Full:
            logger.debug("report queue full; %s report dropped", status)
            return
        if self._reporter is None:
            self._reporter = threading.Thread(
                target=self._deliver_reports, name="tskcfg-reports", daemon=True
            )
            self._reporter.start()

    def _deliver_reports(self) -> None:
        while (request := self._reports.get()) is not None:
            try:
                self._http.send(request).close()
            except (httpx.HTTPError, RuntimeError) as error:
                logger.debug("instance report not delivered: %s", error)

    # -- watching

    def _watch(self) -> None:
        mode = self.settings.mode
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if mode == "sse":
                    self._follow_events()
                    changed = False
                else:
                    changed = self.refresh(wait=WATCH_WAIT if mode == "watch" else None)
                self._core.retry.success()
                if mode == "poll":
                    pause = self.settings.poll_interval
                else:
                    pause = (
                        0.0
                        if changed
                        else max(0.0, MIN_CHECK_INTERVAL - (time.monotonic() - started))
                    )
            except Exception as error:
                if self._stop.is_set():
                    return
                pause = self._core.retry.failure()
                if isinstance(error, exceptions.ConfigError):
                    logger.warning(
                        "watching %s: %s; next try in %.1f s", self.settings.service, error, pause
                    )
                else:
                    logger.exception(
                        "watching %s failed; next try in %.1f s", self.settings.service, pause
                    )
            if pause:
                self._stop.wait(pause)

    def _follow_events(self) -> None:
        self.refresh()
        response = self._send(self._core.events_request(self._events.last_event_id), stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                raise_for_status(response, "GET /v1/events")
            self._core.retry.success()
            for line in response.iter_lines():
                event = self._events.feed(line)
                if self._stop.is_set():
                    return
                if event is not None and event.event == "version":
                    announced = json.loads(event.data).get("version")
                    if announced != self._core.seen_version:
                        self.refresh()
        except httpx.TransportError as error:
            raise exceptions.ServerUnavailable(
                f"event stream: {type(error).__name__}: {error}"
            ) from error
        finally:
            response.close()

    def _watch_files(self) -> None:
        path = self.settings.file_path.resolve()
        try:
            for changes in watchfiles.watch(
                path.parent,
                stop_event=self._stop,
                debounce=50,
                step=20,
                rust_timeout=250,
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                if (
                    any(Path(changed) == path for _, changed in changes)
                    or self._core.file_changed()
                ):
                    self._reload_file()
        except Exception:
            # Say so rather than die silently in a thread; the last config stays current.
            logger.exception("watching %s stopped; the current config stays", path)

    def _reload_file(self) -> None:
        try:
            config = self._core.from_file()
        except exceptions.ConfigError as error:
            logger.error("%s not applied: %s", self.settings.file_path, error)
            return
        if self._core.is_news(config.version, config.hash, config.source):
            try:
                self._apply(config)
            except exceptions.ApplyFailed:
                pass
