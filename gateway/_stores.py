"""Where the shared cache keeps its bytes: process memory or Redis.

Both stores speak one small async protocol (:class:`Store`): batched get, set
with a per-item TTL, delete, and short ``SET NX PX`` locks that let gateway
processes sharing Redis agree on who calls the upstream. The cache layer
above treats every :class:`StoreError` as "no cache right now" and carries on
to the upstream, so a store must fail fast rather than well.

Redis URLs (see :meth:`RedisStore.from_url`)::

    redis://[user:password@]host:6379/0            standalone (rediss:// for TLS)
    unix:///run/redis.sock?db=0                    standalone over a socket
    redis+cluster://host:7000  or  redis://host:7000?cluster=true
    redis+sentinel://[user:password@]s1:26379,s2:26379/service_name[/db]
                     [?sentinel_password=...]      (rediss+sentinel:// for TLS)

Query-string options of a standalone or cluster URL reach redis-py and win over
the defaults here (e.g. ``?socket_timeout=0.5``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from cachetools import TLRUCache
from purgatory import AsyncCircuitBreakerFactory
from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.config import ConfigError

__all__ = ["CacheError", "MemoryStore", "RedisStore", "Store", "StoreError", "StoreUnavailable"]

T = TypeVar("T")
log = logging.getLogger("c360.cache")

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_REDIS_FAILURES = (redis_errors.RedisError, redis_errors.RedisClusterException, OSError)


class CacheError(Exception):
    """Base of every error of the shared cache."""


class StoreError(CacheError):
    """The store did not answer (refused, timed out, protocol error)."""


class StoreUnavailable(StoreError):
    """The store's breaker is open: not even tried."""


class Store(Protocol):
    #: True when other processes see the same data, so cross-process locks matter.
    shared: bool
    #: True when values stay in this process as they were given, not as bytes:
    #: the cache then stores decoded entries, and a hit decodes nothing.
    holds_objects: bool

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        """Each key's value, ``None`` if missing: bytes, unless the store ``holds_objects``."""

    async def set_many(self, items: Sequence[tuple[str, Any, float]]) -> None:
        """Store ``(key, value, ttl seconds)``; values are bytes unless ``holds_objects``."""

    async def delete_many(self, keys: Sequence[str]) -> None: ...

    async def acquire_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        """``SET key token NX`` with a TTL; one flag per key: True if now ours."""

    async def release_many(self, keys: Sequence[str], token: str) -> None:
        """Delete each lock that still holds ``token`` (it may have expired and moved on)."""

    async def aclose(self) -> None: ...


class MemoryStore:
    """A bounded LRU with per-item expiry, for one process (``c360 demo``).

    It holds objects: whatever :meth:`set_many` is given comes back as is.
    """

    shared = False
    holds_objects = True

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._items: TLRUCache[str, tuple[object, float]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, item, now: now + item[1], timer=clock
        )

    def __len__(self) -> int:
        return len(self._items)

    def get_now(self, key: str) -> Any:
        """:meth:`get_many` for one key, without the ``await``: nothing here waits."""
        try:
            return self._items[key][0]
        except KeyError:  # missing or expired
            return None

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        items, found = self._items, []
        for key in keys:
            # One lookup: TLRUCache.get asks ``key in self`` and then reads it again.
            try:
                found.append(items[key][0])
            except KeyError:  # missing or expired
                found.append(None)
        return found

    async def set_many(self, items: Sequence[tuple[str, Any, float]]) -> None:
        for key, value, ttl in items:
            if ttl > 0:
                self._items[key] = (value, ttl)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def acquire_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        taken = []
        for key in keys:
            free = key not in self._items
            if free:
                self._items[key] = (token.encode(), ttl)
            taken.append(free)
        return taken

    async def release_many(self, keys: Sequence[str], token: str) -> None:
        for key in keys:
            item = self._items.get(key)
            if item is not None and item[0] == token.encode():
                del self._items[key]

    async def aclose(self) -> None:
        self._items.clear()


