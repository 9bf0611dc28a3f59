"""The resilience layer against a scripted fake upstream: no HTTP, tiny durations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from types import SimpleNamespace

import pytest

from connectors.sdk import (
    UpstreamBadRequest,
    UpstreamCircuitOpen,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from connectors.sdk.http import call_gate
from gateway.config import ConfigError, settings_from_mapping
from gateway.resilience import (
    EVENTS,
    VENDOR_POLICIES,
    Resilience,
    ResiliencePolicy,
    policies_from_settings,
    policy_from_mapping,
)
from gateway.upstream import RequestScope

CRM = SimpleNamespace(name="crm")
# A bound for every await in this file, so a regression fails instead of hanging.
LIMIT = 5.0


def now() -> float:
    return asyncio.get_running_loop().time()


class FakeUpstream:
    """An UpstreamCall that plays a script of outcomes and records every call.

    An outcome is a mapping (returned), an exception (raised) or "hang" (waits
    for ``release`` and then answers). Past the script it answers found.
    """

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[tuple[str, ...]] = []
        self.started: list[float] = []
        self.running = 0
        self.max_running = 0
        self.cancelled = 0
        self.release = asyncio.Event()
        self.entered = asyncio.Condition()

    async def __call__(self, connector, method, keys, scope):
        self.calls.append(tuple(keys))
        self.started.append(now())
        outcome = self.script.pop(0) if self.script else "ok"
        async with self.entered:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.entered.notify_all()
        try:
            if outcome == "hang":
                await self.release.wait()
                outcome = "ok"
            if isinstance(outcome, BaseException):
                raise outcome
            return {key: f"record:{key}" for key in keys} if outcome == "ok" else outcome
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
            async with self.entered:
                self.entered.notify_all()

    async def wait_running(self, count):
        async with asyncio.timeout(LIMIT), self.entered:
            await self.entered.wait_for(lambda: self.running >= count)

    async def wait_idle(self):
        async with asyncio.timeout(LIMIT), self.entered:
            await self.entered.wait_for(lambda: self.running == 0)


class Clock:
    def __init__(self):
        self.value = 1000.0

    def __call__(self):
        return self.value


def make(upstream, policy=None, **kwargs):
    events: list[tuple[str, str]] = []
    layer = Resilience(
        {"crm": policy or ResiliencePolicy()},
        upstream,
        observer=lambda source, event: events.append((source, event)),
        **kwargs,
    )
    return layer, events


def unavailable():
    return UpstreamUnavailable("503 from crm", source="crm", status=503)


async def call(layer, keys=("a",), scope=None, method="people_by_id"):
    async with asyncio.timeout(LIMIT):
        return await layer(CRM, method, list(keys), scope or RequestScope())


# --- in-flight dedup -------------------------------------------------------


async def test_identical_concurrent_calls_share_one_upstream_call():
    upstream = FakeUpstream("hang", "hang")
    layer, events = make(upstream)
    first = asyncio.create_task(call(layer, ["a", "b"]))
    await upstream.wait_running(1)
    second = asyncio.create_task(call(layer, ["b", "a"]))  # same keys, another order
    other = asyncio.create_task(call(layer, ["c"]))
    await upstream.wait_running(2)
    upstream.release.set()
    assert await first == await second == {"a": "record:a", "b": "record:b"}
    assert await other == {"c": "record:c"}
    assert sorted(upstream.calls) == [("a", "b"), ("c",)]
    assert ("crm", "dedup") in events
    # Once done, the same keys make a fresh call: dedup is not a cache.
    await call(layer, ["a", "b"])
    assert len(upstream.calls) == 3


async def test_a_joiner_with_an_earlier_deadline_leaves_without_cancelling_the_call():
    upstream = FakeUpstream("hang")
    layer, _ = make(upstream)
    owner = asyncio.create_task(call(layer, ["a"]))
    await upstream.wait_running(1)
    with pytest.raises(UpstreamTimeout) as caught:
        await call(layer, ["a"], RequestScope(deadline=now() + 0.02))
    assert caught.value.source == "crm"
    upstream.release.set()
    assert await owner == {"a": "record:a"}
    assert upstream.cancelled == 0
    assert len(upstream.calls) == 1


async def test_the_last_caller_leaving_cancels_the_upstream_call():
    upstream = FakeUpstream("hang")
    layer, _ = make(upstream)
    owner = asyncio.create_task(call(layer, ["a"]))
    await upstream.wait_running(1)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    await upstream.wait_idle()
    assert upstream.cancelled == 1


# --- retries ---------------------------------------------------------------

FAST = ResiliencePolicy(attempts=3, backoff_initial=0.001, backoff_max=0.002)


async def test_retryable_failures_are_retried_until_success():
    upstream = FakeUpstream(unavailable(), UpstreamTimeout("slow", source="crm"))
    layer, events = make(upstream, FAST)
    assert await call(layer) == {"a": "record:a"}
    assert len(upstream.calls) == 3
    assert events.count(("crm", "retry")) == 2


async def test_retries_stop_after_the_configured_attempts():
    upstream = FakeUpstream(*[unavailable() for _ in range(5)])
    layer, _ = make(upstream, FAST)
    with pytest.raises(UpstreamUnavailable):
        await call(layer)
    assert len(upstream.calls) == 3


async def test_a_non_retryable_error_is_not_retried():
    upstream = FakeUpstream(UpstreamBadRequest("400", source="crm", status=400))
    layer, events = make(upstream, FAST)
    with pytest.raises(UpstreamBadRequest):
        await call(layer)
    assert len(upstream.calls) == 1
    assert ("crm", "retry") not in events


async def test_retries_never_start_past_the_request_deadline():
    upstream = FakeUpstream(*[unavailable() for _ in range(1000)])
    policy = ResiliencePolicy(attempts=1000, backoff_initial=0.01, backoff_max=0.01)
    layer, _ = make(upstream, policy)
    deadline = now() + 0.1
    with pytest.raises(UpstreamUnavailable):
        await call(layer, scope=RequestScope(deadline=deadline))
    assert 1 < len(upstream.calls) < 1000
    # The stop rule checks the deadline a few microseconds before the fake
    # records the start; without the rule, retries would go on for 10 s.
    assert max(upstream.started) < deadline + 0.01


async def test_a_backoff_that_oversleeps_the_deadline_reports_the_vendor_error(monkeypatch):
    real_sleep = asyncio.sleep

    async def late_sleep(seconds, *args):
        await real_sleep(seconds + 0.05)  # a loaded event loop fires timers late

    monkeypatch.setattr(asyncio, "sleep", late_sleep)
    upstream = FakeUpstream(unavailable(), unavailable())
    layer, _ = make(upstream, ResiliencePolicy(backoff_initial=0.001, backoff_max=0.001))
    with pytest.raises(UpstreamUnavailable):
        await call(layer, scope=RequestScope(deadline=now() + 0.03))
    assert len(upstream.calls) == 1


async def test_retry_after_is_waited_out():
    upstream = FakeUpstream(UpstreamRateLimited("429", source="crm", retry_after=0.05))
    layer, events = make(upstream, FAST)
    assert await call(layer) == {"a": "record:a"}
    first, second = upstream.started
    assert second - first >= 0.05
    assert ("crm", "retry") in events


async def test_a_retry_after_beyond_the_cap_fails_at_once():
    upstream = FakeUpstream(UpstreamRateLimited("429", source="crm", retry_after=3600))
    layer, _ = make(upstream, ResiliencePolicy(retry_after_max=1.0))
    with pytest.raises(UpstreamRateLimited) as caught:
        await call(layer)
    assert caught.value.retryable
    assert len(upstream.calls) == 1


# --- timeouts and the request deadline -------------------------------------


async def test_an_attempt_past_its_timeout_is_an_upstream_timeout_of_that_source():
    upstream = FakeUpstream("hang")
    layer, events = make(upstream, ResiliencePolicy(timeout=0.02, attempts=1))
    with pytest.raises(UpstreamTimeout) as caught:
        await call(layer)
    assert caught.value.source == "crm"
    assert caught.value.code == "UPSTREAM_TIMEOUT" and caught.value.retryable
    assert upstream.cancelled == 1
    assert ("crm", "timeout") in events


async def test_the_request_deadline_cuts_a_hanging_call_short():
    upstream = FakeUpstream("hang", "hang", "hang")
    layer, events = make(upstream, ResiliencePolicy(timeout=60))
    with pytest.raises(UpstreamTimeout):
        await call(layer, scope=RequestScope(deadline=now() + 0.03))
    assert len(upstream.calls) == 1  # no retry: no time left for one
    assert ("crm", "deadline") in events


async def test_a_call_after_the_deadline_never_reaches_the_vendor():
    upstream = FakeUpstream()
    layer, _ = make(upstream)
    with pytest.raises(UpstreamTimeout):
        await call(layer, scope=RequestScope(deadline=now() - 1))
    assert upstream.calls == []


# --- circuit breaker -------------------------------------------------------

# open_max = open_for: every open period is exactly 30 s, whatever the jitter draws.
BREAKER = ResiliencePolicy(attempts=1, breaker_failures=3, breaker_open_for=30, breaker_open_max=30)


async def open_breaker(layer, upstream):
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await call(layer)
    assert len(upstream.calls) == 3


async def test_breaker_opens_after_repeated_failures_and_refuses_without_calling():
    upstream = FakeUpstream(*[unavailable() for _ in range(3)])
    clock = Clock()
    layer, events = make(upstream, BREAKER, clock=clock)
    await open_breaker(layer, upstream)
    assert layer.breaker_state("crm") == "open"
    for _ in range(5):
        with pytest.raises(UpstreamCircuitOpen) as caught:
            await call(layer)
    error = caught.value
    assert (error.code, error.source, error.retryable) == ("CIRCUIT_OPEN", "crm", True)
    assert error.retry_after == pytest.approx(30)
    assert isinstance(error, UpstreamError)
    assert len(upstream.calls) == 3
    assert ("crm", "breaker_open") in events and ("crm", "short_circuit") in events


async def test_after_the_open_period_exactly_one_probe_goes_through_and_success_closes():
    upstream = FakeUpstream(*[unavailable() for _ in range(3)], "hang")
    clock = Clock()
    layer, events = make(upstream, BREAKER, clock=clock)
    await open_breaker(layer, upstream)
    clock.value += 29
    with pytest.raises(UpstreamCircuitOpen):
        await call(layer)
    clock.value += 1
    probe = asyncio.create_task(call(layer, ["p"]))
    await upstream.wait_running(1)
    assert layer.breaker_state("crm") == "half_open"
    for keys in (["x"], ["y"]):  # other keys: not deduplicated into the probe
        with pytest.raises(UpstreamCircuitOpen):
            await call(layer, keys)
    assert len(upstream.calls) == 4
    upstream.release.set()
    assert await probe == {"p": "record:p"}
    assert layer.breaker_state("crm") == "closed"
    assert await call(layer, ["z"]) == {"z": "record:z"}
    assert [e for s, e in events if e.startswith("breaker_")] == [
        "breaker_open",
        "breaker_half_open",
        "breaker_closed",
    ]


async def test_a_failed_probe_reopens_the_breaker_and_is_not_retried():
    upstream = FakeUpstream(*[unavailable() for _ in range(20)])
    clock = Clock()
    policy = ResiliencePolicy(attempts=3, backoff_initial=0.001, breaker_failures=3)
    layer, events = make(upstream, policy, clock=clock)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await call(layer)
    calls_before_probe = len(upstream.calls)
    assert calls_before_probe == 9  # closed: each call was retried
    clock.value += policy.breaker_open_max
    with pytest.raises(UpstreamUnavailable):
        await call(layer)
    assert len(upstream.calls) == calls_before_probe + 1
    assert layer.breaker_state("crm") == "open"
    with pytest.raises(UpstreamCircuitOpen):
        await call(layer)
    assert len(upstream.calls) == calls_before_probe + 1
    assert events.count(("crm", "breaker_open")) == 2


async def test_breaker_ignores_client_errors_and_rate_limits():
    script = [UpstreamBadRequest("400", source="crm", status=400) for _ in range(5)]
    script += [UpstreamRateLimited("429", source="crm", retry_after=None) for _ in range(5)]
    upstream = FakeUpstream(*script)
    layer, _ = make(upstream, BREAKER)
    for _ in range(10):
        with pytest.raises((UpstreamBadRequest, UpstreamRateLimited)):
            await call(layer)
    assert layer.breaker_state("crm") == "closed"
    assert len(upstream.calls) == 10


async def test_a_success_resets_the_failure_count():
    upstream = FakeUpstream(unavailable(), unavailable(), "ok", unavailable(), unavailable())
    layer, _ = make(upstream, BREAKER)
    for _ in range(5):
        with contextlib.suppress(UpstreamUnavailable):
            await call(layer)
    assert layer.breaker_state("crm") == "closed"


# --- bulkhead and rate limit -----------------------------------------------


async def test_bulkhead_caps_concurrent_calls_per_connector():
    upstream = FakeUpstream(*["hang"] * 5)
    layer, events = make(upstream, ResiliencePolicy(bulkhead=2, merge_max_keys=0))
    tasks = [asyncio.create_task(call(layer, [str(i)])) for i in range(5)]
    await upstream.wait_running(2)
    for _ in range(5):  # give the queued calls every chance to overtake
        await asyncio.sleep(0)
    assert upstream.running == 2
    upstream.release.set()
    results = await asyncio.gather(*tasks)
    assert [r[str(i)] for i, r in enumerate(results)] == [f"record:{i}" for i in range(5)]
    assert upstream.max_running == 2
    assert ("crm", "bulkhead_full") in events


async def test_a_full_bulkhead_does_not_hold_a_call_past_its_deadline():
    upstream = FakeUpstream("hang")
    layer, events = make(upstream, ResiliencePolicy(bulkhead=1))
    hung = asyncio.create_task(call(layer, ["a"]))
    await upstream.wait_running(1)
    with pytest.raises(UpstreamTimeout):
        await call(layer, ["b"], RequestScope(deadline=now() + 0.02))
    assert upstream.calls == [("a",)]
    assert ("crm", "deadline") in events
    upstream.release.set()
    await hung


async def test_rate_limit_spaces_calls():
    upstream = FakeUpstream()
    layer, events = make(
        upstream, ResiliencePolicy(rate_per_second=50, rate_burst=1, merge_max_keys=0)
    )
    await asyncio.gather(*(call(layer, [str(i)]) for i in range(4)))
    gaps = [b - a for a, b in zip(upstream.started, upstream.started[1:], strict=False)]
    assert len(gaps) == 3
    assert all(gap >= 0.02 * 0.95 for gap in gaps), gaps
    assert ("crm", "rate_limited") in events


def chunked_upstream(started):
    """A connector method that makes one vendor call per key, as one that
    chunks or pages its batch does; each call passes the SDK's call gate."""

    async def upstream(connector, method, keys, scope):
        async def one(key):
            gate = call_gate.get()
            if gate is not None:
                await gate()
            started.append(now())
            return key, f"record:{key}"

        return dict(await asyncio.gather(*(one(key) for key in keys)))

    return upstream


