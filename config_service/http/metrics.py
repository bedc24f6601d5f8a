"""Prometheus metrics of one server, in its own registry (no global state, no service names)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "RequestTally"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Route:
    """One route's request counts by (method, status) and its latency histogram, in plain numbers."""

    __slots__ = ("counts", "buckets", "seconds", "created")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], list[float]] = {}  # (method, status) -> [count, created]
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: over the largest bound
        self.seconds = 0.0
        self.created = time.time()


class RequestTally:
    """The HTTP request counter and latency histogram, counted in plain ints on the event loop.

    Counting a request through prometheus-client's labelled children takes a lock per value
    and a walk over the buckets: more than the rest of a hot read's bookkeeping together. Here
    `count` adds to plain numbers, and a scrape reads them (it is a collector of the registry),
    with the names, labels and samples a `Counter` and a `Histogram` would show.
    """

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def count(self, route: str, method: str, status: int, seconds: float) -> None:
        tally = self._routes.get(route)
        if tally is None:
            tally = self._routes[route] = _Route()
        counted = tally.counts.get((method, status))
        if counted is None:
            tally.counts[(method, status)] = [1, time.time()]
        else:
            counted[0] += 1
        tally.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        tally.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tskcfg_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        latency = HistogramMetricFamily(
            "tskcfg_http_request_duration_seconds",
            "Time from request to the start of the response, by route template.",
            labels=["route"],
        )
        for route, tally in list(self._routes.items()):
            for (method, status), (count, created) in list(tally.counts.items()):
                requests.add_metric([route, method, str(status)], count, created=created)
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), list(tally.buckets), strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            latency.add_metric([route], buckets, tally.seconds)
        yield requests
        yield latency


def _bound(bound: float) -> str:
    """A bucket's `le` label as prometheus-client writes it."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """The counters and histograms of one server; labels are route templates, never names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestTally()
        self.registry.register(self.requests)
        self.versions_written = Counter(
            "tskcfg_versions_written",
            "Versions committed, by kind (push, sync, rollback, promote).",
            ["kind"],
            registry=self.registry,
        )
        self.validation_failures = Counter(
            "tskcfg_validation_failures",
            "Documents or schemas refused, by kind (invalid_tsk, schema_violation, invalid_schema).",
            ["kind"],
            registry=self.registry,
        )
        self.waiters = Gauge(
            "tskcfg_watchers",
            "Long polls and event streams open right now.",
            ["kind"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
