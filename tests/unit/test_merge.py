"""Merging batches of different requests into one upstream call (gateway._merge).

The resilience layer against the scripted fake upstream of test_resilience:
calls started in the same pass of the event loop stand for the DataLoader
batches of concurrent requests.
"""

from __future__ import annotations

import asyncio

import pytest

from connectors.sdk import UpstreamBadRequest, UpstreamRateLimited, UpstreamTimeout
from gateway.resilience import ResiliencePolicy
from gateway.upstream import RequestScope
from tests.unit.test_resilience import FakeUpstream, call, make, now


def started(*calls):
    """Each call as a task, all created in this same pass of the loop."""
    return [asyncio.create_task(call(layer, keys, scope)) for layer, keys, scope in calls]


async def test_batches_of_different_requests_in_one_pass_make_one_call():
    upstream = FakeUpstream()
    layer, events = make(upstream)
    first, second = started(
        (layer, ["a"], RequestScope()), (layer, ["b", "c", "a"], RequestScope())
    )
    # Each request gets exactly its own keys back, nothing of the other's.
    assert await first == {"a": "record:a"}
    assert await second == {"b": "record:b", "c": "record:c", "a": "record:a"}
    assert upstream.calls == [("a", "b", "c")]
    assert events == [("crm", "merge")]


async def test_batches_in_different_passes_are_not_merged():
    upstream = FakeUpstream("hang", "hang")
    layer, events = make(upstream)
    first = asyncio.create_task(call(layer, ["a"]))
    await upstream.wait_running(1)
    second = asyncio.create_task(call(layer, ["b"]))
    await upstream.wait_running(2)
    upstream.release.set()
    assert await first == {"a": "record:a"}
    assert await second == {"b": "record:b"}
    assert upstream.calls == [("a",), ("b",)]
    assert events == []


async def test_the_merged_call_runs_until_the_latest_deadline():
    seen: list[float | None] = []

    async def upstream(connector, method, keys, scope):
        seen.append(scope.deadline)
        return {key: key for key in keys}

    layer, _ = make(upstream)
    soon, later = now() + 1, now() + 2
    await asyncio.gather(
        *started((layer, ["a"], RequestScope(soon)), (layer, ["b"], RequestScope(later)))
    )
    await asyncio.gather(
        *started((layer, ["c"], RequestScope(soon)), (layer, ["d"], RequestScope(None)))
    )
    assert seen == [later, None]


async def test_an_impatient_caller_leaves_at_its_deadline_without_cancelling_the_call():
    upstream = FakeUpstream("hang")
    layer, events = make(upstream)
    impatient, patient = started(
        (layer, ["a"], RequestScope(now() + 0.02)), (layer, ["b"], RequestScope())
    )
    with pytest.raises(UpstreamTimeout) as caught:
        await impatient
    assert caught.value.source == "crm"
    assert ("crm", "deadline") in events
    upstream.release.set()
    assert await patient == {"b": "record:b"}
    assert upstream.calls == [("a", "b")]
    assert upstream.cancelled == 0


async def test_a_cancelled_caller_leaves_the_call_to_the_others():
    upstream = FakeUpstream("hang")
    layer, _ = make(upstream)
    leaving, staying = started((layer, ["a"], RequestScope()), (layer, ["b"], RequestScope()))
    await upstream.wait_running(1)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    upstream.release.set()
    assert await staying == {"b": "record:b"}
    assert upstream.cancelled == 0