async def test_every_vendor_call_of_a_batch_takes_a_token():
    started: list[float] = []
    layer, events = make(
        chunked_upstream(started),
        ResiliencePolicy(rate_per_second=50, rate_burst=1, merge_max_keys=0),
    )
    assert await call(layer, ["a", "b", "c", "d"]) == {k: f"record:{k}" for k in "abcd"}
    started.sort()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert len(gaps) == 3
    assert all(gap >= 0.02 * 0.95 for gap in gaps), gaps
    assert ("crm", "rate_limited") in events


async def test_waiting_for_tokens_within_a_batch_ends_at_the_deadline():
    started: list[float] = []
    layer, events = make(
        chunked_upstream(started),
        ResiliencePolicy(rate_per_second=1, rate_burst=1, attempts=1, merge_max_keys=0),
    )
    with pytest.raises(UpstreamTimeout):
        await call(layer, ["a", "b", "c"], RequestScope(deadline=now() + 0.05))
    assert len(started) == 1  # the call the attempt's own token paid for
    assert ("crm", "rate_limited") in events and ("crm", "deadline") in events


async def test_no_gate_without_a_rate_limit():
    started: list[float] = []
    layer, events = make(chunked_upstream(started), ResiliencePolicy(merge_max_keys=0))
    assert len(await call(layer, [str(i) for i in range(20)])) == 20
    assert "rate_limited" not in {event for _, event in events}


