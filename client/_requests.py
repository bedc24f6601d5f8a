"""Every request a client sends (its document, schemas, events, reports), each with its own time limits."""

from __future__ import annotations

from typing import Any

import httpx

from config_service import __version__
from tskcfg._answers import BoundedBody
from tskcfg._config import Config
from tskcfg._effects import Report
from tskcfg._servers import Servers
from tskcfg._settings import DEFAULT_TIMEOUT, REPORT_TIMEOUT, Settings


def seconds_allowed(request: httpx.Request) -> float:
    """How long the whole answer to `request` may take: its read timeout, as one deadline.

    httpx times each read alone, so a server sending a byte a second would never time
    out; the clients hold the whole exchange to this.
    """
    timeout = request.extensions.get("timeout", {}).get("read")
    return float(timeout) if timeout is not None else DEFAULT_TIMEOUT


class Requests:
    """Builds the requests of one client, and remembers the last report it made."""

    def __init__(self, settings: Settings, servers: Servers) -> None:
        self.settings = settings
        self.servers = servers
        # What this instance last told the server (sent again after quiet intervals).
        self.last_report: Report | None = None
        self._headers = {
            "User-Agent": f"tskcfg-client/{__version__}",
            "Accept": "application/json",
            # Every request says which instance asks: a rollout answers it by these
            # (docs/rollouts.md), and its reports name it the same way.
            "X-Instance-ID": settings.instance_id,
        }
        if settings.cohort:
            self._headers["X-Config-Cohort"] = settings.cohort
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"

    def _request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> httpx.Request:
        """A request whose every phase times out at `timeout` (see `seconds_allowed`)."""
        return httpx.Request(
            method,
            url,
            headers=self._headers,
            extensions={"timeout": httpx.Timeout(timeout, connect=min(timeout, 5.0)).as_dict()},
            **kwargs,
        )

    def bounded_body(self, request: httpx.Request, response: httpx.Response, started: float) -> BoundedBody:
        """The collector of `response`'s body, within the size limit and the request's deadline."""
        return BoundedBody(
            request,
            response,
            limit=self.settings.max_response_bytes,
            deadline=started + seconds_allowed(request),
        )

    def config(
        self, server: str, seen_version: int | None, *, wait: float | None = None
    ) -> httpx.Request:
        """GET the current document from `server`; with `seen_version`, only when newer (If-None-Match), and
        with `wait` too, a long poll held until a version after it."""
        headers = {}
        params = {}
        if seen_version is not None:
            headers["If-None-Match"] = f'"{seen_version}"'
            if wait:
                params["wait"] = str(int(wait))
        request = self._request(
            "GET",
            server + self.settings.config_path,
            params=params,
            timeout=(wait or 0) + self.settings.timeout,
        )
        request.headers.update(headers)
        return request

    def schema(self, server: str, name: str | None = None) -> httpx.Request:
        """GET a schema by name, the service's own by default."""
        return self._request(
            "GET",
            f"{server}/v1/schemas/{name or self.settings.service}",
            timeout=self.settings.timeout,
        )

    def events(self, server: str, last_event_id: str | None) -> httpx.Request:
        """GET the server's event stream for this document, resumed after `last_event_id`."""
        params = {"service": self.settings.service, "environment": self.settings.environment}
        # The read timeout outlasts the server's 15 s pings, so a silent stream means a dead one.
        request = self._request(
            "GET", f"{server}/v1/events", params=params, timeout=45.0
        )
        request.headers["Accept"] = "text/event-stream"
        if last_event_id is not None:
            request.headers["Last-Event-ID"] = last_event_id
        return request

    def report(self, report: Report, current: Config | None) -> httpx.Request:
        """`POST /v1/instances`: `version`/`hash` are what this instance runs (`current` when the
        report is `failed`); a `failed` report adds `failed_version`/`failed_hash`, the version
        it could not apply."""
        self.last_report = report
        runs = current if report.status == "failed" else report.subject
        body: dict[str, Any] = {
            "instance_id": self.settings.instance_id,
            "service": self.settings.service,
            "environment": self.settings.environment,
            "version": runs.version if runs is not None else None,
            "hash": runs.hash if runs is not None else None,
            "status": report.status,
            "error": report.error,
        }
        if self.settings.cohort:
            body["cohort"] = self.settings.cohort
        if report.status == "failed":
            failed = report.subject
            body["failed_version"] = failed.version if failed is not None else None
            body["failed_hash"] = failed.hash if failed is not None else None
        # To the server the client asks now: the one that last answered.
        url = f"{self.servers.current}/v1/instances"
        return self._request("POST", url, json=body, timeout=REPORT_TIMEOUT)

    def repeated_report(self, current: Config | None) -> httpx.Request | None:
        """The last report again (None before the first, and after `stopped`): the clients send
        it after `report_interval` quiet seconds, so the server sees the instance is alive."""
        report = self.last_report
        if report is None or report.status == "stopped":
            return None
        return self.report(report, current)
