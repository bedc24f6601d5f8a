"""`AsyncConfigClient`: the asyncio twin of `ConfigClient`, on the same core."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

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
    run_transaction_async,
)
from client._core import make_settings as _make_settings
from client._lkg import write_lkg
from config_service.validation import SchemaSet

logger = logging.getLogger("client")


class AsyncConfigClient:
    """A service's config, kept current by an asyncio task; the twin of `ConfigClient`.

        client = AsyncConfigClient("user-service")
        await client.start()
        client.config.get("database.pool_size")

    Handlers may be plain functions or coroutines; both take `(new_section, old_section)`.
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
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = httpx.AsyncClient(transport=transport)
        self._apply_lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._stop_files: asyncio.Event | None = None
        self._report_tasks: set[asyncio.Task[None]] = set()
        self._events = EventStreamParser()

    # -- what a service reads

    @property
    def config(self) -> Config:
        """The current config; replaced atomically, so a reader sees the old or the new one whole."""
        config = self._core.config
        if config is None:
            raise RuntimeError("no config yet: await load() or start() first")
        return config

    @property
    def cache(self) -> Any:
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
        """Register `handler(new_section, old_section)` (function or coroutine) for a top-level key."""
        return self._core.on(section)

    # -- life cycle

    async def load(self) -> Config:
        """Get the config (server, else last-known-good, else the local file) and apply all of it."""
        config = self._core.from_file() if self.settings.mode == "files" else await self._initial()
        await self._apply(config)
        return config

    async def start(self) -> Config:
        """Load if not loaded yet, then keep the config current from a background task."""
        config = self._core.config or await self.load()
        if self._task is None:
            self._stopping = False
            if self.settings.mode == "files":
                self._stop_files = asyncio.Event()
                self._task = asyncio.create_task(self._watch_files(self._stop_files))
            else:
                self._task = asyncio.create_task(self._watch())
        return config

    async def stop(self) -> None:
        """Stop watching, deliver the pending reports (briefly), close connections."""
        self._stopping = True
        if self._stop_files is not None:
            self._stop_files.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("watching %s had stopped", self.settings.service)
            self._task = None
        if self._report_tasks:
            await asyncio.wait(self._report_tasks, timeout=2.0)
        await self._http.aclose()

    async def __aenter__(self) -> AsyncConfigClient:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # __aexit__ will not run: close the connections here
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    async def refresh(self, wait: float | None = None) -> bool:
        """Ask the server once for a newer version and apply it; True when a new version arrived."""
        received = self._core.read_config(await self._send(self._core.config_request(wait=wait)))
        if self._core.fallback_pending:
            self._core.fallback_pending = False
            self._report("fallback", self._core.config)
        if received is None or not self._core.is_news(received.version, received.hash, "server"):
            return False
        try:
            await self._apply(await self._prepare(received))
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

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TransportError as error:
            raise exceptions.ServerUnavailable(
                f"{request.method} {request.url.copy_with(query=None)}: {type(error).__name__}: {error}"
            ) from error

    async def _prepare(self, received: Received) -> Config:
        return self._core.build(received, "server", await self._schemas())

    async def _schemas(self) -> SchemaSet | None:
        """The service's compiled schema (fetched each time, compiled once per schema version)."""
        core = self._core
        answer = core.read_schema(await self._send(core.schema_request()), self.settings.service)
        if answer is None:
            return None
        known, compiled = core.cached_schemas(answer)
        if known:
            return compiled
        sections = {}
        for name in core.sections_to_fetch(answer):
            try:
                section = core.read_schema(await self._send(core.schema_request(name)), name)
            except exceptions.RequestRejected:
                continue
            if section is not None:
                sections[name] = section.schema
        return core.compile_schemas(answer, sections)

    async def _initial(self) -> Config:
        tried: list[str] = []
        try:
            received = self._core.read_config(
                await self._send(self._core.config_request(conditional=False))
            )
            assert received is not None  # an unconditional GET never answers 304
            config = await self._prepare(received)
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

    async def _apply(self, config: Config) -> None:
        async with self._apply_lock:
            if not self._core.is_news(config.version, config.hash, config.source):
                return  # another caller applied this very version meanwhile
            try:
                await run_transaction_async(self._core.transaction(config))
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
            try:
                # fsync can take milliseconds; the event loop keeps serving meanwhile.
                await asyncio.to_thread(
                    write_lkg,
                    self.settings.lkg_path,
                    service=config.service,
                    environment=config.environment,
                    version=config.version,
                    hash=config.hash,
                    wire=config.wire,
                )
            except OSError as error:
                logger.warning("last-known-good %s not written: %s", self.settings.lkg_path, error)
            self._report("applied", config)

    # -- reports, never blocking the service

    def _report(
        self, status: str, subject: Config | Received | None, error: str | None = None
    ) -> None:
        if self.settings.mode == "files" or self._stopping or len(self._report_tasks) >= 100:
            return
        task = asyncio.create_task(
            self._deliver_report(self._core.report_request(status, subject, error))
        )
        self._report_tasks.add(task)
        task.add_done_callback(self._report_tasks.discard)

    async def _deliver_report(self, request: httpx.Request) -> None:
        try:
            response = await self._http.send(request)
            await response.aclose()
        except (httpx.HTTPError, RuntimeError) as error:
            logger.debug("instance report not delivered: %s", error)

    # -- watching

    async def _watch(self) -> None:
        mode = self.settings.mode
        while True:
            started = time.monotonic()
            try:
                if mode == "sse":
                    await self._follow_events()
                    changed = False
                else:
                    changed = await self.refresh(wait=WATCH_WAIT if mode == "watch" else None)
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
                await asyncio.sleep(pause)

    async def _follow_events(self) -> None:
        await self.refresh()
        response = await self._send(
            self._core.events_request(self._events.last_event_id), stream=True
        )
        try:
            if response.status_code >= 400:
                await response.aread()
                raise_for_status(response, "GET /v1/events")
            self._core.retry.success()
            async for line in response.aiter_lines():
                event = self._events.feed(line)
                if event is not None and event.event == "version":
                    announced = json.loads(event.data).get("version")
                    if announced != self._core.seen_version:
                        await self.refresh()
        except httpx.TransportError as error:
            raise exceptions.ServerUnavailable(
                f"event stream: {type(error).__name__}: {error}"
            ) from error
        finally:
            await response.aclose()

    async def _watch_files(self, stop: asyncio.Event) -> None:
        path = self.settings.file_path.resolve()
        async for changes in watchfiles.awatch(
            path.parent,
            stop_event=stop,
            debounce=50,
            step=20,
            rust_timeout=250,
            yield_on_timeout=True,
        ):
            if any(Path(changed) == path for _, changed in changes) or self._core.file_changed():
                await self._reload_file()

    async def _reload_file(self) -> None:
        try:
            config = self._core.from_file()
        except exceptions.ConfigError as error:
            logger.error("%s not applied: %s", self.settings.file_path, error)
            return
        if self._core.is_news(config.version, config.hash, config.source):
            try:
                await self._apply(config)
            except exceptions.ApplyFailed:
                pass