async def test_a_broken_observer_does_not_fail_the_call(caplog):
    def observer(source, event):
        raise RuntimeError("metrics down")

    upstream = FakeUpstream(unavailable())
    layer = Resilience({"crm": FAST}, upstream, observer=observer)
    assert await call(layer) == {"a": "record:a"}
    assert "observer failed" in caplog.text


async def test_every_emitted_event_is_documented():
    upstream = FakeUpstream(unavailable(), "hang")
    layer, events = make(upstream, FAST)
    first = asyncio.create_task(call(layer))
    await upstream.wait_running(1)
    second = asyncio.create_task(call(layer))
    await asyncio.sleep(0)
    upstream.release.set()
    await asyncio.gather(first, second)
    assert events and {event for _, event in events} <= EVENTS


# --- the cheap success path keeps the slow path's rules --------------------
# The first attempt runs outside tenacity, a free bulkhead slot is taken
# without a timeout, and in-flight sharing settles waiters from the task.


@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_attempts_count_the_first_one(attempts):
    upstream = FakeUpstream(*[unavailable() for _ in range(10)])
    policy = ResiliencePolicy(attempts=attempts, backoff_initial=0.001, backoff_max=0.001)
    layer, events = make(upstream, policy)
    with pytest.raises(UpstreamUnavailable):
        await call(layer)
    assert len(upstream.calls) == attempts
    assert events.count(("crm", "retry")) == attempts - 1


