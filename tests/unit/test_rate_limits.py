"""Vendor 429s through the resilience layer: the cooldown a ``Retry-After`` starts,
waits taken only when they fit, fast failures carrying the remaining wait, and
one log line per failure each caller sees.

The scripted fake upstream of test_resilience stands for the connector.
"""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from connectors.sdk import UpstreamError, UpstreamRateLimited, UpstreamTimeout
from connectors.sdk.http import call_gate, parse_retry_after
from gateway._cooldown import MAX_COOLDOWN, Cooldown
from gateway.resilience import ResiliencePolicy
from gateway.upstream import RequestScope
from tests.unit.test_resilience import (
    LIMIT,
    Clock,
    FakeUpstream,
    call,
    make,
    now,
    unavailable,
)

POLICY = ResiliencePolicy(
    attempts=3, backoff_initial=0.001, backoff_max=0.002, retry_after_max=5, merge_max_keys=0
)


def limited(retry_after: float | None) -> UpstreamRateLimited:
    return UpstreamRateLimited("crm rate limit reached", source="crm", retry_after=retry_after)


async def first_call_done(upstream: FakeUpstream, count: int = 1) -> None:
    """Until the fake has been called ``count`` times and its answer has been handled."""
    async with asyncio.timeout(LIMIT), upstream.entered:
        await upstream.entered.wait_for(
            lambda: len(upstream.calls) >= count and not upstream.running
        )
    for _ in range(3):
        await asyncio.sleep(0)


# --- the cooldown ------------------------------------------------------------


async def test_calls_during_a_cooldown_fail_fast_with_the_remaining_wait_and_call_nobody():
    upstream = FakeUpstream(limited(30))
    clock = Clock()
    layer, events = make(upstream, POLICY, clock=clock)
    with pytest.raises(UpstreamRateLimited) as first:
        await call(layer, ["a"])
    assert first.value.retry_after == 30
    clock.value += 10
    # Any key, any method of the connector: the vendor's limit is per account.
    for keys, method in ((["b"], "people_by_id"), (["c", "d"], "people_by_email")):
        with pytest.raises(UpstreamRateLimited) as caught:
            await call(layer, keys, method=method)
        error = caught.value
        assert (error.code, error.source, error.retryable) == ("UPSTREAM_RATE_LIMITED", "crm", True)
        assert error.retry_after == pytest.approx(20)  # what is left, not what was asked
    assert upstream.calls == [("a",)]
    assert layer.breaker_state("crm") == "closed"
    assert ("crm", "cooldown") in events
    clock.value += 20
    assert await call(layer, ["e"]) == {"e": "record:e"}
    assert upstream.calls == [("a",), ("e",)]


async def test_a_call_arriving_during_a_cooldown_that_fits_waits_for_its_end():
    upstream = FakeUpstream(limited(0.1))
    layer, events = make(upstream, POLICY)
    first = asyncio.create_task(call(layer, ["a"]))
    await first_call_done(upstream)
    second = asyncio.create_task(call(layer, ["b"]))
    assert await first == {"a": "record:a"}
    assert await second == {"b": "record:b"}
    refused_at, *later = upstream.started
    assert sorted(upstream.calls) == [("a",), ("a",), ("b",)]
    # Nobody called the vendor before the Retry-After it gave had passed.
    assert all(start >= refused_at + 0.1 for start in later), later
    assert ("crm", "cooldown_wait") in events


async def test_a_wait_that_does_not_fit_the_deadline_is_not_taken():
    upstream = FakeUpstream(limited(1.0))
    layer, _ = make(upstream, POLICY)
    with pytest.raises(UpstreamRateLimited) as caught:
        # 1 s of a deadline 1.5 s away would leave too little for the call and
        # for whatever needs its answer: fail now, with the wait.
        await call(layer, ["a"], RequestScope(deadline=now() + 1.5))
    assert 0 < caught.value.retry_after <= 1.0
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["b"], RequestScope(deadline=now() + 0.5))
    assert upstream.calls == [("a",)]


async def test_a_wait_past_retry_after_max_is_not_taken():
    upstream = FakeUpstream(limited(30))
    layer, _ = make(upstream, POLICY)
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["a"])
    with pytest.raises(UpstreamRateLimited) as caught:
        await call(layer, ["b"])  # no deadline at all: still not worth 30 s
    assert 29 < caught.value.retry_after <= 30
    assert upstream.calls == [("a",)]


