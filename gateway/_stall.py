"""Hang detection for one source: the calls in flight, and how long the vendor has been silent.

A vendor that hangs raises nothing: each call only fails when its timeout or
its request's deadline ends it, seconds later, and until the breaker has
counted enough of those every request waits that long. :class:`StallWatch`
judges sooner. A call *stalls* once the vendor has answered nothing -- not
this call, no page or chunk of it, nor any other call of the source -- for
the stall bound: ``stall_after``, or four times the longest silence before
any of the source's last 32 answers when that is longer. A silence is how
long calls had waited with no answer at all when an answer came: the time a
call took, for a source that serves one call at a time (a vendor that is
slow by nature is not hanging); the gap between answers, for a busy one.
A stall is then not one failed call but the whole vendor silent for much
longer than it ever is, so the resilience layer opens the breaker at once,
whatever its failure count. Calls that overlap an answer do not stall: a long
call among answered ones is a big batch, not a hang. A probe after failed
probes gets a longer bound each time (doubled, up to 8x), so a vendor that
has become slower than its history can still close the breaker.

Until the source has answered once there is no silence to go by, so nothing
stalls: its timeouts alone judge it.

When the breaker opens, :meth:`StallWatch.cut` ends every call in flight at
once: nobody waits for a source the gateway has given up on, and their
bulkhead slots come free. No exceptions of its own: the resilience layer
turns a cut into :class:`~connectors.sdk.UpstreamTimeout`.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway._breaker import Admission

__all__ = ["Live", "StallWatch"]

#: A stall is this many times the longest recent silence, at least.
_FACTOR = 4.0
#: Answers whose silences are remembered.
_WINDOW = 32
#: A probe after failed ones may wait up to 2**this times the bound.
_PROBE_DOUBLINGS = 3
#: A call found stalled is looked at again this much later before it counts: a
#: loop that was busy fires its timers before it hands over the answers that
#: arrived meanwhile, and those must not be mistaken for silence.
_SETTLE = 0.05


@dataclass(slots=True, eq=False)
class Live:
    """One attempt waiting for the vendor; ``bound`` None: it cannot stall
    (no history yet, or its own timeout comes first), or it was judged."""

    admission: Admission
    timeout: asyncio.Timeout
    started: float
    bound: float | None
    cut: bool = False


class StallWatch:
    """``stall_after`` None: nothing stalls. ``on_stall(live)`` runs on the loop.

    One timer per source, not one per call: it is armed for the earliest
    moment any waiting call could stall and, when it fires, looks again.
    """

    __slots__ = (
        "_answered_at",
        "_live",
        "_longest",
        "_on_stall",
        "_recent",
        "_stall_after",
        "_timer",
        "_timer_at",
    )

    def __init__(self, stall_after: float | None, on_stall: Callable[[Live], None]) -> None:
        self._stall_after = stall_after
        self._on_stall = on_stall
        self._recent: deque[float] = deque(maxlen=_WINDOW)  # silences before answers
        self._longest = 0.0
        self._answered_at = -math.inf
        # Insertion order is start order: the first is the longest waiting.
        self._live: dict[Live, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def bound(self, doublings: int = 0) -> float | None:
        """Seconds of silence that stall a call; None while nothing can stall.

        ``doublings``: a probe after failed ones waits longer each time, so a
        vendor that has become slower than its history is not judged hung forever.
        """
        if self._stall_after is None or not self._recent:
            return None
        floor = max(self._stall_after, _FACTOR * self._longest)
        return floor * 2.0 ** min(doublings, _PROBE_DOUBLINGS)

    def begin(
        self, admission: Admission, timeout: asyncio.Timeout, until: float, doublings: int
    ) -> Live:
        """``timeout`` (entered) bounds the attempt at ``until`` (loop time)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        bound = self.bound(doublings)
        if bound is not None and now + bound >= until:
            bound = None  # its own timeout or deadline ends it first
        live = Live(admission, timeout, now, bound)
        self._live[live] = None
        if bound is not None and now + bound < self._timer_at:
            self._arm(loop, now + bound)
        return live

    def end(self, live: Live) -> None:
        # The timer stays: it finds nothing to judge and is not armed again.
        self._live.pop(live, None)

    def answered(self) -> None:
        """The vendor answered: a call, a page or chunk of one, or an error
        status -- anything but silence."""
        now = asyncio.get_running_loop().time()
        if self._live:
            oldest = next(iter(self._live))
            self._remember(now - max(self._answered_at, oldest.started))
        self._answered_at = now

    def _remember(self, silence: float) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0] >= self._longest:
            recent.append(silence)
            self._longest = max(recent)  # the longest one just left
        else:
            recent.append(silence)
            self._longest = max(self._longest, silence)

    def cut(self) -> int:
        """End every call in flight now; how many were cut."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        cut = 0
        for live in self._live:
            # One whose own bound fired already is ending anyway.
            if not live.cut and not live.timeout.expired():
                live.cut = True
                live.bound = None
                live.timeout.reschedule(now)
                cut += 1
        return cut

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float, settled: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._check, settled)
        self._timer_at = when

    def _first_due(self) -> tuple[Live | None, float]:
        first, due = None, math.inf
        answered_at = self._answered_at
        for live in self._live:
            if live.bound is not None:
                when = max(live.started, answered_at) + live.bound
                if when < due:
                    first, due = live, when
        return first, due

    def _check(self, settled: bool) -> None:
        self._timer = None
        self._timer_at = math.inf
        first, due = self._first_due()
        if first is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < due:  # the vendor answered meanwhile: silent since then?
            self._arm(loop, due)
        elif not settled:
            self._arm(loop, now + _SETTLE, settled=True)
        else:
            first.bound = None  # judged once
            self._on_stall(first)
            first, due = self._first_due()
            if first is not None:
                self._arm(loop, max(due, now))