async def test_the_merged_call_is_cancelled_when_every_caller_has_left():
    upstream = FakeUpstream("hang")
    layer, _ = make(upstream)
    tasks = started((layer, ["a"], RequestScope()), (layer, ["b"], RequestScope()))
    await upstream.wait_running(1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await upstream.wait_idle()
    assert upstream.cancelled == 1


async def test_a_bad_request_fails_only_the_caller_whose_key_caused_it():
    calls: list[tuple[str, ...]] = []

    async def upstream(connector, method, keys, scope):
        calls.append(tuple(keys))
        if "bad" in keys:
            raise UpstreamBadRequest("400: malformed id", source="crm", status=400)
        return {key: f"record:{key}" for key in keys}

    layer, _ = make(upstream)
    bad, good = started((layer, ["bad"], RequestScope()), (layer, ["good"], RequestScope()))
    with pytest.raises(UpstreamBadRequest):
        await bad
    assert await good == {"good": "record:good"}
    assert sorted(calls) == [("bad",), ("bad", "good"), ("good",)]


async def test_a_bad_request_of_identical_batches_is_not_asked_again():
    calls: list[tuple[str, ...]] = []

    async def upstream(connector, method, keys, scope):
        calls.append(tuple(keys))
        raise UpstreamBadRequest("400", source="crm", status=400)

    layer, _ = make(upstream)
    outcomes = await asyncio.gather(
        *started((layer, ["a"], RequestScope()), (layer, ["a"], RequestScope())),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, UpstreamBadRequest) for outcome in outcomes)
    assert calls == [("a",)]


async def test_a_merged_batch_never_exceeds_merge_max_keys():
    upstream = FakeUpstream()
    layer, _ = make(upstream, ResiliencePolicy(merge_max_keys=3))
    results = await asyncio.gather(
        *started(
            (layer, ["a"], RequestScope()),
            (layer, ["b", "c"], RequestScope()),
            (layer, ["d"], RequestScope()),  # would make 4: starts the next batch
            (layer, ["e", "f", "g"], RequestScope()),  # max_keys on its own: goes alone
            (layer, ["h"], RequestScope()),
        )
    )
    assert [sorted(result) for result in results] == [["a"], ["b", "c"], ["d"], list("efg"), ["h"]]
    assert sorted(upstream.calls) == [("a", "b", "c"), ("d", "h"), ("e", "f", "g")]


async def test_merge_max_keys_zero_keeps_every_request_apart():
    upstream = FakeUpstream()
    layer, events = make(upstream, ResiliencePolicy(merge_max_keys=0))
    await asyncio.gather(*started((layer, ["a"], RequestScope()), (layer, ["b"], RequestScope())))
    assert sorted(upstream.calls) == [("a",), ("b",)]
    assert events == []


async def test_different_methods_are_never_merged():
    upstream = FakeUpstream()
    layer, _ = make(upstream)
    await asyncio.gather(
        call(layer, ["a"], method="people_by_id"), call(layer, ["b"], method="people_by_email")
    )
    assert sorted(upstream.calls) == [("a",), ("b",)]


async def test_a_batch_dispatched_one_loop_pass_later_still_shares_the_call():
    # The pass after next polls the sockets: answers that just arrived for
    # other requests get their next batches into this call too.
    upstream = FakeUpstream()
    layer, _ = make(upstream)
    first = asyncio.create_task(call(layer, ["a"]))
    await asyncio.sleep(0)
    assert await asyncio.gather(first, call(layer, ["b"])) == [
        {"a": "record:a"},
        {"b": "record:b"},
    ]
    assert upstream.calls == [("a", "b")]


async def test_a_merged_caller_out_of_time_during_a_cooldown_hears_rate_limited():
    # The merged call waits out the vendor's Retry-After for the patient
    # caller; the impatient one leaves at its deadline, told why.
    refusal = UpstreamRateLimited("crm rate limit reached", source="crm", retry_after=0.3)
    upstream = FakeUpstream(refusal)
    layer, _ = make(upstream)
    impatient, patient = started(
        (layer, ["a"], RequestScope(now() + 0.1)), (layer, ["b"], RequestScope())
    )
    with pytest.raises(UpstreamRateLimited) as caught:
        await impatient
    assert not isinstance(caught.value, UpstreamTimeout)
    assert 0 < caught.value.retry_after <= 0.3
    assert await patient == {"b": "record:b"}
    assert upstream.calls == [("a", "b"), ("a", "b")]
