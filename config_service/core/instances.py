"""Instances: what each running instance reports it runs, bounded per token and per document,
and the list an operator reads (with staleness and drift)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from config_service.core.access import Principal
from config_service.core.refusals import Refused, not_found
from config_service.core.rendered import RenderedVersions
from config_service.settings import Settings
from config_service.store import (
    InstanceReport,
    Store,
    TooManyInstances,
    Transaction,
    utc_timestamp,
)

# Told of each report inside its write (a rollout counts the failures of its candidate).
ReportCheck = Callable[[Transaction, InstanceReport], None]


class RateWindow:
    """At most `limit` events per key in each window of `seconds` (a fixed window per key)."""

    def __init__(
        self, limit: int, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, key: str) -> float | None:
        """Count one event for `key`: None when within the limit, else seconds until it resets."""
        now = self._clock()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.seconds:
                started, count = now, 0
            if count >= self.limit:
                return started + self.seconds - now
            self._windows[key] = (started, count + 1)
            if len(self._windows) > 1024:
                # Keys are tokens, so few; forget the windows that have ended.
                self._windows = {
                    other: window
                    for other, window in self._windows.items()
                    if now - window[0] < self.seconds
                }
        return None


class Instances:
    """The instance reports of one server."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        versions: RenderedVersions,
        check: ReportCheck | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._versions = versions
        self._check = check
        self._reports = RateWindow(settings.instance_reports_per_minute)

    def report(self, principal: Principal, report: InstanceReport) -> None:
        """Remember what an instance runs; the token may read the document (checked before).

        `too_many_requests` when the token sent too many reports this minute,
        `too_many_instances` when the document has as many instances as it may keep and none
        is stale, `not_found` when the document, or a version the report names, does not exist.
        """
        key = principal.token_id or principal.name
        wait = self._reports.take(key)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise Refused(
                "too_many_requests",
                f"this token sent more than {self._reports.limit} instance reports in a "
                f"minute; send the next one in {seconds} s",
                retry_after=seconds,
            )
        service, environment = report.service, report.environment
        current = self._versions.current(service, environment)
        if current is None:
            raise not_found(
                f"{service!r} has no version in {environment!r}; instances report only on documents "
                "that exist"
            )
        for key, number in (("version", report.version), ("failed_version", report.failed_version)):
            # A document's versions are numbered 1, 2, ... with none ever deleted, so one up to
            # the current number exists. A higher one (a rollout's candidate, or a version
            # another replica wrote that this one has not seen yet) is looked up in the store.
            if number is not None and not 1 <= number <= current.version and not self._exists(report, number):
                raise not_found(
                    f"{service!r} in {environment!r} has no version {number}, which this report "
                    f"names as its {key!r}; report a version this server gave the instance"
                )
        limit = self.settings.max_instances_per_document
        try:
            forget_before = utc_timestamp(self._stale_since())

            def operation(transaction: Transaction) -> None:
                transaction.record_instance(report, limit, forget_before)
                if self._check is not None:
                    self._check(transaction, report)

            self._store.write(operation)
        except TooManyInstances:
            raise Refused(
                "too_many_instances",
                f"{service!r} in {environment!r} already has {limit} instances that reported "
                f"recently; a new one is taken once one of them has been silent for "
                f"{self._stale_after():g} s",
            ) from None

    def _exists(self, report: InstanceReport, number: int) -> bool:
        return self._store.get_version(report.service, report.environment, number) is not None

    def listing(self, service: str, environment: str) -> dict[str, Any]:
        """The instances of a document, with `stale` (silent for 3 report intervals) and
        `behind` (running an older version than the current one, or none)."""
        current = self._versions.current(service, environment)
        stale_since = utc_timestamp(self._stale_since())
        return {
            "instances": [
                {
                    "instance_id": record.instance_id,
                    "version": record.version,
                    "hash": record.hash,
                    "status": record.status,
                    "error": record.error,
                    "failed_version": record.failed_version,
                    "last_seen": record.last_seen,
                    "stale": record.last_seen < stale_since,
                    "behind": current is not None
                    and (record.version is None or record.version < current.version),
                }
                for record in self._store.list_instances(service, environment)
            ]
        }

    def _stale_after(self) -> float:
        return 3 * self.settings.instance_report_interval

    def _stale_since(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self._stale_after())
