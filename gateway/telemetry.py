"""Metrics: Prometheus counters and histograms, one registry per app.

A registry per app (not the process-global one) keeps several gateways in one
process -- tests, benchmarks -- from double-registering collectors.

Counters bumped for every key of every batch (cache outcomes, upstream calls,
resilience events) are plain integers read at scrape time: a prometheus_client
``Counter`` takes a lock on every increment, and those hooks run on the event
loop's thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Telemetry", "logger"]

logger = logging.getLogger("c360")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Tally(Collector):
    """A labelled counter kept as plain integers, exported when scraped."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self.counts: dict[tuple[str, ...], int] = {}
        registry.register(self)

    def inc(self, *values: str) -> None:
        counts = self.counts
        counts[values] = counts.get(values, 0) + 1

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labels)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        # A copy, so a scrape rendered off the loop's thread still sees one dict.
        for values, count in list(self.counts.items()):
            family.add_metric(list(values), count)
        yield family


class Telemetry:
    def __init__(self) -> None:
        self._last_cache_warning = float("-inf")
        self.registry = CollectorRegistry(auto_describe=True)
        self.upstream_requests = _Tally(
            "c360_upstream_requests",
            "Calls from the gateway to vendor APIs.",
            ("connector", "operation", "outcome"),
            self.registry,
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

        self.resilience_events = _Tally(
            "c360_resilience_events",
            "Retries, timeouts, breaker transitions and other resilience events per source.",
            ("source", "event"),
            self.registry,
        )
        self.cache_events = _Tally(
            "c360_cache_events",
            "Shared cache outcomes per connector (hit, miss, stale, fail_open, redis_error, ...).",
            ("connector", "event"),
            self.registry,
        )
        # Histogram children by label values: .labels() validates and locks.
        self._latency: dict[tuple[str, str], Any] = {}

    def observe_cache(self, event: str, source: str) -> None:
        """The cache layer's on_event hook; redis_error and fail_open also log a warning."""
        self.cache_events.inc(source, event)
        if event in ("redis_error", "fail_open"):
            now = time.monotonic()
            # One line per 10 s is a warning; one per request would be a flood.
            if now - self._last_cache_warning > 10:
                self._last_cache_warning = now
                logger.warning("cache %s (%s): serving from the upstreams", event, source)

    def observe_resilience(self, source: str, event: str) -> None:
        self.resilience_events.inc(source, event)

    def observe_upstream(self, source: str, operation: str, outcome: str, seconds: float) -> None:
        """The connectors' RequestObserver."""
        self.upstream_requests.inc(source, operation, outcome)
        key = (source, operation)
        child = self._latency.get(key)
        if child is None:
            child = self._latency[key] = self.upstream_latency.labels(source, operation)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