async def test_backoff_grows_from_the_first_failure(monkeypatch):
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record_sleep(seconds, *args):
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # jitter at its top
    third = unavailable()
    upstream = FakeUpstream(unavailable(), unavailable(), third)
    policy = ResiliencePolicy(attempts=3, backoff_initial=0.25, backoff_max=10, merge_max_keys=0)
    layer, _ = make(upstream, policy)
    with pytest.raises(UpstreamUnavailable) as caught:
        await call(layer)
    assert slept == [0.25, 0.5]
    # The last failure as it was raised, not chained to the earlier ones.
    assert caught.value is third
    assert caught.value.__context__ is None


async def test_a_free_slot_is_not_reported_as_a_full_bulkhead_and_is_given_back():
    upstream = FakeUpstream(UpstreamBadRequest("400", source="crm", status=400), unavailable())
    # A slot kept after a failure would make the next call queue and time out.
    layer, events = make(upstream, ResiliencePolicy(bulkhead=1, attempts=1, timeout=0.05))
    with pytest.raises(UpstreamBadRequest):
        await call(layer, ["a"])
    with pytest.raises(UpstreamUnavailable):
        await call(layer, ["b"])
    for key in "cd":
        assert await call(layer, [key]) == {key: f"record:{key}"}
    assert len(upstream.calls) == 4
    assert events == []


