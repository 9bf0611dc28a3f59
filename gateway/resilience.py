"""Per-connector resilience: the upstream layer between the cache and the connectors.

:class:`Resilience` is an :data:`~gateway.upstream.UpstreamCall`. For each
DataLoader batch, outermost first::

    merge ▸ dedup ▸ breaker ▸ bulkhead ▸ retry ▸ ( rate limit ▸ timeout ▸ connector ) per attempt

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
  off for ``breaker_open_for`` seconds (:class:`UpstreamCircuitOpen`, no
  upstream call), then one probe call decides. Only failures that mean the
  vendor is unhealthy count: timeouts, 5xx and connection errors. A 4xx means
  the vendor answered (healthy); a 429 counts neither way, because the client
  side rate limit and ``Retry-After`` deal with it and an open breaker would
  only turn "slow down" into "down".
- bulkhead: at most ``bulkhead`` calls in flight per connector; the rest queue.
- retry: only :class:`UpstreamError` with ``retryable`` (every call here is a
  batch read, so idempotent), full-jitter exponential backoff, ``Retry-After``
  waited out when at most ``retry_after_max`` (a longer one fails at once:
  calling earlier than the vendor asked is pointless), never past the deadline,
  and no more once the breaker has left "closed". A probe is never retried.
- rate limit: a leaky bucket (``rate_per_second``, ``rate_burst``) per
  connector that counts vendor calls: every attempt, retries included, takes
  a token before its timeout starts, and each further HTTP call the attempt
  makes (another chunk or page of the batch) takes one within it
  (:data:`connectors.sdk.http.call_gate`).
- timeout: each attempt gets ``min(timeout, scope.deadline - now)``; expiry is
  :class:`UpstreamTimeout` with the connector as ``source``.

No wait anywhere outlives the request deadline: queueing for a slot or a
token is bounded by it (and by ``timeout``) too, so a hanging vendor costs a
query its deadline and no more, and its own fields only. Libraries: tenacity
for retries (:mod:`gateway._retry`), aiolimiter for the rate limit; the
breaker is :mod:`gateway._breaker` (why: see there).
"""

from __future__ import annotations

import asyncio
import logging
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
from gateway._inflight import InFlight, WaitExpired
from gateway._merge import Batch, Merger, sealed
from gateway._resilience_policy import VENDOR_POLICIES, ResiliencePolicy, policy_from_mapping
from gateway._retry import retry_after_failure
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
        "breaker_open",
        "breaker_half_open",
        "breaker_closed",
        "bulkhead_full",  # a call had to queue for a slot
        "rate_limited",  # a call had to wait for the client-side rate limit
        "retry",  # a failed attempt is retried after a backoff
        "timeout",  # an attempt or a queue wait hit the per-call timeout
        "deadline",  # the request deadline cut a call short
    }
)


class _QueuedTooLong(UpstreamTimeout):
    """Time ran out before the call reached the vendor: says nothing about its health."""


@dataclass(slots=True)
class _Guard:
    policy: ResiliencePolicy
    breaker: CircuitBreaker
    bulkhead: asyncio.Semaphore
    limiter: AsyncLimiter | None


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
    return isinstance(exc, UpstreamError) and exc.retryable and not isinstance(exc, _QueuedTooLong)


class _Gate:
    """One attempt's vendor calls: the first rides on the token the attempt
    took; each further one (another chunk or page) takes its own."""

    __slots__ = ("_limiter", "_on_wait", "_prepaid")

    def __init__(self, limiter: AsyncLimiter, on_wait: Callable[[], None]) -> None:
        self._limiter = limiter
        self._on_wait = on_wait
        self._prepaid = True

    async def __call__(self) -> None:
        if self._prepaid:
            self._prepaid = False
            return
        if not self._limiter.has_capacity():
            self._on_wait()
        await self._limiter.acquire()


class Resilience:
    """The resilience layer; connectors missing from ``policies`` get the defaults.

    ``clock`` drives the breakers' open periods (monotonic seconds; tests pass
    a fake). Build one per event loop: its semaphores and limiters bind to it.
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
        if scope.deadline is not None and asyncio.get_running_loop().time() >= scope.deadline:
            self._emit(source, "deadline")
            raise _QueuedTooLong(f"{source}: the request deadline had passed", source=source)
        key = (source, method, frozenset(keys))
        max_keys = self._guard(source).policy.merge_max_keys
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
            self._emit(source, "short_circuit")
            raise UpstreamCircuitOpen(
                f"{source} is failing; calls resume after a successful probe",
                source=source,
                retry_after=breaker.retry_after(),
            )
        bulkhead = guard.bulkhead
        verdict = Verdict.NEUTRAL
        try:
            if bulkhead.locked():
                self._emit(source, "bulkhead_full")
                await self._queue(bulkhead.acquire, guard, source, scope, "a free call slot")
            else:
                await bulkhead.acquire()  # a free slot is taken at once: nothing to bound
            try:
                found = await self._attempts(guard, connector, method, keys, scope)
            except UpstreamError as exc:
                verdict = _verdict(exc)
                raise
            finally:
                bulkhead.release()
            verdict = Verdict.HEALTHY
            return found
        finally:
            breaker.record(admission, verdict)

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
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
    ) -> Mapping[str, Any]:
        # The first attempt runs bare: almost every call succeeds at once, and
        # the retry machinery is only worth building once one did not.
        try:
            return await self._attempt(guard, connector, method, keys, scope)
        except UpstreamError as exc:
            if not _retryable(exc):
                raise
            first = exc
        # Out of the except block, so later failures do not chain to the first.
        breaker = guard.breaker
        return await retry_after_failure(
            first,
            partial(self._attempt, guard, connector, method, keys, scope),
            guard.policy,
            deadline=scope.deadline,
            retryable=_retryable,
            # Other calls' failures may open the breaker meanwhile; and a probe
            # (breaker half-open) asks one question of a recovering vendor.
            give_up=lambda: breaker.state is not BreakerState.CLOSED,
            on_retry=partial(self._emit, connector.name, "retry"),
        )

    async def _attempt(
        self,
        guard: _Guard,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
    ) -> Mapping[str, Any]:
        source = connector.name
        limiter = guard.limiter
        if limiter is not None:
            if limiter.has_capacity():
                await limiter.acquire()  # a token is free: taken at once, nothing to bound
            else:
                self._emit(source, "rate_limited")
                await self._queue(limiter.acquire, guard, source, scope, "rate-limit token")
        until, by_deadline = self._bound(guard, scope)
        metered = None
        if limiter is not None:
            metered = call_gate.set(_Gate(limiter, partial(self._emit, source, "rate_limited")))
        try:
            return await self._by(
                until,
                self._inner(connector, method, keys, scope),
                source,
                "deadline" if by_deadline else "timeout",
                UpstreamTimeout,
                f"{source} did not answer in time",
            )
        finally:
            if metered is not None:
                call_gate.reset(metered)

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
                    clock=self._clock,
                    on_change=partial(self._breaker_changed, source),
                ),
                bulkhead=asyncio.Semaphore(policy.bulkhead),
                limiter=limiter,
            )
            self._guards[source] = guard
        return guard

    def _breaker_changed(self, source: str, state: BreakerState) -> None:
        self._emit(source, f"breaker_{state.value}")

    def _emit(self, source: str, event: str) -> None:
        if self._observer is None:
            return
        try:
            self._observer(source, event)
        except Exception:
            # Metrics must never fail a customer's query.
            log.exception("resilience observer failed on %s %s", source, event)
