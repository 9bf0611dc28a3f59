"""Per-connector resilience: the upstream layer between the cache and the connectors.

:class:`Resilience` is an :data:`~gateway.upstream.UpstreamCall`. For each
DataLoader batch, outermost first::

    merge ▸ dedup ▸ breaker ▸ retry ▸ ( cooldown ▸ bulkhead ▸ rate limit ▸ timeout ▸ connector )
                                       └──────────────────── per attempt ────────────────────┘

- merge: batches for the same connector method that different requests
  dispatch within two passes of the event loop become one call for the union
  of their keys (:mod:`gateway._merge`), at most ``merge_max_keys`` keys; each
  caller gets its own keys' records back. The merged call runs until the
  latest of the callers' deadlines, and each caller stops waiting at its own.
  A vendor that rejects a merged call as a bad request (4xx) is asked again
  per caller, so one request's bad key never fails another request's fields.
- dedup: identical in-flight calls (connector, method, same keys) share one
  upstream call, also across requests.
- breaker: after ``breaker_failures`` failed calls in a row the source is cut
  off (:class:`UpstreamCircuitOpen`, no upstream call) for a short random
  period -- ``breaker_open_for`` times 1 to 2.5, doubled after each failed
  probe, at most ``breaker_open_max`` -- then one probe call decides
  (:mod:`gateway._breaker`). An open breaker is checked first, before
  merging, sharing or queueing: a refused call costs nothing else. Only
  failures that mean the vendor is unhealthy count: timeouts, 5xx and
  connection errors. A 4xx means the vendor answered (healthy); a 429 counts
  neither way, because the cooldown deals with it and an open breaker would
  only turn "slow down" into "down".
- stall: a hanging vendor raises nothing until timeouts end its calls, so
  the breaker also opens -- at once, whatever its count -- when a call has
  waited ``breaker_stall_after`` (or 4x the longest the vendor recently kept
  calls waiting) with the vendor answering nothing at all, no page, no other
  call (:mod:`gateway._stall`). When the breaker opens, for any reason, every call
  of that source still waiting is cut: its callers stop waiting, its slot
  comes free, and calls that queued behind it are refused instead of sent.
- retry: only :class:`UpstreamError` with ``retryable`` (every call here is a
  batch read, so idempotent), full-jitter exponential backoff, never past the
  deadline, and no more once the breaker has left "closed". A probe is never
  retried. Between attempts a call holds no bulkhead slot.
- cooldown: a 429 with ``Retry-After`` means the vendor takes no calls from
  this account until then (:mod:`gateway._cooldown`), so no call of that
  connector reaches it in the window, not even another page of a batch. A
  call either waits for the window to end -- only if the wait is at most
  ``retry_after_max``, at most half the time left before its deadline (the
  call after the wait, and whatever needs its answer, get the other half),
  and the call has not waited one out already -- or fails at once with
  :class:`UpstreamRateLimited` carrying the time left, which the cache layer
  answers with a stale record when it holds one. Once a call sent after a
  window is refused again, nobody waits until the vendor accepts a call. A 429
  without ``Retry-After`` is retried after a backoff like any other.
- bulkhead: at most ``bulkhead`` calls in flight per connector; the rest queue.
- rate limit: a leaky bucket (``rate_per_second``, ``rate_burst``) per
  connector that counts vendor calls: every attempt, retries included, takes
  a token before its timeout starts, and each further HTTP call the attempt
  makes (another chunk or page of the batch) takes one within it
  (:data:`connectors.sdk.http.call_gate`).
- timeout: each attempt gets ``min(timeout, scope.deadline - now)``; expiry is
  :class:`UpstreamTimeout` with the connector as ``source``.

No wait anywhere outlives the request deadline: queueing for a slot or a
token is bounded by it (and by ``timeout``) too, so a hanging vendor costs a
query its deadline at most, and its own fields only; once its breaker opens
(about one stall bound into a hang, under load) it costs no wait at all. A
caller whose deadline ends while its connector cools down hears that it was
rate limited, never that the vendor timed out. Every failure a caller sees is one log line
(:mod:`gateway._upstream_log`), each caller of a shared call with its own
request id. Libraries: tenacity for retries (:mod:`gateway._retry`),
aiolimiter for the rate limit; the breaker is :mod:`gateway._breaker` (why:
see there).

Errors raised here (besides the connectors' own)::

    UpstreamTimeout
    └── _QueuedTooLong      time ran out before the call reached the vendor
    UpstreamRateLimited
    └── _CoolingDown        refused without a call: the vendor's Retry-After has not passed
    UpstreamCircuitOpen     the breaker is open

(A call cut because its breaker opened is an ``UpstreamTimeout``: the vendor
did not answer in time.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from aiolimiter import AsyncLimiter

from connectors.sdk import (
    Connector,
    UpstreamBadRequest,
    UpstreamCircuitOpen,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from connectors.sdk.http import call_gate
from gateway._breaker import Admission, BreakerState, CircuitBreaker, Verdict
from gateway._cooldown import Cooldown
from gateway._inflight import InFlight, WaitExpired
from gateway._merge import Batch, Merger, sealed
from gateway._resilience_policy import VENDOR_POLICIES, ResiliencePolicy, policy_from_mapping
from gateway._retry import retry_after_failure
from gateway._stall import Live, StallWatch
from gateway._upstream_log import log_failure
from gateway.config import Settings
from gateway.upstream import RequestScope, UpstreamCall, direct_call

__all__ = [
    "EVENTS",
    "VENDOR_POLICIES",
    "Observer",
    "Resilience",
    "ResiliencePolicy",
    "policies_from_settings",
    "policy_from_mapping",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_CallKey = tuple[str, str, frozenset[str]]  # source, method, keys

Observer = Callable[[str, str], None]
"""``observer(source, event)``; ``event`` is one of :data:`EVENTS`."""

EVENTS = frozenset(
    {
        "merge",  # a call joined another request's batch for the same method
        "dedup",  # a call joined an identical call already in flight
        "short_circuit",  # refused at once: the breaker is open
        "stall",  # the vendor said nothing for the stall bound while a call waited: a failure
        "cut",  # a call in flight was ended because its breaker opened
        "breaker_open",
        "breaker_half_open",
        "breaker_closed",
        "bulkhead_full",  # a call had to queue for a slot
        "rate_limited",  # a call had to wait for the client-side rate limit
        "cooldown",  # refused at once: the vendor's Retry-After has not passed
        "cooldown_wait",  # a call waited for the vendor's Retry-After to pass
        "retry",  # a failed attempt is retried (after a backoff or a cooldown_wait)
        "timeout",  # an attempt or a queue wait hit the per-call timeout
        "deadline",  # the request deadline cut a call short
    }
)


#: The share of the time left before its deadline a call may spend waiting
#: for a vendor's Retry-After: the call after the wait, and the calls that need
#: its answer (a customer's subscriptions need the customer), get the rest.
#: Identity resolution gives one round half of what is left, too.
_WAIT_SHARE = 0.5


class _QueuedTooLong(UpstreamTimeout):
    """Time ran out before the call reached the vendor: says nothing about its health."""


class _CoolingDown(UpstreamRateLimited):
    """Refused without a call: the vendor's Retry-After has not passed. Never retried."""