async def test_the_starter_leaving_does_not_cancel_the_call_for_a_joiner():
    upstream = FakeUpstream("hang")
    layer, events = make(upstream)
    owner = asyncio.create_task(call(layer, ["a"]))
    await upstream.wait_running(1)
    joiner = asyncio.create_task(call(layer, ["a"]))
    await asyncio.sleep(0)  # the joiner joins
    assert ("crm", "dedup") in events
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    upstream.release.set()
    assert await joiner == {"a": "record:a"}
    assert upstream.cancelled == 0
    assert len(upstream.calls) == 1


async def test_a_shared_failure_reaches_every_waiter():
    release = asyncio.Event()
    refusal = UpstreamBadRequest("400", source="crm", status=400)
    calls = []

    async def upstream(connector, method, keys, scope):
        calls.append(keys)
        await release.wait()
        raise refusal

    layer, _ = make(upstream)
    waiters = [asyncio.create_task(call(layer, ["a"])) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters, return_exceptions=True) == [refusal] * 3
    assert len(calls) == 1


async def test_a_call_abandoned_by_its_last_waiter_is_not_joined_afterwards():
    upstream = FakeUpstream("hang")
    layer, _ = make(upstream)
    owner = asyncio.create_task(call(layer, ["a"]))
    await upstream.wait_running(1)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    # At once, before the abandoned call has wound down: a call of its own.
    assert await call(layer, ["a"]) == {"a": "record:a"}
    assert len(upstream.calls) == 2


