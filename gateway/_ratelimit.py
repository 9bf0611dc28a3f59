"""Per-principal request rate limit (token bucket per subject), with a bounded table."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError

__all__ = ["PrincipalRateLimit", "rate_limit_from_mapping"]


@dataclass(frozen=True, slots=True)
class _Spec:
    per_second: float
    burst: float


class PrincipalRateLimit:
    """``allow(subject)`` is False once a subject spends its burst faster than
    ``per_second`` refills it. Subjects beyond ``max_subjects`` evict the least
    recently seen, so random subjects cannot grow the table without bound."""

    def __init__(self, per_second: float, burst: float, *, max_subjects: int = 10_000) -> None:
        self._spec = _Spec(per_second, burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max = max_subjects

    def allow(self, subject: str, now: float | None = None) -> tuple[bool, float]:
        """``(allowed, seconds until the next request would be allowed)``."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(subject, (self._spec.burst, now))
        tokens = min(self._spec.burst, tokens + (now - last) * self._spec.per_second)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[subject] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        wait = 0.0 if allowed else (1 - tokens) / self._spec.per_second
        return allowed, wait


def rate_limit_from_mapping(raw: Any) -> PrincipalRateLimit | None:
    """``gateway.rate_limit: {per_minute: 600, burst: 60}``; ``false`` turns it off."""
    if raw is False:
        return None
    raw = {"per_minute": 600, "burst": 60} if raw is None else raw
    if not isinstance(raw, Mapping) or set(raw) - {"per_minute", "per_second", "burst"}:
        raise ConfigError("gateway.rate_limit must be {per_minute|per_second, burst} or false")
    try:
        if "per_second" in raw:
            rate = float(raw["per_second"])
        else:
            rate = float(raw.get("per_minute", 600)) / 60
        burst = float(raw.get("burst", max(1.0, rate)))
    except (TypeError, ValueError) as exc:
        raise ConfigError("gateway.rate_limit values must be numbers") from exc
    if rate <= 0 or burst < 1:
        raise ConfigError("gateway.rate_limit needs a positive rate and a burst of at least 1")
    return PrincipalRateLimit(rate, burst)
