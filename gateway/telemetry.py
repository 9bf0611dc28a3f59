"""Metrics: Prometheus counters and histograms, one registry per app.

A registry per app (not the process-global one) keeps several gateways in one
process -- tests, benchmarks -- from double-registering collectors.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Telemetry", "logger"]

logger = logging.getLogger("c360")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    def __init__(self) -> None:
        self._last_cache_warning = float("-inf")
        self.registry = CollectorRegistry(auto_describe=True)
        self.upstream_requests = Counter(
            "c360_upstream_requests",
            "Calls from the gateway to vendor APIs.",
            ("connector", "operation", "outcome"),
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "c360_upstream_request_duration_seconds",
            "Latency of calls to vendor APIs.",
            ("connector", "operation"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.graphql_requests = Counter(
            "c360_graphql_requests",
            "GraphQL operations served, by whether the response carried errors.",
            ("outcome",),
            registry=self.registry,
        )
        self.graphql_latency = Histogram(
            "c360_graphql_request_duration_seconds",
            "Time to serve one GraphQL HTTP request.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.resilience_events = Counter(
            "c360_resilience_events",
            "Retries, timeouts, breaker transitions and other resilience events per source.",
            ("source", "event"),
            registry=self.registry,
        )

        self.cache_events = Counter(
            "c360_cache_events",
            "Shared cache outcomes per connector (hit, miss, stale, fail_open, redis_error, ...).",
            ("connector", "event"),
            registry=self.registry,
        )

        # Labelled children by label values: .labels() validates and locks on
        # every call, and these hooks run for every key of every batch.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_cache(self, event: str, source: str) -> None:
        """The cache layer's on_event hook; redis_error and fail_open also log a warning."""
        self._child(self.cache_events, source, event).inc()
        if event in ("redis_error", "fail_open"):
            now = time.monotonic()
            # One line per 10 s is a warning; one per request would be a flood.
            if now - self._last_cache_warning > 10:
                self._last_cache_warning = now
                logger.warning("cache %s (%s): serving from the upstreams", event, source)

    def observe_resilience(self, source: str, event: str) -> None:
        self._child(self.resilience_events, source, event).inc()

    def observe_upstream(self, source: str, operation: str, outcome: str, seconds: float) -> None:
        """The connectors' RequestObserver."""
        self._child(self.upstream_requests, source, operation, outcome).inc()
        self._child(self.upstream_latency, source, operation).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