@dataclass(slots=True)
class _Guard:
    policy: ResiliencePolicy
    breaker: CircuitBreaker
    bulkhead: asyncio.Semaphore
    limiter: AsyncLimiter | None
    cooldown: Cooldown
    watch: StallWatch


class _Patience:
    """One call's allowance of cooldown waits (across its attempts): one."""

    __slots__ = ("waited",)

    def __init__(self) -> None:
        self.waited = False


def policies_from_settings(settings: Settings) -> dict[str, ResiliencePolicy]:
    """One policy per configured connector, from its ``resilience:`` section."""
    return {
        c.name: policy_from_mapping(c.raw, vendor=c.kind, where=f"connectors.{c.name}")
        for c in settings.connectors
    }


def _verdict(exc: UpstreamError) -> Verdict:
    if isinstance(exc, _QueuedTooLong | UpstreamRateLimited):
        return Verdict.NEUTRAL
    return Verdict.FAILED if exc.retryable else Verdict.HEALTHY


def _retryable(exc: BaseException) -> bool:
    return (
        isinstance(exc, UpstreamError)
        and exc.retryable
        and not isinstance(exc, _QueuedTooLong | _CoolingDown)
    )


def _heard(exc: UpstreamError) -> bool:
    """Whether the vendor said something (a status, a body) before ``exc``."""
    return exc.status is not None and not isinstance(exc, _CoolingDown)


