"""The shared cache of canonical records: one :data:`UpstreamCall` layer.

    loaders ─▶ CacheLayer ─▶ resilience ─▶ connector

Records are cached per ``(connector, method, key)`` -- never a rendered
response, so permissions run on every request above this layer. Each key of a
batch is served by its age (``cache:`` in the config, see
:mod:`gateway._cache_policy`):

- younger than ``soft_ttl``: a hit;
- younger than ``hard_ttl``: served stale (noted on ``RequestScope.stale``)
  while one background refresh per key runs;
- older, or missing: fetched; if the upstream fails, a value younger than
  ``max_stale`` is served instead (noted as stale);
- "unknown to the source" is cached too, for ``negative_ttl``.

Any upstream failure counts, a vendor's 429 included: while the resilience
layer refuses calls during a vendor's ``Retry-After``, stale records answer.

Misses are single-flight: one future per key in this process
(:mod:`gateway._flight`), and a short ``SET NX PX`` lock in a shared store
whose losers poll for the winner's value. The upstream layer logs a failed
fetch for the request that started it; a request that waited for that fetch
logs it too, with its own request id (:mod:`gateway._upstream_log`). A store
that fails (Redis down, paused, breaker open) costs the request nothing but
the miss: the layer fails open to the upstream and says so through
``on_event``. Events, each with the
connector name: hit, miss, stale, stale_if_error, refresh, refreshed,
refresh_failed, refresh_skipped, wait (for another process's fetch),
redis_error, fail_open, decode_error.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connectors.sdk import Connector, UpstreamError, UpstreamUnavailable
from gateway._cache_policy import CachePolicy, Ttl, cache_settings
from gateway._entries import ABSENT, Entries
from gateway._flight import Flights, Ident
from gateway._stores import CacheError, MemoryStore, RedisStore, Store, StoreError
from gateway._upstream_log import log_failure
from gateway.config import Settings
from gateway.upstream import RequestScope, StaleNote, UpstreamCall

__all__ = [
    "MISSING",
    "CacheError",
    "CacheLayer",
    "CachePolicy",
    "EventHook",
    "MemoryStore",
    "RedisStore",
    "Store",
    "StoreError",
    "Ttl",
    "cache_from_settings",
]

EventHook = Callable[[str, str], None]
MISSING: Any = object()  # CacheLayer.fresh: no fresh answer at hand
log = logging.getLogger("c360.cache")


class CacheLayer:
    """Cache of connector answers in a :class:`Store`, in front of ``inner``.

    ``clock`` is wall-clock time because every process sharing the store ages
    the same entries. The layer owns the store: :meth:`aclose` closes it.
    """

    def __init__(
        self,
        store: Store,
        inner: UpstreamCall,
        *,
        policy: CachePolicy,
        secret: bytes,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.time,
        max_refreshes: int = 32,
        poll_interval: float = 0.02,
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._on_event = on_event
        self._clock = clock
        self._entries = Entries(store, secret=secret, clock=clock, emit=self._emit)
        self._flights = Flights()
        self._refreshing: set[asyncio.Task[None]] = set()
        self._max_refreshes = max_refreshes
        self._poll_interval = poll_interval
        self._closed = False

    @property
    def store(self) -> Store:
        return self._entries.store

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    def data_key(self, source: str, method: str, key: str) -> str:
        """The store key of one cached answer (a keyed hash of ``key``)."""
        return self._entries.data_key(source, method, key)

    async def __call__(
        self, connector: Connector, method: str, keys: Sequence[str], scope: RequestScope
    ) -> Mapping[str, Any]:
        source = connector.name
        ttl = self._policy.ttl(source, method)
        if not ttl.enabled or self._closed:
            return await self._inner(connector, method, keys, scope)
        unique = list(dict.fromkeys(keys))
        read = await self._entries.read(source, method, unique)
        if read is None:
            self._emit("fail_open", source)
        entries = read or {}
        now = self._clock()
        found: dict[str, Any] = {}
        fallback: dict[str, tuple[Any, float]] = {}
        need: list[str] = []
        refresh: list[str] = []
        for key in unique:
            entry = entries.get(key)
            if entry is None:
                self._emit("miss", source)
                need.append(key)
                continue
            # Entry.fresh_for and .negative inlined: this loop is every hit's cost.
            value, age = entry.value, now - entry.stored_at
            negative = value is ABSENT
            if age < (ttl.negative if negative else ttl.soft):
                self._emit("hit", source)
                if not negative:
                    found[key] = value
            elif not negative and age < ttl.hard:
                self._emit("stale", source)
                scope.stale.append(StaleNote(source, method, key, round(age, 3)))
                refresh.append(key)
                found[key] = value
            else:
                self._emit("miss", source)
                if not negative and age < ttl.max_stale:
                    fallback[key] = (value, age)
                need.append(key)
        if refresh:
            self._refresh(connector, method, refresh)
        if not need:
            return found
        failed: list[BaseException] = []
        loaded = await self._load(connector, method, need, scope, use_store=read is not None)
        for key, outcome in loaded.items():
            if not isinstance(outcome, BaseException):
                if outcome is not ABSENT:
                    found[key] = outcome
            elif key in fallback:
                value, age = fallback[key]
                self._emit("stale_if_error", source)
                found[key] = value
                scope.stale.append(StaleNote(source, method, key, round(age, 3)))
            else:
                # DataLoader fails just this key with it; the others still resolve.
                found[key] = outcome
                failed.append(outcome)
        if len(failed) == len(unique):
            # Every waiter of a flight raises this same object: keep its traceback short.
            raise failed[0].with_traceback(None)
        return found

    def fresh(self, connector: Connector, method: str, key: str) -> Any:
        """A hit served without the ``await``s of :meth:`__call__`, or :data:`MISSING`.

        Only a store in this process's memory answers at once, and only a
        fresh entry is served here: anything stale or missing takes the full
        path (refresh, single-flight, stale-if-error). The loaders ask this
        first, so a request served from memory schedules no batch at all.
        """
        if self._closed:
            return MISSING
        source = connector.name
        ttl = self._policy.ttl(source, method)
        if not ttl.enabled:
            return MISSING
        entry = self._entries.read_now(source, method, key)
        if entry is None:
            return MISSING
        value, age = entry.value, self._clock() - entry.stored_at
        if value is ABSENT:
            if age >= ttl.negative:
                return MISSING
            value = None  # what a loader answers for a key the source does not know
        elif age >= ttl.soft:
            return MISSING
        self._emit("hit", source)
        return value

    async def evict(self, source: str, method: str, keys: Sequence[str]) -> bool:
        """Forget cached answers (e.g. on a webhook); False if the store did not answer."""
        return await self._entries.delete(source, method, keys)

    async def aclose(self) -> None:
        """Cancel background work and close the store; later calls bypass the cache."""
        self._closed = True
        await self._flights.aclose()
        await self._entries.store.aclose()

    def _emit(self, event: str, source: str) -> None:
        if self._on_event is not None:
            self._on_event(event, source)

    async def _load(
        self,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
        *,
        use_store: bool = True,
    ) -> dict[str, Any]:
        """Each key's value, ``ABSENT`` or exception, fetched once however many ask."""
        source = connector.name
        futures = {k: f for k in keys if (f := self._flights.get((source, method, k)))}
        joined = list(futures)
        owned = [key for key in keys if key not in futures]
        if owned:
            claimed = self._flights.claim((source, method, key) for key in owned)
            futures.update(zip(owned, claimed.values(), strict=True))
            fetch = self._fetch(connector, method, owned, claimed, scope, use_store=use_store)
            self._flights.spawn(fetch)
        done = await self._flights.wait(futures[key] for key in keys)
        outcomes = dict(zip(keys, done, strict=True))
        if joined:
            # The fetch that failed logged it for the request that started it;
            # a request that waited for that fetch saw the failure too.
            seen = {id(outcomes[key]): outcomes[key] for key in joined}
            for failure in seen.values():
                if isinstance(failure, UpstreamError):
                    log_failure(
                        failure, connector=source, operation=method, request_id=scope.request_id
                    )
        return outcomes

    def _refresh(self, connector: Connector, method: str, keys: Sequence[str]) -> None:
        source = connector.name
        todo = [key for key in keys if self._flights.get((source, method, key)) is None]
        if not todo:
            return
        if len(self._refreshing) >= self._max_refreshes:
            for _ in todo:
                self._emit("refresh_skipped", source)
            return
        claimed = self._flights.claim((source, method, key) for key in todo)
        fetch = self._fetch(connector, method, todo, claimed, RequestScope(), background=True)
        task = self._flights.spawn(fetch)
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)
        for _ in todo:
            self._emit("refresh", source)

    async def _fetch(
        self,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        claimed: Mapping[Ident, asyncio.Future[Any]],
        scope: RequestScope,
        *,
        background: bool = False,
        use_store: bool = True,
    ) -> None:
        source = connector.name
        outcomes: dict[str, Any] = {}
        try:
            if use_store:
                outcomes = await self._fetch_shared(connector, method, keys, scope)
            else:
                # The store just failed this request: skip its lock and write too.
                outcomes = await self._fetch_upstream(connector, method, keys, scope, None, False)
        except Exception as exc:  # whatever broke, every waiter must wake up
            outcomes = dict.fromkeys(keys, exc)
        finally:
            closed = UpstreamUnavailable(f"{source}: cache layer closed", source=source)
            by_ident = {(source, method, key): out for key, out in outcomes.items()}
            self._flights.settle(claimed, by_ident, closed)
        if background:
            failed = any(isinstance(o, BaseException) for o in outcomes.values())
            self._emit("refresh_failed" if failed else "refreshed", source)

    async def _fetch_shared(
        self, connector: Connector, method: str, keys: Sequence[str], scope: RequestScope
    ) -> dict[str, Any]:
        """Fetch ``keys`` once across every process sharing the store."""
        source = connector.name
        outcomes: dict[str, Any] = {}
        mine, theirs, token = list(keys), [], None
        if self._entries.store.shared:
            token = secrets.token_hex(16)
            taken = await self._entries.lock(source, method, keys, token, self._policy.lock_ttl)
            if taken is None:
                token = None
            else:
                mine = [key for key, ok in zip(keys, taken, strict=True) if ok]
                theirs = [key for key, ok in zip(keys, taken, strict=True) if not ok]
            if mine and token is not None:
                # A peer may have stored a value between our read and our lock.
                outcomes = await self._fresh(source, method, mine)
                if outcomes:
                    await self._entries.unlock(source, method, list(outcomes), token)
                    mine = [key for key in mine if key not in outcomes]
        parts = []
        if mine:
            parts.append(self._fetch_upstream(connector, method, mine, scope, token))
        if theirs:
            parts.append(self._await_peers(connector, method, theirs, scope))
        for part in await asyncio.gather(*parts):
            outcomes.update(part)
        return outcomes

    async def _fresh(self, source: str, method: str, keys: Sequence[str]) -> dict[str, Any]:
        ttl, now = self._policy.ttl(source, method), self._clock()
        entries = await self._entries.read(source, method, keys) or {}
        return {k: e.value for k, e in entries.items() if now - e.stored_at < e.fresh_for(ttl)}

    async def _fetch_upstream(
        self,
        connector: Connector,
        method: str,
        keys: Sequence[str],
        scope: RequestScope,
        token: str | None,
        write: bool = True,
    ) -> dict[str, Any]:
        source = connector.name
        outcomes: dict[str, Any]
        try:
            found = await self._inner(connector, method, keys, scope)
        except Exception as exc:
            outcomes = dict.fromkeys(keys, exc)
        else:
            outcomes = {key: found.get(key, ABSENT) for key in keys}
            if write:
                await self._entries.write(
                    source, method, outcomes, self._policy.ttl(source, method)
                )
        if token is not None:
            # After the write, so a peer that sees the lock gone finds the value.
            await self._entries.unlock(source, method, keys, token)
        return outcomes

    async def _await_peers(
        self, connector: Connector, method: str, keys: Sequence[str], scope: RequestScope
    ) -> dict[str, Any]:
        """Poll for values another process is fetching; fetch what it leaves undone."""
        source = connector.name
        ttl = self._policy.ttl(source, method)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.lock_ttl
        if scope.deadline is not None:
            deadline = min(deadline, scope.deadline)
        for _ in keys:
            self._emit("wait", source)
        outcomes: dict[str, Any] = {}
        pending, delay = list(keys), self._poll_interval
        while pending and loop.time() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, 0.25)
            seen = await self._entries.peek(source, method, pending)
            if seen is None:
                break
            still, given_up = [], False
            for key, (entry, locked) in zip(pending, seen, strict=True):
                if entry is not None and self._clock() - entry.stored_at < entry.fresh_for(ttl):
                    outcomes[key] = entry.value
                else:
                    # A lock gone without a fresh value: its holder failed; take over.
                    given_up = given_up or not locked
                    still.append(key)
            pending = still
            if given_up:
                break
        if pending:
            outcomes.update(await self._fetch_upstream(connector, method, pending, scope, None))
        return outcomes


def cache_from_settings(
    settings: Settings,
    inner: UpstreamCall,
    *,
    redis_url: str | None = None,
    on_event: EventHook | None = None,
) -> CacheLayer:
    """The cache layer the ``cache:`` config section describes.

    ``redis_url`` (from ``--redis-url``) wins over the config; with neither,
    records are cached in this process's memory.
    """
    config = cache_settings(settings)
    url = redis_url or config.redis_url
    store: Store
    if url:
        if settings.id_key_is_ephemeral and "key_secret" not in (settings.raw.get("cache") or {}):
            log.warning("C360_ID_KEY is not set: gateway processes will not share cache entries")
        store = RedisStore.from_url(
            url,
            timeout=config.timeout,
            breaker_threshold=config.breaker_threshold,
            breaker_ttl=config.breaker_ttl,
        )
    else:
        store = MemoryStore(max_entries=config.max_entries)
    return CacheLayer(store, inner, policy=config.policy, secret=config.secret, on_event=on_event)
