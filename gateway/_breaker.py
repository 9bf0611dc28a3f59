"""A small circuit breaker for one upstream source, driven by asyncio callers.

Closed: calls pass and consecutive failures are counted; ``threshold`` of them
in a row open the breaker. Open: calls are refused until ``open_for`` seconds
have passed. Half-open: exactly one call (the probe) is let through while every
other call is still refused; its success closes the breaker, its failure opens
it again for another ``open_for``. A probe that ends without a verdict (it was
cancelled, or the vendor only said "slow down") frees the probe slot so the
next call probes instead.

purgatory was the first choice but does not fit: its half-open state lets
every concurrent call through instead of one probe, it reads the wall clock
(``time.time``) so it cannot be driven by a test clock, and it counts a
cancelled caller as a vendor failure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["Admission", "BreakerState", "CircuitBreaker", "Verdict"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission(enum.Enum):
    REFUSED = "refused"
    NORMAL = "normal"
    PROBE = "probe"


class Verdict(enum.Enum):
    HEALTHY = "healthy"  # the vendor answered (a record, or a 4xx)
    FAILED = "failed"  # the vendor is unhealthy: timeout, 5xx, connection error
    NEUTRAL = "neutral"  # says nothing about the vendor's health


class CircuitBreaker:
    """Consecutive-failure breaker; ``on_change`` hears ``open``/``half_open``/``closed``."""

    def __init__(
        self,
        *,
        threshold: int,
        open_for: float,
        clock: Callable[[], float],
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self._threshold = threshold
        self._open_for = open_for
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        # An open breaker whose time is up reports half-open even before the
        # next call arrives, so a readiness check does not see a stale "open".
        if self._state is BreakerState.OPEN and self.retry_after() == 0.0:
            return BreakerState.HALF_OPEN
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self._clock())

    def admit(self) -> Admission:
        if self._state is BreakerState.CLOSED:
            return Admission.NORMAL
        if self._state is BreakerState.OPEN:
            if self.retry_after() > 0.0:
                return Admission.REFUSED
            self._set(BreakerState.HALF_OPEN)
        if self._probing:
            return Admission.REFUSED
        self._probing = True
        return Admission.PROBE

    def record(self, admission: Admission, verdict: Verdict) -> None:
        """Report how a call admitted with ``admission`` ended."""
        if admission is Admission.PROBE:
            self._probing = False
            if verdict is Verdict.HEALTHY:
                self._failures = 0
                self._set(BreakerState.CLOSED)
            elif verdict is Verdict.FAILED:
                self._open()
            return
        # A call admitted while closed that ends after the breaker changed
        # state is old news: only the probe decides a half-open breaker.
        if admission is not Admission.NORMAL or self._state is not BreakerState.CLOSED:
            return
        if verdict is Verdict.HEALTHY:
            self._failures = 0
        elif verdict is Verdict.FAILED:
            self._failures += 1
            if self._failures >= self._threshold:
                self._open()

    def _open(self) -> None:
        self._failures = 0
        self._opened_at = self._clock()
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        changed = state is not self._state
        self._state = state
        if changed and self._on_change is not None:
            self._on_change(state)