def _cooling_down(source: str, left: float) -> _CoolingDown:
    return _CoolingDown(f"{source} rate limit reached", source=source, retry_after=left)


class _Gate:
    """One attempt's vendor calls: the first was let through by the attempt
    (cooldown checked, token taken); each further one (another chunk or page)
    is refused during a cooldown and takes its own token. Each answer is news
    for the stall watch."""

    __slots__ = ("_cooldown", "_emit", "_limiter", "_prepaid", "_source", "_watch")

    def __init__(
        self,
        source: str,
        cooldown: Cooldown,
        limiter: AsyncLimiter | None,
        emit: Callable[[str, str], None],
        watch: StallWatch,
    ) -> None:
        self._source = source
        self._cooldown = cooldown
        self._limiter = limiter
        self._emit = emit
        self._watch = watch
        self._prepaid = True

    def answered(self) -> None:
        """The vendor answered one HTTP call (a chunk or page of the batch): not silent."""
        self._watch.answered()

    async def __call__(self) -> None:
        if self._prepaid:
            self._prepaid = False
            return
        left = self._cooldown.remaining()
        if left:
            # Mid-attempt: waiting here would spend the attempt's timeout.
            self._emit(self._source, "cooldown")
            raise _cooling_down(self._source, left)
        limiter = self._limiter
        if limiter is None:
            return
        if not limiter.has_capacity():
            self._emit(self._source, "rate_limited")
        await limiter.acquire()


