"""Which webhook deliveries were handled already, so a replayed one is handled once.

The webhook endpoint claims ``(connector, event id)`` before it evicts anything
and gives the claim back when the eviction fails (the vendor's retry must
then go through). A claim lives :data:`WINDOW` seconds: longer than any signed
timestamp's tolerance (5 minutes), so within that tolerance a replay always
finds it; past it the signature check refuses the replay anyway. Vendors that
sign nothing give no id (their deliveries stay replayable; see
:mod:`connectors.sdk.webhooks`).

Claims live in Redis when webhooks have one (``SET NX PX``: every gateway
process sees every claim), else in this process's memory, at most
:data:`MAX_ENTRIES` of them (the least recently used go first), so several
processes without Redis each handle a replay once.

Errors (from :mod:`gateway._stores`)::

    StoreError             the claim could not be read or written: the vendor should retry
    └── StoreUnavailable   Redis failed repeatedly; its breaker answers at once for a while
    ConfigError            (gateway.config) the Redis URL is unusable
"""

from __future__ import annotations

import hashlib
import secrets

from gateway._stores import MemoryStore, RedisStore, Store
from gateway.config import ConfigError

__all__ = ["MAX_ENTRIES", "WINDOW", "Deliveries"]

#: Seconds a handled event id is remembered.
WINDOW = 24 * 3600.0
#: Event ids one process remembers without Redis.
MAX_ENTRIES = 100_000
_PREFIX = "c360:webhook-seen:"


class Deliveries:
    """``claim`` an event once per ``window``; ``release`` a claim whose work failed."""

    def __init__(self, store: Store, *, window: float = WINDOW) -> None:
        self._store = store
        self._window = window

    @classmethod
    def from_url(cls, url: str | None, *, timeout: float = 0.5) -> Deliveries:
        """In Redis at ``url`` (any URL the cache takes), or in memory when None."""
        if url is None:
            return cls(MemoryStore(max_entries=MAX_ENTRIES))
        try:
            return cls(RedisStore.from_url(url, timeout=timeout))
        except ConfigError as exc:
            # RedisStore's own message names cache.redis_url.
            raise ConfigError("webhooks.redis_url is not a usable Redis URL") from exc

    async def claim(self, source: str, event_id: str) -> str | None:
        """A token when this is the event's first delivery; None for a replay."""
        token = secrets.token_hex(8)
        [taken] = await self._store.acquire_many([_key(source, event_id)], token, self._window)
        return token if taken else None

    async def release(self, source: str, event_id: str, token: str) -> None:
        """Forget a claim, so the vendor's retry of this event is handled."""
        await self._store.release_many([_key(source, event_id)], token)

    async def aclose(self) -> None:
        await self._store.aclose()


def _key(source: str, event_id: str) -> str:
    # Hashed: an id is the vendor's text, of any length and alphabet.
    digest = hashlib.sha256(f"{source}\0{event_id}".encode()).hexdigest()[:40]
    return f"{_PREFIX}{digest}"
