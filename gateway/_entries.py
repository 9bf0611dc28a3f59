"""The cache layer's view of a :class:`~gateway._stores.Store`.

Turns ``(connector, method, key)`` into hashed store keys, entries into JSON
bytes and back, and store failures into a ``None`` answer plus events, so the
layer above only decides what to serve. Cache keys look like
``c360:v1:{connector}:{method}:{hmac}``: the key itself (often an email) only
ever appears as a keyed hash.

A store that ``holds_objects`` (in this process) is given :class:`Entry`
objects whose values :func:`~gateway._codec.freeze` made shareable, so a hit
there decodes nothing; bytes found in it are still decoded.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway import _codec
from gateway._cache_policy import Ttl
from gateway._stores import CacheError, MemoryStore, Store, StoreError, StoreUnavailable

__all__ = ["ABSENT", "Entries", "Entry"]

log = logging.getLogger("c360.cache")

ABSENT: Any = object()  # the source does not know this key
_PREFIX = "c360:v1:"
# Store keys remembered per Entries: the hot keys of a busy gateway, a few MB at most.
_KEY_MEMO = 8192


@dataclass(frozen=True, slots=True)
class Entry:
    stored_at: float
    value: Any  # ABSENT for a negative entry

    @property
    def negative(self) -> bool:
        return self.value is ABSENT

    def fresh_for(self, ttl: Ttl) -> float:
        return ttl.negative if self.negative else ttl.soft


class Entries:
    """Cache entries in a store; every store failure is reported, then swallowed."""

    def __init__(
        self,
        store: Store,
        *,
        secret: bytes,
        clock: Callable[[], float],
        emit: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self._clock = clock
        self._emit = emit
        self._objects = store.holds_objects

        # The secret never changes, so neither does a key's hash: skip the HMAC when hot.
        @functools.lru_cache(maxsize=_KEY_MEMO)
        def data_key(source: str, method: str, key: str) -> str:
            message = f"{source}\0{method}\0{key}".encode()
            digest = hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]
            return f"{_PREFIX}{source}:{method}:{digest}"

        self.data_key: Callable[[str, str, str], str] = data_key

    def lock_key(self, source: str, method: str, key: str) -> str:
        return f"{_PREFIX}lock:{self.data_key(source, method, key).removeprefix(_PREFIX)}"

    def failed(self, source: str, exc: StoreError) -> None:
        if not isinstance(exc, StoreUnavailable):
            self._emit("redis_error", source)
            log.warning("cache store failed (%s); %s goes to the upstream", exc, source)

    def _decode(self, source: str, raw: Any) -> Entry | None:
        if raw is None:
            return None
        if type(raw) is Entry:
            return raw
        try:
            envelope = _codec.loads(raw)
            stored_at = envelope["t"]
            if isinstance(stored_at, bool) or not isinstance(stored_at, int | float):
                raise _codec.CodecError("no timestamp")
            return Entry(float(stored_at), envelope.get("v", ABSENT))
        except (CacheError, TypeError, KeyError, AttributeError):
            self._emit("decode_error", source)
            return None

    async def read(self, source: str, method: str, keys: Sequence[str]) -> dict[str, Entry] | None:
        """Decodable entries by key; ``None`` when the store did not answer."""
        try:
            raws = await self.store.get_many([self.data_key(source, method, k) for k in keys])
        except StoreError as exc:
            self.failed(source, exc)
            return None
        found: dict[str, Entry] = {}
        for key, raw in zip(keys, raws, strict=True):
            entry = raw if type(raw) is Entry else self._decode(source, raw)
            if entry is not None:
                found[key] = entry
        return found

    def read_now(self, source: str, method: str, key: str) -> Entry | None:
        """One key's entry, if the store is this process's memory and holds one."""
        store = self.store
        if type(store) is not MemoryStore:
            return None
        raw = store.get_now(self.data_key(source, method, key))
        return raw if type(raw) is Entry else self._decode(source, raw)

    async def peek(
        self, source: str, method: str, keys: Sequence[str]
    ) -> list[tuple[Entry | None, bool]] | None:
        """Each key's entry and whether its lock is still held; ``None`` if no answer."""
        # Locks first: a holder writes its value before it unlocks, so a lock
        # seen gone here means the value read after it is final.
        probe = [self.lock_key(source, method, key) for key in keys]
        probe += [self.data_key(source, method, key) for key in keys]
        try:
            raws = await self.store.get_many(probe)
        except StoreError as exc:
            self.failed(source, exc)
            return None
        locks, values = raws[: len(keys)], raws[len(keys) :]
        return [
            (self._decode(source, raw), lock is not None)
            for raw, lock in zip(values, locks, strict=True)
        ]

    async def write(self, source: str, method: str, outcomes: Mapping[str, Any], ttl: Ttl) -> None:
        """Store values and ``ABSENT`` markers; exceptions are not cached."""
        now = self._clock()
        items: list[tuple[str, Entry | bytes, float]] = []
        for key, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                continue
            negative = outcome is ABSENT
            try:
                stored = self._encode(now, outcome)
            except _codec.CodecError:
                log.exception("%s.%s returned a value the cache cannot hold", source, method)
                continue
            expires = ttl.negative if negative else ttl.max_stale
            items.append((self.data_key(source, method, key), stored, expires))
        try:
            await self.store.set_many(items)
        except StoreError as exc:
            self.failed(source, exc)

    def _encode(self, now: float, outcome: Any) -> Entry | bytes:
        if self._objects:
            return Entry(now, outcome if outcome is ABSENT else _codec.freeze(outcome))
        envelope: dict[str, Any] = {"t": now} if outcome is ABSENT else {"t": now, "v": outcome}
        return _codec.dumps(envelope)

    async def lock(
        self, source: str, method: str, keys: Sequence[str], token: str, ttl: float
    ) -> list[bool] | None:
        try:
            locks = [self.lock_key(source, method, key) for key in keys]
            return await self.store.acquire_many(locks, token, ttl)
        except StoreError as exc:
            self.failed(source, exc)
            return None

    async def unlock(self, source: str, method: str, keys: Sequence[str], token: str) -> None:
        try:
            locks = [self.lock_key(source, method, key) for key in keys]
            await self.store.release_many(locks, token)
        except StoreError as exc:
            self.failed(source, exc)

    async def delete(self, source: str, method: str, keys: Sequence[str]) -> bool:
        try:
            await self.store.delete_many([self.data_key(source, method, k) for k in keys])
        except StoreError as exc:
            self.failed(source, exc)
            return False
        return True
