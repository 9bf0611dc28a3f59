"""The ``cache:`` section of the config: TTLs per connector and method, Redis URL.

::

    cache:
      redis_url: redis://cache:6379/0   # or env:NAME / file:PATH; absent: in memory
      key_secret: env:C360_CACHE_KEY    # keyed hash of cache keys; default: from C360_ID_KEY
      soft_ttl: 60        # seconds a record is fresh
      hard_ttl: 300       # until then a stale record is served while one refresh runs
      max_stale: 3600     # until then a stale record is served when the upstream fails
      negative_ttl: 30    # how long "the source does not know this key" is kept (0: not)
      lock_ttl: 5         # cross-process single-flight lock, and how long peers wait on it
      timeout: 1.0        # Redis connect and read timeout (a busy event loop reads late)
      breaker: {threshold: 3, ttl: 5}
      max_entries: 100000 # bound of the in-memory store
      connectors:
        stripe: {soft_ttl: 30}           # every method of one connector
        salesforce:
          hard_ttl: 600
          people_by_email: {soft_ttl: 10, negative_ttl: 0}
        mailchimp: {enabled: false}

A method inherits its connector's settings, which inherit the defaults above.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import ConfigError, Settings, resolve_secret

__all__ = ["CachePolicy", "CacheSettings", "Ttl", "cache_settings"]

_TTL_FIELDS = {
    "soft_ttl": "soft",
    "hard_ttl": "hard",
    "max_stale": "max_stale",
    "negative_ttl": "negative",
}


@dataclass(frozen=True, slots=True)
class Ttl:
    """Ages in seconds that decide how a cached record of one method is served."""

    soft: float = 60.0
    hard: float = 300.0
    max_stale: float = 3600.0
    negative: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.soft > 0

    def check(self, where: str) -> Ttl:
        if min(self.soft, self.hard, self.max_stale, self.negative) < 0:
            raise ConfigError(f"{where}: TTLs must not be negative")
        if self.enabled and not self.soft <= self.hard <= self.max_stale:
            raise ConfigError(f"{where}: need soft_ttl <= hard_ttl <= max_stale")
        return self


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """TTLs per ``(connector, method)``; ``"*"`` as method stands for all of a connector."""

    default: Ttl = Ttl()
    overrides: Mapping[tuple[str, str], Ttl] = field(default_factory=dict)
    lock_ttl: float = 5.0

    def ttl(self, connector: str, method: str) -> Ttl:
        found = self.overrides.get((connector, method)) or self.overrides.get((connector, "*"))
        return found or self.default


@dataclass(frozen=True, slots=True)
class CacheSettings:
    policy: CachePolicy
    secret: bytes
    redis_url: str | None = None
    timeout: float = 1.0
    breaker_threshold: int = 3
    breaker_ttl: float = 5.0
    max_entries: int = 100_000


def _number(raw: Mapping[str, Any], name: str, default: float, where: str) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{name} must be a number of seconds")
    return float(value)


def _ttl(raw: Mapping[str, Any], base: Ttl, where: str) -> Ttl:
    changes = {
        attr: _number(raw, key, getattr(base, attr), where)
        for key, attr in _TTL_FIELDS.items()
        if key in raw
    }
    if raw.get("enabled", True) is False:
        changes["soft"] = 0.0
    return dataclasses.replace(base, **changes).check(where)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _policy(raw: Mapping[str, Any]) -> CachePolicy:
    default = _ttl(raw, Ttl(), "cache")
    overrides: dict[tuple[str, str], Ttl] = {}
    for connector, section in _mapping(raw.get("connectors"), "cache.connectors").items():
        where = f"cache.connectors.{connector}"
        section = _mapping(section, where)
        base = _ttl(section, default, where)
        overrides[(str(connector), "*")] = base
        for method, method_section in section.items():
            if method in _TTL_FIELDS or method == "enabled":
                continue
            method_where = f"{where}.{method}"
            overrides[(str(connector), str(method))] = _ttl(
                _mapping(method_section, method_where), base, method_where
            )
    lock_ttl = _number(raw, "lock_ttl", 5.0, "cache")
    if lock_ttl <= 0:
        raise ConfigError("cache.lock_ttl must be positive")
    return CachePolicy(default=default, overrides=overrides, lock_ttl=lock_ttl)


def _reference(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    if value.startswith(("env:", "file:")):
        return resolve_secret(value, where=where)
    return value


def cache_settings(settings: Settings) -> CacheSettings:
    """Read and check the ``cache:`` section of the config document."""
    raw = _mapping(settings.raw.get("cache"), "cache")
    secret_ref = raw.get("key_secret")
    if secret_ref is None:
        # A key of its own, derived so the customer-id key never meets Redis.
        secret = hmac.new(settings.id_key, b"c360 cache keys", hashlib.sha256).digest()
    else:
        secret = resolve_secret(str(secret_ref), where="cache.key_secret").encode()
        if len(secret) < 16:
            raise ConfigError("cache.key_secret must be at least 16 bytes")
    breaker = _mapping(raw.get("breaker"), "cache.breaker")
    threshold = _number(breaker, "threshold", 3, "cache.breaker")
    breaker_ttl = _number(breaker, "ttl", 5.0, "cache.breaker")
    timeout = _number(raw, "timeout", 1.0, "cache")
    max_entries = raw.get("max_entries", 100_000)
    if not isinstance(max_entries, int) or max_entries < 1:
        raise ConfigError("cache.max_entries must be a positive integer")
    if min(timeout, breaker_ttl) <= 0 or threshold < 1:
        raise ConfigError("cache.timeout, cache.breaker.ttl and .threshold must be positive")
    return CacheSettings(
        policy=_policy(raw),
        secret=secret,
        redis_url=_reference(raw.get("redis_url"), "cache.redis_url"),
        timeout=timeout,
        breaker_threshold=int(threshold),
        breaker_ttl=breaker_ttl,
        max_entries=max_entries,
    )