# --- policies from config --------------------------------------------------


def test_vendor_defaults_follow_published_limits():
    assert policy_from_mapping({}, vendor="stripe").rate_per_second == 20
    assert policy_from_mapping({}, vendor="zendesk").rate_per_second == pytest.approx(200 / 60)
    assert policy_from_mapping({}, vendor="mailchimp").bulkhead == 10
    assert policy_from_mapping({}, vendor="salesforce").bulkhead == 25
    # Merged calls of rate-limited vendors stay within one search's clauses.
    assert policy_from_mapping({}, vendor="stripe").merge_max_keys == 10
    assert policy_from_mapping({}, vendor="zendesk").merge_max_keys == 20
    assert policy_from_mapping({"type": "stripe"}) == VENDOR_POLICIES["stripe"]
    assert policy_from_mapping({}, vendor="unknown") == ResiliencePolicy()


def test_a_resilience_section_overrides_the_vendor_defaults():
    raw = {
        "timeout": 7,
        "resilience": {
            "attempts": 2,
            "backoff": {"initial": 0.2, "max": 1},
            "retry_after_max": 3,
            "breaker": {"failures": 4, "open_for": 10},
            "bulkhead": 6,
            "rate_limit": {"per_minute": 700, "burst": 5},
            "merge_max_keys": 40,
        },
    }
    policy = policy_from_mapping(raw, vendor="zendesk")
    assert policy == ResiliencePolicy(
        timeout=7,
        attempts=2,
        backoff_initial=0.2,
        backoff_max=1,
        retry_after_max=3,
        breaker_failures=4,
        breaker_open_for=10,
        bulkhead=6,
        rate_per_second=700 / 60,
        rate_burst=5,
        merge_max_keys=40,
    )
    assert policy_from_mapping({"timeout": 7, "resilience": {"timeout": 2}}).timeout == 2
    assert policy_from_mapping({"resilience": {"rate_limit": False}}, vendor="stripe") == (
        ResiliencePolicy(merge_max_keys=10)
    )
    burst = policy_from_mapping({"resilience": {"rate_limit": {"per_second": 4.5}}})
    assert (burst.rate_per_second, burst.rate_burst) == (4.5, 5)


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ([1, 2], "connectors.crm.resilience must be a mapping"),
        ({"retries": 3}, "unknown key(s) ['retries']"),
        ({"attempts": True}, "connectors.crm.resilience.attempts must be a number"),
        ({"attempts": 1.5}, "attempts must be a whole number"),
        ({"attempts": 0}, "connectors.crm.resilience.attempts must be >= 1"),
        ({"timeout": "fast"}, "resilience.timeout must be a number"),
        ({"timeout": -1}, "resilience.timeout must be > 0"),
        ({"timeout": float("inf")}, "resilience.timeout must be a number"),
        ({"backoff": {"initial": 2, "max": 1}}, "backoff.max must be >= backoff.initial"),
        ({"backoff": {"min": 1}}, "resilience.backoff: unknown key(s) ['min']"),
        ({"breaker": 5}, "resilience.breaker must be a mapping"),
        ({"breaker": {"failures": 0}}, "breaker.failures must be >= 1"),
        ({"breaker": {"open_for": 0}}, "breaker.open_for must be > 0"),
        (
            {"breaker": {"open_for": 5, "open_max": 4}},
            "connectors.crm.resilience.breaker.open_max must be >= breaker.open_for",
        ),
        ({"breaker": {"stall_after": 0}}, "resilience.breaker.stall_after must be > 0"),
        ({"breaker": {"stall_after": True}}, "breaker.stall_after must be a number"),
        ({"breaker": {"stall_after": "1s"}}, "breaker.stall_after must be a number"),
        ({"breaker": {"probe_after": 1}}, "resilience.breaker: unknown key(s) ['probe_after']"),
        ({"bulkhead": 0}, "bulkhead must be >= 1"),
        ({"rate_limit": {"per_second": 1, "per_minute": 60}}, "not both"),
        ({"rate_limit": {"burst": 3}}, "rate_limit needs per_second or per_minute"),
        ({"rate_limit": {"per_second": 0}}, "rate_limit must be > 0"),
        ({"rate_limit": {"per_second": 5, "burst": 0}}, "rate_limit.burst must be >= 1"),
        ({"merge_max_keys": -1}, "resilience.merge_max_keys must be >= 0"),
        ({"merge_max_keys": False}, "resilience.merge_max_keys must be a number"),
    ],
)
def test_bad_resilience_settings_are_config_errors(section, fragment):
    with pytest.raises(ConfigError) as caught:
        policy_from_mapping({"resilience": section}, where="connectors.crm")
    assert fragment in str(caught.value)