async def test_a_vendor_still_refusing_after_its_retry_after_is_not_waited_for_again():
    upstream = FakeUpstream(limited(0.05), limited(0.05), limited(0.05))
    layer, _ = make(upstream, POLICY)
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["a"])
    assert upstream.calls == [("a",), ("a",)]  # one wait per call, not one per attempt
    # The limit outlasted one Retry-After: calls fail fast until it passes,
    # even where a wait would fit.
    with pytest.raises(UpstreamRateLimited) as caught:
        await call(layer, ["b"])
    assert 0 < caught.value.retry_after <= 0.05
    assert upstream.calls == [("a",), ("a",)]


async def test_a_success_after_a_cooldown_makes_the_next_429_worth_waiting_for_again():
    upstream = FakeUpstream(limited(0.02), limited(0.02), "ok", limited(0.02))
    layer, _ = make(upstream, POLICY)
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["a"])
    await asyncio.sleep(0.03)  # the cooldown passes (not a timing assertion)
    assert await call(layer, ["b"]) == {"b": "record:b"}
    # A fresh 429: one wait, then the call goes through.
    assert await call(layer, ["c"]) == {"c": "record:c"}
    assert upstream.calls == [("a",), ("a",), ("b",), ("c",), ("c",)]


async def test_no_retry_after_means_no_cooldown_but_a_backoff():
    upstream = FakeUpstream(limited(None), limited(None))
    layer, events = make(upstream, POLICY)
    assert await call(layer, ["a"]) == {"a": "record:a"}
    assert await call(layer, ["b"]) == {"b": "record:b"}
    assert len(upstream.calls) == 4
    assert "cooldown" not in {event for _, event in events}


async def test_pages_of_a_call_do_not_reach_the_vendor_during_a_cooldown():
    page_one, page_two = asyncio.Event(), asyncio.Event()
    pages: list[str] = []

    async def upstream(connector, method, keys, scope):
        if keys == ["refused"]:
            raise limited(30)
        gate = call_gate.get()
        assert gate is not None
        await gate()
        pages.append("first")
        page_one.set()
        await page_two.wait()
        await gate()  # another page of the same batch: another vendor call
        pages.append("second")
        return {key: key for key in keys}

    layer, _ = make(upstream, POLICY)
    paging = asyncio.create_task(call(layer, ["a"]))
    async with asyncio.timeout(LIMIT):
        await page_one.wait()
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["refused"])
    page_two.set()
    with pytest.raises(UpstreamRateLimited):
        await paging
    assert pages == ["first"]


async def test_a_retry_sleep_holds_no_bulkhead_slot(monkeypatch):
    real_sleep = asyncio.sleep
    backoff = asyncio.Event()

    async def held_sleep(seconds, *args):
        if seconds > 0:
            await backoff.wait()  # the backoff lasts until the test ends it
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", held_sleep)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    upstream = FakeUpstream(unavailable())
    policy = ResiliencePolicy(
        attempts=2, backoff_initial=1.0, backoff_max=1.0, bulkhead=1, merge_max_keys=0
    )
    layer, _ = make(upstream, policy)
    retrying = asyncio.create_task(call(layer, ["a"]))
    await first_call_done(upstream)
    # The only slot is free while "a" sleeps before its retry.
    assert await call(layer, ["b"]) == {"b": "record:b"}
    backoff.set()
    assert await retrying == {"a": "record:a"}
    assert upstream.calls == [("a",), ("b",), ("a",)]


async def test_a_caller_whose_deadline_ends_during_a_cooldown_hears_rate_limited():
    release, called = asyncio.Event(), asyncio.Event()
    calls: list[float] = []

    async def upstream(connector, method, keys, scope):
        calls.append(now())
        called.set()
        if len(calls) == 1:
            await release.wait()
            raise limited(0.3)
        return {key: key for key in keys}

    layer, _ = make(upstream, POLICY)
    owner = asyncio.create_task(call(layer, ["a"]))
    async with asyncio.timeout(LIMIT):
        await called.wait()
    joiner = asyncio.create_task(call(layer, ["a"], RequestScope(deadline=now() + 0.1)))
    await asyncio.sleep(0)
    release.set()  # the vendor says 429, Retry-After 0.3: the owner waits it out
    with pytest.raises(UpstreamRateLimited) as caught:
        await joiner
    assert not isinstance(caught.value, UpstreamTimeout)
    assert 0 < caught.value.retry_after <= 0.3
    assert await owner == {"a": "a"}
    assert len(calls) == 2


