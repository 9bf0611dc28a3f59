"""A hanging vendor through the resilience layer: judged by its silence, then cut off.

Scripted fake upstreams (tests/unit/test_resilience.py), tiny stall bounds.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from connectors.sdk import UpstreamCircuitOpen, UpstreamTimeout, UpstreamUnavailable
from connectors.sdk.http import call_gate
from gateway.resilience import Resilience, ResiliencePolicy
from gateway.upstream import RequestScope
from tests.unit.test_resilience import (
    CRM,
    LIMIT,
    Clock,
    FakeUpstream,
    call,
    make,
    now,
    unavailable,
)

STALL = 0.05
# No merging: each key is a call of its own, as calls of different requests are.
# A failure count no hang reaches: a stall opens the breaker whatever the count.
HANG = ResiliencePolicy(
    attempts=1, timeout=60, breaker_failures=1000, breaker_stall_after=STALL, merge_max_keys=0
)
ERRORS = ResiliencePolicy(
    attempts=1, timeout=60, breaker_failures=3, breaker_stall_after=STALL, merge_max_keys=0
)


def far() -> RequestScope:
    return RequestScope(deadline=now() + 60)


async def answered_once(layer) -> None:
    """One quick answer: the source's history that stalls are measured against."""
    assert await call(layer, ["warm"]) == {"warm": "record:warm"}


async def settle(tasks):
    async with asyncio.timeout(LIMIT):
        return await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_open_breaker_refuses_without_yielding_to_the_event_loop():
    upstream = FakeUpstream(*[UpstreamTimeout("slow", source="crm") for _ in range(3)])
    layer, events = make(upstream, ERRORS, clock=Clock())
    for _ in range(3):
        with pytest.raises(UpstreamTimeout):
            await call(layer)
    ran = []
    asyncio.get_running_loop().call_soon(ran.append, True)
    with pytest.raises(UpstreamCircuitOpen):
        await layer(CRM, "people_by_id", ["x"], far())
    # Not merged, not shared, no task: refused before any of that.
    assert ran == []
    assert events.count(("crm", "short_circuit")) == 1


async def test_a_hang_opens_the_breaker_after_the_stall_bound_and_frees_every_waiter():
    upstream = FakeUpstream("ok", *["hang"] * 5)
    layer, events = make(upstream, HANG, clock=Clock())
    await answered_once(layer)
    started = now()
    waiting = [asyncio.create_task(layer(CRM, "people_by_id", [k], far())) for k in "abcde"]
    results = await settle(waiting)
    took = now() - started
    # Each waited for the stall (plus the settle check), not for its 60 s.
    assert STALL <= took < 1.0
    assert all(isinstance(r, UpstreamTimeout) for r in results), results
    assert layer.breaker_state("crm") == "open"
    assert upstream.cancelled == 5  # the calls were ended: their slots are free
    assert events.count(("crm", "cut")) == 5
    assert ("crm", "stall") in events and events.count(("crm", "breaker_open")) == 1
    with pytest.raises(UpstreamCircuitOpen):
        await call(layer, ["f"])
    assert len(upstream.calls) == 6


async def test_a_breaker_opened_by_errors_cuts_the_calls_still_waiting():
    upstream = FakeUpstream("hang", *[unavailable() for _ in range(3)])
    layer, events = make(upstream, ERRORS, clock=Clock())
    hung = asyncio.create_task(layer(CRM, "people_by_id", ["a"], far()))
    await upstream.wait_running(1)
    for key in "bcd":
        with pytest.raises(UpstreamUnavailable):
            await call(layer, [key])
    [result] = await settle([hung])
    assert isinstance(result, UpstreamTimeout)
    assert ("crm", "cut") in events and upstream.cancelled == 1


async def test_calls_that_overlap_answers_do_not_stall():
    upstream = FakeUpstream("ok", "hang")
    layer, events = make(upstream, HANG, clock=Clock())
    await answered_once(layer)
    slow = asyncio.create_task(layer(CRM, "people_by_id", ["big"], far()))
    await upstream.wait_running(1)
    # The vendor keeps answering other calls for several stall bounds.
    deadline = now() + 6 * STALL
    while now() < deadline:
        assert await call(layer, [f"k{now()}"])
        await asyncio.sleep(STALL / 5)
    assert ("crm", "stall") not in events
    upstream.release.set()
    assert await slow == {"big": "record:big"}
    assert layer.breaker_state("crm") == "closed"


async def test_one_stalled_call_opens_the_breaker_and_its_caller_stops_waiting():
    upstream = FakeUpstream("ok", "hang")
    stalled = asyncio.Event()
    events: list[str] = []

    def observe(source, event):
        events.append(event)
        if event == "stall":
            stalled.set()

    layer = Resilience({"crm": HANG}, upstream, observer=observe, clock=Clock())
    await answered_once(layer)
    with pytest.raises(UpstreamTimeout):
        await call(layer, ["a"], far())
    assert stalled.is_set()
    assert events[-3:] == ["stall", "breaker_open", "cut"]
    assert layer.breaker_state("crm") == "open"