def test_breaker_settings():
    policy = policy_from_mapping(
        {"resilience": {"breaker": {"open_for": 1, "open_max": 60, "stall_after": 2.5}}}
    )
    assert (policy.breaker_open_for, policy.breaker_open_max) == (1, 60)
    assert policy.breaker_stall_after == 2.5
    off = policy_from_mapping({"resilience": {"breaker": {"stall_after": False}}})
    assert off.breaker_stall_after is None
    # An older config's long first period alone stays valid: every period is that long.
    old = policy_from_mapping({"resilience": {"breaker": {"open_for": 30}}})
    assert (old.breaker_open_for, old.breaker_open_max) == (30, 30)
    short = policy_from_mapping({"resilience": {"breaker": {"open_for": 1}}})
    assert (short.breaker_open_for, short.breaker_open_max) == (1, 10)


def test_policies_come_from_the_settings_per_connector():
    settings = settings_from_mapping(
        {
            "connectors": {
                "billing": {"type": "stripe", "base_url": "https://b.example"},
                "tickets": {
                    "type": "zendesk",
                    "base_url": "https://t.example",
                    "resilience": {"bulkhead": 3},
                },
            }
        }
    )
    policies = policies_from_settings(settings)
    assert policies["billing"].rate_per_second == 20
    assert policies["tickets"].bulkhead == 3
    assert policies["tickets"].rate_per_second == pytest.approx(200 / 60)
    with pytest.raises(ConfigError, match=r"connectors\.tickets\.resilience\.bulkhead"):
        policies_from_settings(
            settings_from_mapping(
                {
                    "connectors": {
                        "tickets": {"base_url": "https://t.example", "resilience": {"bulkhead": -1}}
                    }
                }
            )
        )