class RedisStore:
    """Redis (standalone, Sentinel or Cluster) behind a breaker.

    Every call is one pipelined round trip. Redis-py's own retries are off and
    socket timeouts are tight: a slow cache is worse than none. After
    ``breaker_threshold`` consecutive failures the breaker opens and calls fail
    at once with :class:`StoreUnavailable` for ``breaker_ttl`` seconds; then a
    single call probes Redis while the others keep failing fast.
    """

    shared = True
    holds_objects = False

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        sentinel: Sentinel | None = None,
        breaker_threshold: int = 3,
        breaker_ttl: float = 5.0,
    ) -> None:
        self._client = client
        self._sentinel = sentinel
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_threshold,
            default_ttl=breaker_ttl,
            exclude=[
                # Cancelled callers and command errors say nothing about Redis's health.
                asyncio.CancelledError,
                (redis_errors.ResponseError, _not_cluster_down),
            ],
        )
        self._breakers.add_listener(_log_breaker)
        self._breaker: AsyncCircuitBreaker | None = None
        self._probing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 1.0,
        breaker_threshold: int = 3,
        breaker_ttl: float = 5.0,
    ) -> RedisStore:
        """Build a store from a Redis URL (module docstring); nothing connects yet."""
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "client_name": "c360-cache",
        }
        scheme, _, _ = url.partition("://")
        try:
            if scheme in ("redis+sentinel", "rediss+sentinel"):
                client, sentinel = _sentinel_client(url, options)
                return cls(
                    client,
                    sentinel=sentinel,
                    breaker_threshold=breaker_threshold,
                    breaker_ttl=breaker_ttl,
                )
            plain_url, cluster = _cluster_flag(url)
            if cluster:
                client_c = RedisCluster.from_url(plain_url, **options)
                return cls(client_c, breaker_threshold=breaker_threshold, breaker_ttl=breaker_ttl)
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(f"cache.redis_url: unsupported scheme {scheme!r}")
            # A burst of concurrent requests needs more than redis-py's default
            # pool of 100 (the bench's 100-request burst failed open); a
            # ?max_connections= in the URL still wins.
            client_r = Redis.from_url(plain_url, **{"max_connections": 1000, **options})
        except (ValueError, redis_errors.RedisClusterException) as exc:
            raise ConfigError(f"cache.redis_url is not a usable Redis URL: {exc}") from exc
        return cls(client_r, breaker_threshold=breaker_threshold, breaker_ttl=breaker_ttl)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        breaker = self._breaker
        if breaker is None:
            breaker = self._breaker = await self._breakers.get_breaker("redis")
        state = breaker.context
        probe = False
        if state.state != "closed":
            # Decide here rather than let purgatory raise its (shared) open-state
            # exception on every call; past the TTL, one caller at a time probes.
            reopen_at = (state.opened_at or 0.0) + state.ttl
            if (state.state == "opened" and time.time() <= reopen_at) or self._probing:
                raise StoreUnavailable("redis breaker is open")
            probe = self._probing = True
        try:
            async with breaker:
                return await op()
        except _REDIS_FAILURES as exc:
            raise StoreError(f"redis: {type(exc).__name__}") from exc
        finally:
            if probe:
                self._probing = False

    async def _pipeline(self, fill: Callable[[Any], object]) -> list[Any]:
        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                fill(pipe)
                result: list[Any] = await pipe.execute()
                return result

        return await self._call(run)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._pipeline(lambda pipe: [pipe.get(key) for key in keys])

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        items = [item for item in items if item[2] > 0]
        if items:
            await self._pipeline(
                lambda pipe: [pipe.set(k, v, px=max(1, int(ttl * 1000))) for k, v, ttl in items]
            )

    async def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            # One DEL per key: a cluster cannot delete keys of several slots at once.
            await self._pipeline(lambda pipe: [pipe.delete(key) for key in keys])

    async def acquire_many(self, keys: Sequence[str], token: str, ttl: float) -> list[bool]:
        if not keys:
            return []
        px = max(1, int(ttl * 1000))
        done = await self._pipeline(
            lambda pipe: [pipe.set(key, token, nx=True, px=px) for key in keys]
        )
        return [bool(flag) for flag in done]

    async def release_many(self, keys: Sequence[str], token: str) -> None:
        if keys:
            await self._pipeline(lambda pipe: [pipe.eval(_RELEASE, 1, key, token) for key in keys])

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


def _not_cluster_down(exc: BaseException) -> bool:
    return not isinstance(exc, redis_errors.ClusterError)


def _log_breaker(name: str, event: str, message: Any) -> None:
    if event == "state_changed":
        state = getattr(message, "state", "?")
        level = logging.INFO if state == "closed" else logging.WARNING
        log.log(level, "cache store %s breaker is now %s", name, state)


def _cluster_flag(url: str) -> tuple[str, bool]:
    """Strip the ``+cluster`` scheme suffix or ``cluster=`` query flag redis-py would reject."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    flag = query.pop("cluster", None)
    if not parts.scheme.endswith("+cluster") and flag is None:
        return url, False
    cluster = flag is None or flag[-1].lower() in ("1", "true", "yes")
    scheme = parts.scheme.removesuffix("+cluster")
    rest = f"?{urlencode(query, doseq=True)}" if query else ""
    return f"{scheme}://{parts.netloc}{parts.path}{rest}", cluster


def _sentinel_client(url: str, options: dict[str, Any]) -> tuple[Redis, Sentinel]:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        address = urlsplit(f"//{node}")
        nodes.append((address.hostname or "localhost", address.port or 26379))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ConfigError("cache.redis_url: redis+sentinel:// needs /service_name[/db]")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    sentinel_options = {k: v for k, v in options.items() if k != "client_name"}
    if "sentinel_password" in query:
        sentinel_options["password"] = query["sentinel_password"]
    ssl = parts.scheme.startswith("rediss")
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_options, **options)  # type: ignore[no-untyped-call]
    client = sentinel.master_for(
        unquote(path[0]),
        db=int(path[1]) if len(path) > 1 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=ssl,
    )
    return client, sentinel
