"""A vendor's "slow down": the cooldown a 429 with ``Retry-After`` starts, per connector.

When a vendor answers 429 with ``Retry-After: R``, it has said when it will
take calls again, and that holds for every call of the gateway's account, not
only the one it refused. :class:`Cooldown` remembers it, so calls in the window
do not each go and discover the 429 again: the resilience layer either waits
for the window to end or fails them at once with the time that is left.

A cooldown is *persistent* once a call that waited out a window (or arrived
after it) is refused again: the vendor's limit outlasts its own
``Retry-After``, so waiting is no longer worth a caller's time. A call the
vendor accepts ends that. No exceptions of its own: it only keeps time.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MAX_COOLDOWN", "Cooldown"]

#: The longest ``Retry-After`` honoured, in seconds. A bogus or clock-skewed
#: HTTP date must not silence a source for hours: past this, one call asks
#: again, and a vendor that still means it says so with a new 429.
MAX_COOLDOWN = 300.0


class Cooldown:
    """``clock`` is monotonic seconds, the same clock the breakers use."""

    __slots__ = ("_clock", "_persistent", "_refused_at", "_until", "_window_end")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until = 0.0
        # The end of the last window, until a call is accepted: a refusal of a
        # call sent at or after it means the limit outlasted the window.
        self._window_end: float | None = None
        self._refused_at = 0.0
        self._persistent = False

    @property
    def persistent(self) -> bool:
        return self._persistent

    def remaining(self) -> float:
        """Seconds until the vendor takes calls again (0 when not cooling down)."""
        if not self._until:  # never refused: the common case costs no clock read
            return 0.0
        return max(0.0, self._until - self._clock())

    def now(self) -> float:
        return self._clock()

    def refused(self, sent_at: float, retry_after: float) -> None:
        """A call sent at ``sent_at`` (this clock) was answered 429 with ``retry_after``."""
        if not retry_after > 0:  # "now" (or NaN from a connector): no window to keep
            return
        if self._window_end is not None and sent_at >= self._window_end:
            self._persistent = True
        now = self._clock()
        self._refused_at = now
        self._until = max(self._until, now + min(retry_after, MAX_COOLDOWN))
        self._window_end = self._until

    def accepted(self, sent_at: float) -> None:
        """The vendor answered a call sent at ``sent_at``: if it was sent after
        the last refusal, whatever limit there was has lifted."""
        if self._window_end is not None and sent_at > self._refused_at:
            self._window_end = None
            self._persistent = False
