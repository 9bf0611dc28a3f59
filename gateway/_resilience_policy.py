"""Resilience settings per connector: the dataclass, vendor defaults, YAML parsing.

A connector's ``resilience:`` section overrides the defaults of its vendor
(looked up by the connector's ``type``), which override the generic defaults::

    connectors:
      zendesk:
        timeout: 10                  # also the per-attempt timeout unless resilience.timeout
        resilience:
          timeout: 2.5               # seconds per attempt
          attempts: 3                # tries for retryable failures; 1 = no retry
          backoff: {initial: 0.1, max: 2.0}
          retry_after_max: 5         # longest vendor Retry-After a call waits out (once, in at
                                     # most half its time left); longer ones fail at once
          breaker:
            failures: 5              # failed calls in a row that open it
            open_for: 2              # first open period; each lasts a random 1-2.5x of this,
            open_max: 10             # doubling after each failed probe, never past open_max
            stall_after: 1           # opens it at once when a call waited this long (or 4x the
                                     # vendor's longest recent silence, if longer) and the vendor
                                     # answered nothing at all meanwhile; false = timeouts judge
          bulkhead: 10               # calls in flight to this vendor at once
          rate_limit: {per_minute: 200, burst: 10}   # vendor calls (chunks, pages); false = none
          merge_max_keys: 100        # other requests' keys one call may carry; 0 = none
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError

__all__ = ["VENDOR_POLICIES", "ResiliencePolicy", "policy_from_mapping"]


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    """How calls to one connector are bounded, retried and shed. Times in seconds."""

    timeout: float = 10.0
    attempts: int = 3
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    retry_after_max: float = 5.0
    breaker_failures: int = 5
    breaker_open_for: float = 2.0
    breaker_open_max: float = 10.0
    breaker_stall_after: float | None = 1.0
    bulkhead: int = 10
    rate_per_second: float | None = None
    rate_burst: int = 1
    merge_max_keys: int = 100

    def __post_init__(self) -> None:
        # Messages name the YAML keys so the parser can prefix the section path.
        checks = [
            (self.timeout > 0, "timeout must be > 0"),
            (self.attempts >= 1, "attempts must be >= 1"),
            (self.backoff_initial >= 0, "backoff.initial must be >= 0"),
            (self.backoff_max >= self.backoff_initial, "backoff.max must be >= backoff.initial"),
            (self.retry_after_max >= 0, "retry_after_max must be >= 0"),
            (self.breaker_failures >= 1, "breaker.failures must be >= 1"),
            (self.breaker_open_for > 0, "breaker.open_for must be > 0"),
            (
                self.breaker_open_max >= self.breaker_open_for,
                "breaker.open_max must be >= breaker.open_for",
            ),
            (
                self.breaker_stall_after is None or self.breaker_stall_after > 0,
                "breaker.stall_after must be > 0",
            ),
            (self.bulkhead >= 1, "bulkhead must be >= 1"),
            (self.rate_per_second is None or self.rate_per_second > 0, "rate_limit must be > 0"),
            (self.rate_burst >= 1, "rate_limit.burst must be >= 1"),
            (self.merge_max_keys >= 0, "merge_max_keys must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# From the vendors' published limits (shared/VENDORS.md and their docs). A
# deployment on a bigger plan raises them in its config. The rate limit takes
# a token per vendor call (each chunk and page of a batch). Rate-limited
# vendors merge only up to their smallest chunk: a merged call then stays one
# vendor call, never a burst of chunks taken from the same bucket at once.
VENDOR_POLICIES: Mapping[str, ResiliencePolicy] = {
    # No per-second limit: a rolling 24 h allocation per org, and at most 25
    # concurrent long-running requests in a production org.
    "salesforce": ResiliencePolicy(bulkhead=25),
    # 200 requests/minute on the Team plan (the smallest); the account's real
    # ceiling is in the X-Rate-Limit header. Ticket searches take 20 requesters.
    "zendesk": ResiliencePolicy(rate_per_second=200 / 60, rate_burst=10, merge_max_keys=20),
    # Search API: 20 reads/s in live and test mode, stricter than the global
    # 100 ops/s (live) / 25 ops/s (test); customer lookup by email is a search,
    # of at most 10 OR-ed clauses.
    "stripe": ResiliencePolicy(rate_per_second=20.0, rate_burst=20, merge_max_keys=10),
    # 10 simultaneous connections per API key; no published request rate.
    "mailchimp": ResiliencePolicy(bulkhead=10),
}

_SECTION_KEYS = {
    "timeout",
    "attempts",
    "backoff",
    "retry_after_max",
    "breaker",
    "bulkhead",
    "rate_limit",
    "merge_max_keys",
}


def _mapping(value: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")
    return value


def _number(value: Any, where: str) -> float:
    # bool is an int subclass: `attempts: yes` must not quietly mean 1.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number, not {value!r}")
    return float(value)


def _integer(value: Any, where: str) -> int:
    number = _number(value, where)
    if not number.is_integer():
        raise ConfigError(f"{where} must be a whole number, not {value!r}")
    return int(number)


def _rate_limit(value: Any, where: str, base: ResiliencePolicy) -> dict[str, Any]:
    if value is None or value is False:
        return {"rate_per_second": None, "rate_burst": 1}
    section = _mapping(value, where, {"per_second", "per_minute", "burst"})
    if "per_second" in section and "per_minute" in section:
        raise ConfigError(f"{where}: give per_second or per_minute, not both")
    changes: dict[str, Any] = {}
    if "per_second" in section:
        changes["rate_per_second"] = _number(section["per_second"], f"{where}.per_second")
    elif "per_minute" in section:
        changes["rate_per_second"] = _number(section["per_minute"], f"{where}.per_minute") / 60
    elif base.rate_per_second is None:
        raise ConfigError(f"{where} needs per_second or per_minute")
    if "burst" in section:
        changes["rate_burst"] = _integer(section["burst"], f"{where}.burst")
    elif base.rate_per_second is None:
        changes["rate_burst"] = max(1, math.ceil(changes["rate_per_second"]))
    return changes


def _breaker(value: Any, where: str, base: ResiliencePolicy) -> dict[str, Any]:
    section = _mapping(value, where, {"failures", "open_for", "open_max", "stall_after"})
    changes: dict[str, Any] = {}
    if "failures" in section:
        changes["breaker_failures"] = _integer(section["failures"], f"{where}.failures")
    for key in ("open_for", "open_max"):
        if key in section:
            changes[f"breaker_{key}"] = _number(section[key], f"{where}.{key}")
    if "open_for" in section and "open_max" not in section:
        # A longer first period alone (an older config's `open_for: 30`) is not an error.
        changes["breaker_open_max"] = max(base.breaker_open_max, changes["breaker_open_for"])
    if "stall_after" in section:
        stall = section["stall_after"]
        changes["breaker_stall_after"] = (
            None if stall is False else _number(stall, f"{where}.stall_after")
        )
    return changes


def policy_from_mapping(
    raw: Mapping[str, Any], *, vendor: str | None = None, where: str = "connector"
) -> ResiliencePolicy:
    """Read the ``resilience:`` section of one connector's config mapping.

    ``vendor`` picks the defaults (the connector's ``type``; read from ``raw``
    when not given); ``where`` prefixes error messages, e.g. ``connectors.crm``.
    """
    kind = vendor if vendor is not None else str(raw.get("type", ""))
    base = VENDOR_POLICIES.get(kind, ResiliencePolicy())
    path = f"{where}.resilience"
    section_raw = raw.get("resilience")
    section = _mapping({} if section_raw is None else section_raw, path, _SECTION_KEYS)
    changes: dict[str, Any] = {}
    if "timeout" in section:
        changes["timeout"] = _number(section["timeout"], f"{path}.timeout")
    elif "timeout" in raw:
        changes["timeout"] = _number(raw["timeout"], f"{where}.timeout")
    if "attempts" in section:
        changes["attempts"] = _integer(section["attempts"], f"{path}.attempts")
    if "backoff" in section:
        backoff = _mapping(section["backoff"], f"{path}.backoff", {"initial", "max"})
        if "initial" in backoff:
            changes["backoff_initial"] = _number(backoff["initial"], f"{path}.backoff.initial")
        if "max" in backoff:
            changes["backoff_max"] = _number(backoff["max"], f"{path}.backoff.max")
    if "retry_after_max" in section:
        changes["retry_after_max"] = _number(section["retry_after_max"], f"{path}.retry_after_max")
    if "breaker" in section:
        changes.update(_breaker(section["breaker"], f"{path}.breaker", base))
    if "bulkhead" in section:
        changes["bulkhead"] = _integer(section["bulkhead"], f"{path}.bulkhead")
    if "merge_max_keys" in section:
        changes["merge_max_keys"] = _integer(section["merge_max_keys"], f"{path}.merge_max_keys")
    if "rate_limit" in section:
        changes.update(_rate_limit(section["rate_limit"], f"{path}.rate_limit", base))
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise ConfigError(f"{path}.{exc}") from exc
