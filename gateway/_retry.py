"""The retry policy of the resilience layer, built on tenacity.

tenacity rather than stamina: stamina's instrumentation hooks are process-wide
and its time limit is fixed per decorator, while here the stop rule, the wait
and the hook differ per connector and per request (the request deadline).

The caller makes the first attempt itself and comes here only once it failed
with a retryable error: nearly every call succeeds at once, and a tenacity
retrier with its closures costs more CPU than the call it would wrap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from connectors.sdk import UpstreamRateLimited
from gateway._resilience_policy import ResiliencePolicy

__all__ = ["retry_after_failure"]

T = TypeVar("T")


def _retry_after(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc.retry_after if isinstance(exc, UpstreamRateLimited) else None


class _OutOfTime(Exception):
    """The backoff sleep overslept the deadline (timers may fire late)."""


async def retry_after_failure(
    first: BaseException,
    attempt: Callable[[], Awaitable[T]],
    policy: ResiliencePolicy,
    *,
    deadline: float | None,
    retryable: Callable[[BaseException], bool],
    give_up: Callable[[], bool],
    on_retry: Callable[[], None],
) -> T:
    """Go on awaiting ``attempt()`` after its first run failed with ``first``.

    Waits full-jitter exponential backoff between attempts, except after a
    failure that carries the vendor's ``Retry-After``: the next attempt starts
    at once and waits out the connector's cooldown itself, or fails fast when
    it may not (the resilience layer decides, with every other call of the
    connector). Stops after ``policy.attempts`` (the first one included), when
    the next attempt would start at or after ``deadline`` (loop time), and
    when ``give_up()`` says so (the breaker opened meanwhile). The last
    failure is re-raised as it was.
    """
    loop = asyncio.get_running_loop()
    backoff = wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)
    last: list[BaseException] = []
    replayed = False

    async def attempts() -> T:
        # tenacity's attempt 1 replays the caller's failure, so attempt
        # numbers, the backoff exponent and the stop rules are tenacity's own.
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first
        return await attempt()

    def wait(state: RetryCallState) -> float:
        return 0.0 if _retry_after(state) is not None else float(backoff(state))

    def stop(state: RetryCallState) -> bool:
        return (
            state.attempt_number >= policy.attempts
            or (deadline is not None and loop.time() + state.upcoming_sleep >= deadline)
            or give_up()
        )

    def before_sleep(state: RetryCallState) -> None:
        if state.outcome is not None and (failure := state.outcome.exception()) is not None:
            last[:] = [failure]
        on_retry()

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)
        if deadline is not None and loop.time() >= deadline:
            raise _OutOfTime

    # A fresh retrier per call: tenacity keeps per-call state on the object.
    retrier = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(retryable),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        result: T = await retrier(attempts)
    except _OutOfTime:
        raise last[0] from None
    return result