class Resilience:
    """The resilience layer; connectors missing from ``policies`` get the defaults.

    ``clock`` drives the breakers' open periods and the cooldowns (monotonic
    seconds; tests pass a fake). Build one per event loop: its semaphores and
    limiters bind to it.
    """

    def __init__(
        self,
        policies: Mapping[str, ResiliencePolicy],
        inner: UpstreamCall = direct_call,
        *,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policies = dict(policies)
        self._inner = inner
        self._observer = observer
        self._clock = clock
        self._guards: dict[str, _Guard] = {}
        self._in_flight: InFlight[_CallKey, Mapping[str, Any]] = InFlight(on_join=self._joined)
        self._merger = Merger()

    def breaker_state(self, source: str) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``: for readiness checks and gauges."""
        return self._guard(source).breaker.state.value

    async def __call__(
        self, connector: Connector, method: str, keys: Sequence[str], scope: RequestScope
    ) -> Mapping[str, Any]:
        source = connector.name
        # One coroutine, not two: this runs for every batch that misses the cache.
        try:
            if scope.deadline is not None and asyncio.get_running_loop().time() >= scope.deadline:
                self._emit(source, "deadline")
                raise _QueuedTooLong(f"{source}: the request deadline had passed", source=source)
            guard = self._guard(source)
            if guard.breaker.refuses():
                # Before merging and sharing: an open breaker costs a caller nothing more.
                raise self._refused(source, guard.breaker)
            if guard.cooldown.remaining():
                # Fail now rather than after merging, when this caller may not wait.
                self._cooldown_wait(guard, source, scope.deadline, _Patience())
            key = (source, method, frozenset(keys))
            max_keys = guard.policy.merge_max_keys
            # The same keys already in flight: joining that call beats a new one.
            if max_keys and key not in self._in_flight:
                batch = self._merger.join((source, method), keys, scope.deadline, max_keys)
                if batch is not None:
                    if batch.callers > 1:
                        self._emit(source, "merge")
                    await sealed(batch)
                    if batch.callers > 1:
                        return await self._merged(batch, connector, method, keys, scope)
            return await self._shared(key, scope.deadline, connector, method, keys, scope)
        except _QueuedTooLong as exc:
            left = self._guard(source).cooldown.remaining()
            if not left:
                log_failure(exc, connector=source, operation=method, request_id=scope.request_id)
                raise
            # Out of time while the vendor had asked for a pause: that, not
            # a slow vendor, is why this caller has no answer.
            limited = _cooling_down(source, left)
            log_failure(limited, connector=source, operation=method, request_id=scope.request_id)
            raise limited from exc
        except UpstreamError as exc:
            log_failure(exc, connector=source, operation=method, request_id=scope.request_id)
            raise

    async def _shared(
        self,
        key: _CallKey,
        deadline: float | None,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
        *,
        announce: bool = True,
    ) -> Mapping[str, Any]:
        try:
            return await self._in_flight.run(
                key, deadline, self._guarded, connector, method, keys, scope, announce=announce
            )
        except WaitExpired as exc:
            self._emit(key[0], "deadline")
            raise _QueuedTooLong(f"{key[0]} did not answer in time", source=key[0]) from exc

    async def _merged(
        self,
        batch: Batch,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
    ) -> Mapping[str, Any]:
        source = connector.name
        merged = list(batch.keys)
        call = self._shared(
            (source, method, frozenset(merged)),
            batch.deadline,
            connector,
            method,
            merged,
            RequestScope(deadline=batch.deadline),
            announce=False,
        )
        mine = scope.deadline
        try:
            if mine is None or (batch.deadline is not None and mine >= batch.deadline):
                found = await call
            else:
                message = f"{source} did not answer in time"
                found = await self._by(mine, call, source, "deadline", _QueuedTooLong, message)
        except UpstreamBadRequest:
            if len(merged) == len(keys):  # only this caller's keys: nobody else to blame
                raise
            # Maybe another request's key: each caller asks again for its own.
            return await self._shared(
                (source, method, frozenset(keys)), mine, connector, method, keys, scope
            )
        return {key: found[key] for key in keys if key in found}

    def _joined(self, key: _CallKey) -> None:
        self._emit(key[0], "dedup")

    async def _guarded(
        self, connector: Connector, method: str, keys: Sequence[str], scope: RequestScope
    ) -> Mapping[str, Any]:
        source = connector.name
        guard = self._guard(source)
        breaker = guard.breaker
        admission = breaker.admit()
        if admission is Admission.REFUSED:
            raise self._refused(source, breaker)
        verdict = Verdict.NEUTRAL
        try:
            found = await self._attempts(guard, admission, connector, method, keys, scope)
            verdict = Verdict.HEALTHY
            return found
        except UpstreamError as exc:
            verdict = _verdict(exc)
            raise
        finally:
            breaker.record(admission, verdict)

    def _refused(self, source: str, breaker: CircuitBreaker) -> UpstreamCircuitOpen:
        self._emit(source, "short_circuit")
        return UpstreamCircuitOpen(
            f"{source} is failing; calls resume after a successful probe",
            source=source,
            retry_after=breaker.retry_after(),
        )

    async def _queue(
        self,
        wait: Callable[[], Awaitable[Any]],
        guard: _Guard,
        source: str,
        scope: RequestScope,
        what: str,
    ) -> None:
        until, by_deadline = self._bound(guard, scope)
        event = "deadline" if by_deadline else "timeout"
        await self._by(
            until,
            wait(),
            source,
            event,
            _QueuedTooLong,
            f"{source}: no {what} in time",
        )

    async def _by(
        self,
        until: float,
        work: Awaitable[T],
        source: str,
        event: str,
        late: type[UpstreamTimeout],
        message: str,
    ) -> T:
        """``work``'s result, or ``late(message)`` raised (and ``event`` emitted) at ``until``."""
        timeout = asyncio.timeout_at(until)
        try:
            async with timeout:
                return await work
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            self._emit(source, event)
            raise late(message, source=source) from exc

    def _bound(self, guard: _Guard, scope: RequestScope) -> tuple[float, bool]:
        until = asyncio.get_running_loop().time() + guard.policy.timeout
        if scope.deadline is not None and scope.deadline <= until:
            return scope.deadline, True
        return until, False

    async def _attempts(
        self,
        guard: _Guard,
        admission: Admission,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
    ) -> Mapping[str, Any]:
        patience = _Patience()
        # The first attempt runs bare: almost every call succeeds at once, and
        # the retry machinery is only worth building once one did not.
        try:
            return await self._attempt(guard, admission, patience, connector, method, keys, scope)
        except UpstreamError as exc:
            if not _retryable(exc):
                raise
            first = exc
        # Out of the except block, so later failures do not chain to the first.
        breaker = guard.breaker
        return await retry_after_failure(
            first,
            partial(self._attempt, guard, admission, patience, connector, method, keys, scope),
            guard.policy,
            deadline=scope.deadline,
            retryable=_retryable,
            # Other calls' failures may open the breaker meanwhile; and a probe
            # (breaker half-open) asks one question of a recovering vendor.
            give_up=lambda: not breaker.closed,
            on_retry=partial(self._emit, connector.name, "retry"),
        )

    async def _attempt(
        self,
        guard: _Guard,
        admission: Admission,
        patience: _Patience,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
    ) -> Mapping[str, Any]:
        source = connector.name
        cooldown = guard.cooldown
        bulkhead = guard.bulkhead
        while True:
            if cooldown.remaining():
                await self._sit_out(guard, source, scope, patience)
            await self._slot(guard, source, scope)
            try:
                await self._token(guard, source, scope)
            except BaseException:
                bulkhead.release()
                raise
            if admission is Admission.NORMAL and not guard.breaker.closed:
                # The breaker opened while this call queued or backed off.
                bulkhead.release()
                raise self._refused(source, guard.breaker)
            if not cooldown.remaining():
                break
            # A 429 arrived while this call queued: back to the gate, slot given back.
            bulkhead.release()
        try:
            return await self._send(guard, admission, connector, method, keys, scope)
        finally:
            bulkhead.release()

    async def _send(
        self,
        guard: _Guard,
        admission: Admission,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
    ) -> Mapping[str, Any]:
        """One call to the vendor, bounded by the attempt's timeout, watched for a stall."""
        source = connector.name
        cooldown = guard.cooldown
        watch = guard.watch
        until, by_deadline = self._bound(guard, scope)
        gate = call_gate.set(_Gate(source, cooldown, guard.limiter, self._emit, watch))
        sent = cooldown.now()
        timeout = asyncio.timeout_at(until)
        live: Live | None = None
        try:
            async with timeout:
                doublings = guard.breaker.failed_probes if admission is Admission.PROBE else 0
                live = watch.begin(admission, timeout, until, doublings)
                found = await self._inner(connector, method, keys, scope)
            watch.answered()
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            if live is not None and live.cut:
                event = "cut"
            else:
                event = "deadline" if by_deadline else "timeout"
            self._emit(source, event)
            raise UpstreamTimeout(f"{source} did not answer in time", source=source) from exc
        except UpstreamError as exc:
            if _heard(exc):
                watch.answered()
            if (
                isinstance(exc, UpstreamRateLimited)
                and exc.retry_after is not None
                and not isinstance(exc, _CoolingDown)
            ):
                cooldown.refused(sent, exc.retry_after)
            raise
        finally:
            if live is not None:
                watch.end(live)
            call_gate.reset(gate)
        cooldown.accepted(sent)
        return found

    async def _slot(self, guard: _Guard, source: str, scope: RequestScope) -> None:
        bulkhead = guard.bulkhead
        if bulkhead.locked():
            self._emit(source, "bulkhead_full")
            await self._queue(bulkhead.acquire, guard, source, scope, "a free call slot")
        else:
            await bulkhead.acquire()  # a free slot is taken at once: nothing to bound

    async def _token(self, guard: _Guard, source: str, scope: RequestScope) -> None:
        limiter = guard.limiter
        if limiter is None:
            return
        if limiter.has_capacity():
            await limiter.acquire()  # a token is free: taken at once, nothing to bound
        else:
            self._emit(source, "rate_limited")
            await self._queue(limiter.acquire, guard, source, scope, "rate-limit token")

    async def _sit_out(
        self, guard: _Guard, source: str, scope: RequestScope, patience: _Patience
    ) -> None:
        """Wait for the connector's cooldown to end, or raise :class:`_CoolingDown`."""
        wait = self._cooldown_wait(guard, source, scope.deadline, patience)
        patience.waited = True
        self._emit(source, "cooldown_wait")
        # Holding no slot and no token: other calls' slots stay free.
        await asyncio.sleep(wait)

    def _cooldown_wait(
        self, guard: _Guard, source: str, deadline: float | None, patience: _Patience
    ) -> float:
        """Seconds to wait for the cooldown's end, if this call may; else raise."""
        cooldown = guard.cooldown
        left = cooldown.remaining()
        policy = guard.policy
        # A little jitter, so the calls that waited do not come back in lockstep.
        wait = left + random.uniform(0, policy.backoff_initial)
        if (
            patience.waited
            or cooldown.persistent
            or left > policy.retry_after_max
            or (
                deadline is not None
                and wait > (deadline - asyncio.get_running_loop().time()) * _WAIT_SHARE
            )
        ):
            self._emit(source, "cooldown")
            raise _cooling_down(source, left)
        return wait

    def _guard(self, source: str) -> _Guard:
        guard = self._guards.get(source)
        if guard is None:
            policy = self._policies.get(source) or ResiliencePolicy()
            limiter = None
            if policy.rate_per_second is not None:
                # aiolimiter's bucket holds max_rate tokens refilled over time_period.
                limiter = AsyncLimiter(
                    policy.rate_burst, policy.rate_burst / policy.rate_per_second
                )
            guard = _Guard(
                policy=policy,
                breaker=CircuitBreaker(
                    threshold=policy.breaker_failures,
                    open_for=policy.breaker_open_for,
                    open_max=policy.breaker_open_max,
                    clock=self._clock,
                    on_change=partial(self._breaker_changed, source),
                ),
                bulkhead=asyncio.Semaphore(policy.bulkhead),
                limiter=limiter,
                cooldown=Cooldown(self._clock),
                watch=StallWatch(policy.breaker_stall_after, partial(self._stalled, source)),
            )
            self._guards[source] = guard
        return guard

    def _breaker_changed(self, source: str, state: BreakerState) -> None:
        self._emit(source, f"breaker_{state.value}")
        if state is BreakerState.OPEN:
            # Given up on: nobody waits for it any longer, and the slots come free.
            self._guards[source].watch.cut()

    def _stalled(self, source: str, live: Live) -> None:
        self._emit(source, "stall")
        # Not one failed call: the vendor as a whole has said nothing for
        # longer than it ever takes to answer. Open now (cutting every call).
        self._guards[source].breaker.trip(live.admission)

    def _emit(self, source: str, event: str) -> None:
        if self._observer is None:
            return
        try:
            self._observer(source, event)
        except Exception:
            # Metrics must never fail a customer's query.
            log.exception("resilience observer failed on %s %s", source, event)
