"""A small circuit breaker for one upstream source, driven by asyncio callers.

Closed: calls pass and consecutive failures are counted; ``threshold`` of them
in a row open the breaker. Open: calls are refused until the open period has
passed. Half-open: exactly one call (the probe) is let through while every
other call is still refused; its success closes the breaker, its failure opens
it again. A probe that ends without a verdict (it was cancelled, or the vendor
only said "slow down") frees the probe slot so the next call probes instead.

The open period is short and random: ``open_for`` times a factor drawn from
1 to 2.5 (2-5 s by default), so a vendor that recovers is asked again within
seconds, and gateway processes that opened together do not probe in lockstep.
Each failed probe doubles the base, up to ``open_max``: a vendor that stays
down is asked less often, and one that comes back after a long outage waits
at most ``open_max`` for its probe.

purgatory was the first choice but does not fit: its half-open state lets
every concurrent call through instead of one probe, it reads the wall clock
(``time.time``) so it cannot be driven by a test clock, and it counts a
cancelled caller as a vendor failure.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

__all__ = ["Admission", "BreakerState", "CircuitBreaker", "Verdict"]

#: The open period is ``base * uniform(1, _SPREAD)``.
_SPREAD = 2.5
#: Doublings of the base after failed probes; open_max caps the period anyway.
_MAX_DOUBLINGS = 32


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
    FAILED = "failed"  # the vendor is unhealthy: timeout, stall, 5xx, connection error
    NEUTRAL = "neutral"  # says nothing about the vendor's health


class CircuitBreaker:
    """Consecutive-failure breaker; ``on_change`` hears ``open``/``half_open``/``closed``.

    ``jitter(low, high)`` draws the open period's factor (``random.uniform``;
    tests pin it).
    """

    def __init__(
        self,
        *,
        threshold: int,
        open_for: float,
        open_max: float | None = None,
        clock: Callable[[], float],
        on_change: Callable[[BreakerState], None] | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._threshold = threshold
        self._open_for = open_for
        self._open_max = open_for * _SPREAD if open_max is None else open_max
        self._clock = clock
        self._on_change = on_change
        self._jitter = jitter
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._failed_probes = 0
        self._until = 0.0  # when an open breaker lets a probe through
        self._probing = False

    @property
    def state(self) -> BreakerState:
        # An open breaker whose time is up reports half-open even before the
        # next call arrives, so a readiness check does not see a stale "open".
        if self._state is BreakerState.OPEN and self.retry_after() == 0.0:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def closed(self) -> bool:
        """Closed as last decided (no clock read): calls pass without probing."""
        return self._state is BreakerState.CLOSED

    @property
    def failed_probes(self) -> int:
        """Probes that failed since the breaker last closed."""
        return self._failed_probes

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._until - self._clock())

    def refuses(self) -> bool:
        """Whether :meth:`admit` would refuse now; takes no probe slot.

        The cheap test a caller makes before any other work: an open breaker
        should cost a refused call nothing but this.
        """
        state = self._state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN:
            return self._clock() < self._until
        return self._probing

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
            if not self._probing:
                return  # judged already (the probe stalled and reopened the breaker)
            self._probing = False
            if verdict is Verdict.HEALTHY:
                self._failures = 0
                self._failed_probes = 0
                self._set(BreakerState.CLOSED)
            elif verdict is Verdict.FAILED:
                self._failed_probes += 1
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

    def trip(self, admission: Admission) -> None:
        """A failure that decides alone (the vendor went silent): open now.

        A probe's trip is its failure; a call admitted while closed opens a
        breaker that is still closed, whatever the count.
        """
        if admission is Admission.PROBE:
            self.record(admission, Verdict.FAILED)
        elif admission is Admission.NORMAL and self._state is BreakerState.CLOSED:
            self._open()

    def _open(self) -> None:
        self._failures = 0
        base = self._open_for * 2.0 ** min(self._failed_probes, _MAX_DOUBLINGS)
        period = min(self._open_max, base * self._jitter(1.0, _SPREAD))
        self._until = self._clock() + period
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        changed = state is not self._state
        self._state = state
        if changed and self._on_change is not None:
            self._on_change(state)