def test_a_cooldown_turns_persistent_only_when_a_call_after_it_is_refused():
    clock = Clock()
    cooldown = Cooldown(clock)
    assert cooldown.remaining() == 0 and not cooldown.persistent
    sent = clock()
    cooldown.refused(sent, 2)
    cooldown.refused(sent, 2)  # another call of the same moment: same news
    assert cooldown.remaining() == 2 and not cooldown.persistent
    clock.value += 2
    cooldown.accepted(sent)  # sent before the refusal: says nothing about now
    cooldown.refused(clock(), 2)
    assert cooldown.persistent
    clock.value += 2
    cooldown.accepted(clock())
    assert not cooldown.persistent
    cooldown.refused(clock(), 10_000)
    assert cooldown.remaining() == MAX_COOLDOWN and not cooldown.persistent


@pytest.mark.parametrize("retry_after", [0.0, -3.0, float("nan")])
def test_a_429_that_asks_for_no_wait_starts_no_cooldown(retry_after):
    cooldown = Cooldown(Clock())
    cooldown.refused(0.0, retry_after)
    assert cooldown.remaining() == 0


# --- Retry-After values --------------------------------------------------------


@pytest.mark.parametrize("header", ["inf", "1e400", "-inf", "nan", "Infinity"])
def test_a_retry_after_that_is_not_a_finite_wait_is_ignored(header):
    assert parse_retry_after(header) is None


async def test_an_absurd_retry_after_still_lets_a_call_through_later():
    upstream = FakeUpstream(limited(7 * 24 * 3600))
    clock = Clock()
    layer, _ = make(upstream, POLICY, clock=clock)
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["a"])
    with pytest.raises(UpstreamRateLimited) as caught:
        await call(layer, ["b"])
    assert caught.value.retry_after <= 300
    clock.value += 300  # a bogus or clock-skewed date silences a source for minutes, not days
    assert await call(layer, ["c"]) == {"c": "record:c"}


# --- one log line per upstream failure ----------------------------------------------


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "c360.upstream"]


async def test_each_caller_of_a_merged_call_gets_its_own_failure_line(caplog):
    caplog.set_level(logging.WARNING, logger="c360.upstream")
    upstream = FakeUpstream(unavailable())
    layer, _ = make(upstream, ResiliencePolicy(attempts=1))
    scopes = [RequestScope(request_id=f"req-{n}-0000000") for n in (1, 2)]
    tasks = [
        asyncio.create_task(call(layer, keys, scope))
        for keys, scope in zip((["ada@example.com"], ["bob@example.com"]), scopes, strict=True)
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, UpstreamError) for r in results)
    assert len(upstream.calls) == 1  # one merged vendor call
    lines = failure_lines(caplog)
    assert sorted(r.request_id for r in lines) == ["req-1-0000000", "req-2-0000000"]
    for record in lines:
        assert record.levelno == logging.WARNING
        assert (record.connector, record.operation, record.code) == (
            "crm",
            "people_by_id",
            "UPSTREAM_UNAVAILABLE",
        )
        assert record.getMessage() == (
            "upstream_failure connector=crm operation=people_by_id "
            f"code=UPSTREAM_UNAVAILABLE request_id={record.request_id}"
        )
        assert "example.com" not in record.getMessage()
        assert record.exc_info is None


async def test_a_rate_limit_line_carries_the_remaining_wait(caplog):
    caplog.set_level(logging.WARNING, logger="c360.upstream")
    clock = Clock()
    layer, _ = make(FakeUpstream(limited(30)), POLICY, clock=clock)
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["a"], RequestScope(request_id="first-request"))
    clock.value += 12.5
    with pytest.raises(UpstreamRateLimited):
        await call(layer, ["b"])
    first, second = failure_lines(caplog)
    assert first.getMessage() == (
        "upstream_failure connector=crm operation=people_by_id code=UPSTREAM_RATE_LIMITED "
        "request_id=first-request retry_after=30.0"
    )
    assert (second.request_id, second.retry_after) == (None, 17.5)
    assert second.getMessage().endswith("request_id=- retry_after=17.5")


async def test_a_success_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="c360.upstream")
    layer, _ = make(FakeUpstream(unavailable()), POLICY)
    assert await call(layer, ["a"], RequestScope(request_id="r-000000001")) == {"a": "record:a"}
    assert failure_lines(caplog) == []


async def test_odd_values_are_quoted_so_the_line_stays_one_logfmt_record(caplog):
    caplog.set_level(logging.WARNING, logger="c360.upstream")
    layer, _ = make(FakeUpstream(unavailable()), ResiliencePolicy(attempts=1))
    with pytest.raises(UpstreamError):
        await call(layer, ["a"], RequestScope(request_id='two words "quoted"\nnext'))
    [line] = failure_lines(caplog)
    assert line.getMessage().endswith(r'request_id="two words \"quoted\"\nnext"')
    assert "\n" not in line.getMessage()