async def test_a_call_whose_pages_keep_being_answered_does_not_stall():
    pages = 8

    async def paging(connector, method, keys, scope):
        if keys == ["warm"]:
            return {"warm": "record:warm"}
        gate = call_gate.get()
        assert gate is not None
        for page in range(pages):
            if page:
                await gate()
            await asyncio.sleep(STALL / 2)  # the vendor's time for one page
            gate.answered()
        return {key: "all pages" for key in keys}

    layer, events = make(paging, HANG)
    await answered_once(layer)
    started = now()
    assert await call(layer, ["a"], far()) == {"a": "all pages"}
    assert now() - started >= pages * STALL / 2  # far past the bound: answered all along
    assert "stall" not in {event for _, event in events}


async def test_before_any_answer_nothing_stalls():
    upstream = FakeUpstream("hang")
    layer, events = make(upstream, HANG, clock=Clock())
    with pytest.raises(UpstreamTimeout):
        await call(layer, scope=RequestScope(deadline=now() + 5 * STALL))
    assert ("crm", "stall") not in events
    assert ("crm", "deadline") in events


async def test_stall_after_false_leaves_hangs_to_the_timeout():
    upstream = FakeUpstream("ok", "hang")
    policy = ResiliencePolicy(attempts=1, timeout=5 * STALL, breaker_stall_after=None)
    layer, events = make(upstream, policy)
    await answered_once(layer)
    with pytest.raises(UpstreamTimeout):
        await call(layer)
    assert ("crm", "stall") not in events and ("crm", "timeout") in events


async def test_calls_queued_for_a_slot_are_refused_when_the_breaker_opens():
    upstream = FakeUpstream("ok", "hang", "hang")
    policy = ResiliencePolicy(
        attempts=1,
        timeout=60,
        breaker_failures=1,
        breaker_stall_after=STALL,
        bulkhead=1,
        merge_max_keys=0,
    )
    layer, events = make(upstream, policy, clock=Clock())
    await answered_once(layer)
    hung = asyncio.create_task(layer(CRM, "people_by_id", ["a"], far()))
    await upstream.wait_running(1)
    queued = asyncio.create_task(layer(CRM, "people_by_id", ["b"], far()))
    hung_result, queued_result = await settle([hung, queued])
    assert isinstance(hung_result, UpstreamTimeout)
    assert isinstance(queued_result, UpstreamCircuitOpen)
    assert upstream.calls == [("warm",), ("a",)]  # the queued call never reached the vendor
    assert ("crm", "bulkhead_full") in events


async def test_a_probe_that_stalls_reopens_for_longer_and_the_next_one_waits_longer(
    monkeypatch,
):
    monkeypatch.setattr(random, "uniform", lambda lo, hi: lo)
    clock = Clock()
    upstream = FakeUpstream("ok", *["hang"] * 10)
    bound = 4 * STALL  # well past the settle check and a busy loop's late timers
    policy = ResiliencePolicy(
        attempts=1, timeout=60, breaker_failures=1, breaker_stall_after=bound, merge_max_keys=0
    )
    layer, events = make(upstream, policy, clock=clock)
    await answered_once(layer)
    with pytest.raises(UpstreamTimeout):
        await call(layer, ["a"], far())
    assert layer.breaker_state("crm") == "open"
    waited = []
    for _ in range(2):
        clock.value += 1000  # past any open period
        started = now()
        with pytest.raises(UpstreamTimeout):
            await call(layer, ["probe"], far())  # the probe: judged by its silence too
        waited.append(now() - started)
        assert layer.breaker_state("crm") == "open"
    assert events.count(("crm", "breaker_open")) == 3
    # The first probe counted after the bound; the second waited twice as long
    # (timers never fire early, so both are floors).
    assert bound <= waited[0] < 2 * bound
    assert waited[1] >= 2 * bound


async def test_a_busy_loop_is_not_mistaken_for_a_silent_vendor():
    upstream = FakeUpstream("ok", "hang")
    policy = ResiliencePolicy(
        attempts=1, timeout=60, breaker_failures=1, breaker_stall_after=STALL, merge_max_keys=0
    )
    layer, events = make(upstream, policy, clock=Clock())
    await answered_once(layer)
    task = asyncio.create_task(layer(CRM, "people_by_id", ["a"], far()))
    await upstream.wait_running(1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    # The answer is due well inside the bound, but the loop is busy (a blocking
    # callback) until past it: the stall check and the answer come due together.
    loop.call_at(start + STALL / 5, lambda: time.sleep(2 * STALL))
    loop.call_at(start + STALL / 4, upstream.release.set)
    assert await task == {"a": "record:a"}
    assert ("crm", "stall") not in events
    assert layer.breaker_state("crm") == "closed"


async def test_a_vendor_slow_by_nature_is_not_judged_hung_when_a_call_takes_twice_as_long():
    took = [3 * STALL] * 3 + [6 * STALL]

    async def slow(connector, method, keys, scope):
        await asyncio.sleep(took.pop(0))  # the vendor's time for this call
        return {key: "slow" for key in keys}

    layer, events = make(slow, HANG)
    for key in "abcd":  # one at a time: each waited its whole length for an answer
        assert await call(layer, [key], far()) == {key: "slow"}
    assert "stall" not in {event for _, event in events}
    assert layer.breaker_state("crm") == "closed"
