"""Metrics as Prometheus scrapes them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.telemetry import Telemetry


def _samples(telemetry: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = telemetry.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_count_per_label_set_between_scrapes():
    t = Telemetry()
    for _ in range(3):
        t.observe_cache("hit", "stripe")
    t.observe_cache("miss", "stripe")
    t.observe_upstream("zendesk", "tickets_of_requesters", "ok", 0.02)
    t.observe_resilience("zendesk", "retry")
    first = _samples(t)
    assert (
        first[("c360_cache_events_total", frozenset({("connector", "stripe"), ("event", "hit")}))]
        == 3
    )
    assert (
        first[("c360_cache_events_total", frozenset({("connector", "stripe"), ("event", "miss")}))]
        == 1
    )
    upstream = frozenset(
        {("connector", "zendesk"), ("operation", "tickets_of_requesters"), ("outcome", "ok")}
    )
    assert first[("c360_upstream_requests_total", upstream)] == 1
    assert (
        first[
            ("c360_resilience_events_total", frozenset({("source", "zendesk"), ("event", "retry")}))
        ]
        == 1
    )
    latency = frozenset({("connector", "zendesk"), ("operation", "tickets_of_requesters")})
    assert first[("c360_upstream_request_duration_seconds_count", latency)] == 1

    t.observe_cache("hit", "stripe")
    t.observe_upstream("zendesk", "tickets_of_requesters", "ok", 0.03)
    second = _samples(t)
    assert (
        second[("c360_cache_events_total", frozenset({("connector", "stripe"), ("event", "hit")}))]
        == 4
    )
    assert second[("c360_upstream_requests_total", upstream)] == 2
    assert second[("c360_upstream_request_duration_seconds_count", latency)] == 2


def test_each_gateway_has_its_own_counts():
    a, b = Telemetry(), Telemetry()
    a.observe_cache("hit", "stripe")
    assert not any(name == "c360_cache_events_total" for name, _ in _samples(b))
