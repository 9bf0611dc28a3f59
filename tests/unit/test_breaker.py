"""The circuit breaker alone: open periods, probes, and what it refuses (fake clock)."""

from __future__ import annotations

import random

import pytest

from gateway._breaker import Admission, BreakerState, CircuitBreaker, Verdict
from gateway.resilience import ResiliencePolicy


class Clock:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def breaker(clock, *, jitter, threshold=2, open_for=2.0, open_max=10.0, changes=None):
    return CircuitBreaker(
        threshold=threshold,
        open_for=open_for,
        open_max=open_max,
        clock=clock,
        on_change=None if changes is None else changes.append,
        jitter=jitter,
    )


def trip(b):
    for _ in range(2):
        assert b.admit() is Admission.NORMAL
        b.record(Admission.NORMAL, Verdict.FAILED)
    assert b.state is BreakerState.OPEN


def fail_probe(b, clock):
    clock.value += b.retry_after()
    assert b.admit() is Admission.PROBE
    b.record(Admission.PROBE, Verdict.FAILED)


def low(lo, hi):
    return lo


def high(lo, hi):
    return hi


def test_the_default_policy_probes_a_failing_vendor_after_2_to_5_seconds():
    policy = ResiliencePolicy()
    assert (policy.breaker_open_for, policy.breaker_open_max) == (2.0, 10.0)
    for jitter, expected in ((low, 2.0), (high, 5.0)):
        clock = Clock()
        b = breaker(clock, jitter=jitter, open_for=policy.breaker_open_for)
        trip(b)
        assert b.retry_after() == pytest.approx(expected)


def test_the_open_period_is_drawn_between_1_and_2_5_times_its_base():
    draws = []

    def jitter(lo, hi):
        draws.append((lo, hi))
        return random.uniform(lo, hi)

    clock = Clock()
    b = breaker(clock, jitter=jitter)
    trip(b)
    assert draws == [(1.0, 2.5)]
    assert 2.0 <= b.retry_after() <= 5.0


def test_each_failed_probe_doubles_the_open_period_up_to_open_max():
    clock = Clock()
    b = breaker(clock, jitter=low)
    trip(b)
    periods = [b.retry_after()]
    for _ in range(4):
        fail_probe(b, clock)
        periods.append(b.retry_after())
    assert periods == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.failed_probes == 4


def test_a_successful_probe_closes_and_the_next_opening_is_short_again():
    clock = Clock()
    changes = []
    b = breaker(clock, jitter=high, changes=changes)
    trip(b)
    fail_probe(b, clock)
    assert b.retry_after() == pytest.approx(10.0)  # 4 * 2.5, at open_max
    clock.value += b.retry_after()
    assert b.admit() is Admission.PROBE
    b.record(Admission.PROBE, Verdict.HEALTHY)
    assert b.state is BreakerState.CLOSED and b.failed_probes == 0
    trip(b)
    assert b.retry_after() == pytest.approx(5.0)
    assert [c.value for c in changes] == [
        "open",
        "half_open",
        "open",
        "half_open",
        "closed",
        "open",
    ]


def test_refuses_tells_what_admit_would_do_without_taking_the_probe():
    clock = Clock()
    b = breaker(clock, jitter=low)
    assert not b.refuses()
    trip(b)
    assert b.refuses()
    clock.value += 2.0
    assert not b.refuses()
    assert not b.refuses()  # asking twice took nothing
    assert b.admit() is Admission.PROBE
    assert b.refuses()  # the probe is out: everyone else is refused
    assert b.admit() is Admission.REFUSED


def test_a_probe_judged_already_is_not_judged_again():
    clock = Clock()
    b = breaker(clock, jitter=low)
    trip(b)
    clock.value += b.retry_after()
    assert b.admit() is Admission.PROBE
    b.record(Admission.PROBE, Verdict.FAILED)  # judged while it still waits
    opened_until = b.retry_after()
    # Its end reported later changes nothing: not another failure, nor a close.
    b.record(Admission.PROBE, Verdict.FAILED)
    assert b.failed_probes == 1 and b.retry_after() == opened_until
    b.record(Admission.PROBE, Verdict.HEALTHY)
    assert b.state is BreakerState.OPEN


def test_neutral_probe_frees_the_probe_slot():
    clock = Clock()
    b = breaker(clock, jitter=low)
    trip(b)
    clock.value += b.retry_after()
    assert b.admit() is Admission.PROBE
    b.record(Admission.PROBE, Verdict.NEUTRAL)
    assert b.state is BreakerState.HALF_OPEN
    assert b.admit() is Admission.PROBE


def test_a_trip_opens_a_closed_breaker_whatever_the_count():
    clock = Clock()
    b = breaker(clock, jitter=low, threshold=1000)
    b.trip(Admission.NORMAL)
    assert b.state is BreakerState.OPEN and b.retry_after() == 2.0
    b.trip(Admission.NORMAL)  # a call admitted before it opened: old news
    assert b.retry_after() == 2.0 and b.failed_probes == 0
    clock.value += 2.0
    assert b.admit() is Admission.PROBE
    b.trip(Admission.PROBE)  # the probe went silent: a failed probe
    assert b.failed_probes == 1 and b.retry_after() == 4.0
