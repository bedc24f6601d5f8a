"""Prometheus metrics of one server, in its own registry (no global state, no service names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The counters and histograms of one server; labels are route templates, never names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tskcfg_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tskcfg_http_request_duration_seconds",
            "Time from request to the start of the response, by route template.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=self.registry,
        )
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
