"""`AsyncConfigClient`: the asyncio twin of `ConfigClient`, on the same core."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import watchfiles

from tskcfg import exceptions
from tskcfg._base import BaseClient
from tskcfg._config import Config
from tskcfg._effects import (
    REENTRANT_APPLY,
    Blocking,
    Call,
    Exclusive,
    Offload,
    Report,
    Send,
    drive_async,
)
from tskcfg._requests import seconds_allowed
from tskcfg._settings import WATCH_WAIT, tls_verification
from tskcfg._watching import announces_news, pause_after_check, pause_after_failure

logger = logging.getLogger("tskcfg")


class AsyncConfigClient(BaseClient[httpx.AsyncBaseTransport]):
    """A service's config, kept current by an asyncio task; the twin of `ConfigClient`.

        client = AsyncConfigClient("user-service")
        await client.start()
        client.config.get("database.pool_size")

    Handlers may be plain functions or coroutines; both take `(new_section, old_section)`.
    """

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(
            transport=transport, verify=tls_verification(self.settings.servers)
        )
        self._apply_lock = asyncio.Lock()
        self._applying: asyncio.Task[Any] | None = None  # the task holding _apply_lock
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._stop_files: asyncio.Event | None = None
        # One reporter task sends the reports in the order they were made, like the thread of
        # ConfigClient: `failed` then `fallback` must not reach the server the other way round.
        self._reports: asyncio.Queue[httpx.Request | None] = asyncio.Queue(maxsize=100)
        self._reporter: asyncio.Task[None] | None = None

    # -- life cycle

    async def load(self) -> Config:
        """Get the config (server, else last-known-good, else the local file) and apply all of it."""
        return await drive_async(self._core.load_flow(), self._perform)

    async def start(self) -> Config:
        """Load if not loaded yet, then keep the config current from a background task."""
        if self._stopping or self._http.is_closed:
            raise RuntimeError("this client was stopped; make a new one to start again")
        config = self._core.config or await self.load()
        if self._stopping:  # stop() came while loading: watch nothing
            raise RuntimeError("this client was stopped while it was starting")
        if self._task is None:
            if self.settings.mode == "files":
                self._stop_files = asyncio.Event()
                self._task = asyncio.create_task(self._watch_files(self._stop_files))
            else:
                self._task = asyncio.create_task(self._watch())
        return config

    async def stop(self) -> None:
        """Stop watching, finish an apply in progress (its last-known-good write too), report
        `stopped` and deliver the pending reports (briefly), close connections."""
        if not self._stopping and self._core.config is not None:
            self._report(Report("stopped", self._core.config))
        self._stopping = True
        if self._stop_files is not None:
            self._stop_files.set()
        task, self._task = self._task, None
        current = asyncio.current_task()
        if task is not None and task is not current:  # a handler may stop its own client
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if current is not None and current.cancelling():
                    raise  # stop() itself was cancelled, not only the watch
            except Exception:
                logger.exception("watching %s had stopped", self.settings.service)
        if self._applying is None or self._applying is not current:
            # An apply made by another task (load(), refresh()) writes its last-known-good
            # file under the apply lock: once the lock is free, the write is on disk.
            try:
                async with asyncio.timeout(5.0), self._apply_lock:
                    pass
            except TimeoutError:
                logger.warning("stopping %s: an apply still runs after 5 s", self.settings.service)
        reporter, self._reporter = self._reporter, None
        if reporter is not None and reporter is not current:
            try:
                self._reports.put_nowait(None)
            except asyncio.QueueFull:
                pass
            # Reports the server did not take in time are dropped, not left running on a closed client.
            await asyncio.wait([reporter], timeout=2.0)
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
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
        return await drive_async(self._core.refresh_flow(wait), self._perform)

    # -- I/O: the effects the core's flows ask for

    async def _perform(self, effect: Any) -> Any:
        if isinstance(effect, Send):
            return await self._send(effect.request, stream=effect.stream)
        if isinstance(effect, Report):
            self._report(effect)
            return None
        if isinstance(effect, Offload):
            # fsync can take milliseconds; the event loop keeps serving meanwhile. A cancelled
            # task (stop()) still waits for it: the last-known-good write of an applied
            # version is on disk before stop() returns.
            running = asyncio.ensure_future(asyncio.to_thread(effect.function))
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                await _until_done(running)
                raise
        if isinstance(effect, Blocking):
            return await _in_thread(effect)
        if isinstance(effect, Exclusive):
            task = asyncio.current_task()
            if self._applying is task:
                effect.flow.close()
                raise RuntimeError(REENTRANT_APPLY)
            async with self._apply_lock:
                self._applying = task
                try:
                    return await drive_async(effect.flow, self._perform)
                finally:
                    self._applying = None
        if not isinstance(effect, Call):
            raise TypeError(f"not an effect: {effect!r}")
        result = effect()  # an applier or handler call; handlers may be coroutines
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send and read the whole answer within its deadline and the size limit; `stream`:
        only the head of a success is bounded so (an event stream goes on for as long as it is
        useful), an error answer is read whole."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(seconds_allowed(request)):
                response = await self._http.send(request, stream=True)
                if stream and response.status_code < 400:
                    return response
                try:
                    body = self._core.requests.bounded_body(request, response, started)
                    async for chunk in response.aiter_bytes():
                        body.add(chunk)
                finally:
                    await response.aclose()
                return body.complete()
        except TimeoutError as error:
            raise exceptions.ServerUnavailable(
                f"{request.method} {request.url.copy_with(query=None)}: "
                "the answer did not arrive in full within the client's timeout"
            ) from error
        except httpx.TransportError as error:
            raise exceptions.ServerUnavailable(
                f"{request.method} {request.url.copy_with(query=None)}: {type(error).__name__}: {error}"
            ) from error

    # -- reports, never blocking the service

    def _report(self, report: Report) -> None:
        if self.settings.mode == "files" or self._stopping:
            return
        request = self._core.report_request(report)
        try:
            self._reports.put_nowait(request)
        except asyncio.QueueFull:
            logger.debug("report queue full; %s report dropped", report.status)
            return
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._deliver_reports())

    async def _deliver_reports(self) -> None:
        while True:
            try:
                request = await asyncio.wait_for(
                    self._reports.get(), timeout=self.settings.report_interval
                )
            except TimeoutError:
                # A whole interval without news: the same report again, as a sign of life.
                request = self._core.repeated_report_request()
                if request is None:
                    continue
            else:
                if request is None:
                    return
            try:
                # Streamed and closed unread: the answer to a report is not worth any memory.
                response = await self._http.send(request, stream=True)
                await response.aclose()
            except (httpx.HTTPError, RuntimeError) as error:
                logger.debug("instance report not delivered: %s", error)

    # -- watching

    async def _watch(self) -> None:
        mode = self.settings.mode
        while not self._stopping:  # stop() cancels this task, or a handler stopped the client
            started = time.monotonic()
            try:
                if mode == "sse":
                    await self._follow_events()
                    changed = False
                else:
                    changed = await self.refresh(wait=WATCH_WAIT if mode == "watch" else None)
                pause = pause_after_check(
                    self.settings, self.retry, changed, time.monotonic() - started
                )
            except Exception as error:
                if self._stopping:
                    return
                pause = pause_after_failure(self.settings, self.retry, error)
            if pause:
                await asyncio.sleep(pause)

    async def _follow_events(self) -> None:
        response = await drive_async(
            self._core.events_flow(self._events.last_event_id), self._perform
        )
        try:
            # The server subscribed us before answering: catching up now misses nothing,
            # a version pushed meanwhile also arrives as an event.
            await self.refresh()
            self._core.retry.success()
            async for line in response.aiter_lines():
                event = self._events.feed(line)
                if announces_news(event, self._core.seen_version):
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
            if any(Path(changed) == path for _, changed in changes) or self._core.local.file_changed():
                await self._reload_file()

    async def _reload_file(self) -> None:
        await drive_async(self._core.reload_file_flow(), self._perform)


async def _in_thread(effect: Blocking) -> Any:
    """Run a blocking step in a worker thread; on cancellation, finish and undo it first."""
    running = asyncio.ensure_future(asyncio.to_thread(effect.function))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        # The thread cannot be stopped: wait for it, so the step is either undone here or never
        # happened, and the cancellation then reverts the steps before it.
        await _until_done(running)
        if effect.undo is not None and not running.cancelled() and running.exception() is None:
            undoing = asyncio.ensure_future(asyncio.to_thread(effect.undo))
            await _until_done(undoing)
            if undoing.exception() is not None:
                logger.error("undoing a step of a cancelled apply failed", exc_info=undoing.exception())
        raise


async def _until_done(future: asyncio.Future[Any]) -> None:
    """Wait for `future` whatever further cancellations arrive (the caller re-raises the first)."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue
        except Exception:
            return
