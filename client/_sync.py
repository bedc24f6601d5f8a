"""`ConfigClient`: loads a service's config and keeps it current from a background thread."""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import watchfiles

from tskcfg import exceptions
from tskcfg._base import BaseClient
from tskcfg._config import Config
from tskcfg._effects import REENTRANT_APPLY, Blocking, Call, Exclusive, Offload, Report, Send, drive
from tskcfg._interruptible import interruptible
from tskcfg._requests import seconds_allowed
from tskcfg._settings import WATCH_WAIT, tls_verification
from tskcfg._transaction import Handler
from tskcfg._watching import announces_news, pause_after_check, pause_after_failure

logger = logging.getLogger("tskcfg")


class ConfigClient(BaseClient[httpx.BaseTransport]):
    """A service's config, loaded once and then kept current by a background thread.

        client = ConfigClient("user-service")
        @client.on("features")
        def features_changed(new, old): ...
        client.start()            # load (server -> cache -> file), then watch
        client.config.get("database.pool_size")

    `mode` is `"watch"` (long polls, the default), `"poll"` (every `poll_interval` seconds),
    `"sse"` (server-sent events) or `"files"` (no server: the local TSK file, hot-reloaded).
    """

    def _open(self, transport: httpx.BaseTransport | None) -> None:
        if transport is None:
            transport = httpx.HTTPTransport(verify=tls_verification(self.settings.servers))
        self._interruptible = interruptible(transport)
        self._http = httpx.Client(transport=transport)
        self._apply_lock = threading.Lock()
        self._applying: int | None = None  # the thread holding _apply_lock
        # start() calls one at a time; _life guards the threads, which stop() reads without
        # waiting for a start() that is still loading.
        self._start_lock = threading.Lock()
        self._life = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reports: queue.Queue[httpx.Request | None] = queue.Queue(maxsize=100)
        self._reporter: threading.Thread | None = None

    def on(self, section: str) -> Callable[[Handler], Handler]:
        """Register `handler(new_section, old_section)` for a top-level key; runs after the built-ins."""
        register = super().on(section)

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
        return drive(self._core.load_flow(), self._perform)

    def start(self) -> Config:
        """Load if not loaded yet, then keep the config current from a background thread."""
        with self._start_lock:
            if self._stop.is_set():
                raise RuntimeError("this client was stopped; make a new one to start again")
            config = self._core.config or self.load()
            with self._life:
                if self._stop.is_set():  # stop() came while loading: watch nothing
                    raise RuntimeError("this client was stopped while it was starting")
                if self._thread is None:
                    target = self._watch_files if self.settings.mode == "files" else self._watch
                    self._thread = threading.Thread(
                        target=target, name=f"tskcfg-{self.settings.service}", daemon=True
                    )
                    self._thread.start()
        return config

    def stop(self) -> None:
        """Stop watching, finish an apply in progress (its last-known-good write too), report
        `stopped` and deliver the pending reports (briefly), close connections."""
        if not self._stop.is_set() and self._core.config is not None:
            self._report(Report("stopped", self._core.config))
        self._stop.set()
        with self._life:
            reporter, self._reporter = self._reporter, None
        if reporter is not None:
            try:
                self._reports.put(None, timeout=1.0)
            except queue.Full:
                # The server is not taking reports: drop the pending ones, so the reporter
                # sees the end rather than waiting on an empty queue forever.
                self._drop_reports()
            reporter.join(timeout=2.0)
        if self._interruptible is not None:
            self._interruptible.interrupt()  # ends a long poll in flight, so the thread exits now
        with self._life:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        # An apply made by another caller (load(), refresh()) writes its last-known-good file
        # under the apply lock: once the lock is free, the write is on disk.
        if self._applying != threading.get_ident() and self._apply_lock.acquire(timeout=5.0):
            self._apply_lock.release()
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
        return drive(self._core.refresh_flow(wait), self._perform)

    # -- I/O: the effects the core's flows ask for

    def _perform(self, effect: Any) -> Any:
        if isinstance(effect, Send):
            return self._send(effect.request, stream=effect.stream)
        if isinstance(effect, Report):
            self._report(effect)
            return None
        if isinstance(effect, Offload):
            return effect.function()
        if isinstance(effect, Exclusive):
            if self._applying == threading.get_ident():
                effect.flow.close()
                raise RuntimeError(REENTRANT_APPLY)
            with self._apply_lock:
                self._applying = threading.get_ident()
                try:
                    return drive(effect.flow, self._perform)
                finally:
                    self._applying = None
        if isinstance(effect, Call | Blocking):
            return effect()  # an applier or handler call, in this thread
        raise TypeError(f"not an effect: {effect!r}")

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send and read the whole answer within its deadline and the size limit; `stream`:
        only the head of a success is bounded so (an event stream goes on for as long as it is
        useful), an error answer is read whole."""
        started = time.monotonic()
        deadline = started + seconds_allowed(request)
        try:
            with self._deadline(deadline):
                response = self._http.send(request, stream=True)
                if stream and response.status_code < 400:
                    return response
                try:
                    body = self._core.requests.bounded_body(request, response, started)
                    for chunk in response.iter_bytes():
                        body.add(chunk)
                finally:
                    response.close()
                return body.complete()
        except httpx.TransportError as error:
            raise exceptions.ServerUnavailable(
                f"{request.method} {request.url.copy_with(query=None)}: {type(error).__name__}: {error}"
            ) from error

    def _deadline(self, at: float) -> Any:
        if self._interruptible is None:  # another transport: the body's reads are still bounded
            return contextlib.nullcontext()
        return self._interruptible.deadline(at)

    def _fetch(self) -> Config:
        """The config as `load()` finds it, without applying it (what `load_config` returns)."""
        return drive(self._core.fetch_flow(), self._perform)

    # -- reports, never blocking the service

    def _report(self, report: Report) -> None:
        if self.settings.mode == "files":
            return
        request = self._core.report_request(report)
        with self._life:
            if self._stop.is_set():
                return
            try:
                self._reports.put_nowait(request)
            except queue.Full:
                logger.debug("report queue full; %s report dropped", report.status)
                return
            if self._reporter is None:  # one reporter, however many threads report at once
                self._reporter = threading.Thread(
                    target=self._deliver_reports, name="tskcfg-reports", daemon=True
                )
                self._reporter.start()

    def _drop_reports(self) -> None:
        while True:
            try:
                self._reports.get_nowait()
            except queue.Empty:
                break
        self._reports.put_nowait(None)

    def _deliver_reports(self) -> None:
        while True:
            try:
                request = self._reports.get(timeout=self.settings.report_interval)
            except queue.Empty:
                # A whole interval without news: the same report again, as a sign of life.
                request = self._core.repeated_report_request()
                if request is None:
                    continue
            else:
                if request is None:
                    return
            try:
                # Streamed and closed unread: the answer to a report is not worth any memory.
                self._http.send(request, stream=True).close()
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
                pause = pause_after_check(
                    self.settings, self.retry, changed, time.monotonic() - started
                )
            except Exception as error:
                if self._stop.is_set():
                    return
                pause = pause_after_failure(self.settings, self.retry, error)
            if pause:
                self._stop.wait(pause)

    def _follow_events(self) -> None:
        response = drive(self._core.events_flow(self._events.last_event_id), self._perform)
        try:
            # The server subscribed us before answering: catching up now misses nothing,
            # a version pushed meanwhile also arrives as an event.
            self.refresh()
            self._core.retry.success()
            for line in response.iter_lines():
                event = self._events.feed(line)
                if self._stop.is_set():
                    return
                if announces_news(event, self._core.seen_version):
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
                    or self._core.local.file_changed()
                ):
                    self._reload_file()
        except Exception:
            # Say so rather than die silently in a thread; the last config stays current.
            logger.exception("watching %s stopped; the current config stays", path)

    def _reload_file(self) -> None:
        drive(self._core.reload_file_flow(), self._perform)
