"""Cache evictions told to every gateway process over Redis pub/sub.

After its local eviction a process publishes each ``(connector, method)`` as
``{"source", "method", "keys", "origin"}`` on the channel; every process
subscribes and evicts the same keys from its own store (a no-op for keys
already gone). Pub/sub delivers at most once: a process cut off from Redis
misses what was published meanwhile and keeps those in-memory copies until
their TTL. The subscriber reconnects on its own, with backoff.

Errors::

    ConfigError    (gateway.config) the Redis URL is unusable
    (Redis and socket errors are logged and retried, or make
    :meth:`Invalidator.invalidate` answer False; they never reach the caller)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis, Sentinel
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from connectors.sdk.webhooks import Invalidation
from gateway._deliveries import Deliveries
from gateway._stores import _cluster_flag, _sentinel_client
from gateway.cache import CacheLayer
from gateway.config import ConfigError

__all__ = ["CHANNEL", "Invalidator"]

CHANNEL = "c360:invalidate"
log = logging.getLogger("c360.webhooks")
_FAILURES = (redis_errors.RedisError, OSError)
_MAX_KEYS = 10_000  # per received message: a bound on what one message can make us do


def _redis(url: str, **options: Any) -> tuple[Redis, Sentinel | None]:
    scheme = url.partition("://")[0]
    try:
        if scheme in ("redis+sentinel", "rediss+sentinel"):
            return _sentinel_client(url, options)
        # Cluster nodes pass PUBLISH on to every node: any one node serves pub/sub.
        plain, _ = _cluster_flag(url)
        return Redis.from_url(plain, **options), None
    except ValueError as exc:
        raise ConfigError(f"webhooks.redis_url is not a usable Redis URL: {exc}") from exc


async def _close(client: Redis, sentinel: Sentinel | None) -> None:
    await client.aclose()
    if sentinel is not None:
        await sentinel.aclose()


class Invalidator:
    """Evicts locally and broadcasts; a subscriber task applies the others' broadcasts.

    ``cache`` may be a zero-argument callable, called on first use: the
    gateway builds its cache inside the serving loop. Without ``redis_url``
    evictions stay in this process. :attr:`deliveries` remembers which events
    were handled, in that same Redis (or in memory without one).
    """

    def __init__(
        self,
        cache: CacheLayer | Callable[[], CacheLayer],
        redis_url: str | None = None,
        *,
        channel: str = CHANNEL,
        timeout: float = 0.5,
        connect_timeout: float = 2.0,
    ) -> None:
        self._cache = cache
        self._url = redis_url
        self._channel = channel
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._origin = secrets.token_hex(8)  # to skip our own broadcasts
        self._publisher: tuple[Redis, Sentinel | None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.deliveries = Deliveries.from_url(redis_url, timeout=timeout)

    @property
    def cache(self) -> CacheLayer:
        if not isinstance(self._cache, CacheLayer):
            self._cache = self._cache()
        return self._cache

    async def start(self) -> None:
        """Connect and subscribe; waits up to ``connect_timeout`` for the subscription,
        then carries on (retrying in the background) rather than fail the gateway."""
        if self._url is None or self._listener is not None:
            return
        self._publisher = _redis(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
            client_name="c360-invalidate-pub",
        )
        self._listener = asyncio.create_task(self._listen(), name="c360-invalidation-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connect_timeout):
                await self.subscribed.wait()
        if not self.subscribed.is_set():
            log.warning("invalidation channel not subscribed yet; retrying in the background")

    async def invalidate(self, source: str, invalidations: Iterable[Invalidation]) -> bool:
        """Evict here, then broadcast; False if either did not happen for some key."""
        by_method: dict[str, list[str]] = {}
        for item in invalidations:
            by_method.setdefault(item.method, []).append(item.key)
        ok = True
        for method, keys in by_method.items():
            ok = await self.cache.evict(source, method, keys) and ok
            ok = await self.publish(source, method, keys) and ok
        return ok

    async def publish(self, source: str, method: str, keys: list[str]) -> bool:
        """Tell every other process to evict; True when there is no one to tell."""
        if self._url is None:
            return True
        if self._publisher is None:
            return False
        message = {"source": source, "method": method, "keys": keys, "origin": self._origin}
        try:
            await self._publisher[0].publish(self._channel, json.dumps(message))
        except _FAILURES as exc:
            log.warning("invalidation of %s.%s not published: %s", source, method, exc)
            return False
        return True

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await _close(*publisher)
        await self.deliveries.aclose()

    async def _subscribe(self) -> tuple[Redis, Sentinel | None, PubSub]:
        assert self._url is not None
        client, sentinel = _redis(
            self._url,
            socket_connect_timeout=self._connect_timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name="c360-invalidate-sub",
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await _close(client, sentinel)
            raise
        return client, sentinel, pubsub

    async def _listen(self) -> None:
        while True:
            retrying = AsyncRetrying(
                retry=retry_if_exception_type(_FAILURES),
                wait=wait_exponential_jitter(multiplier=0.05, max=5.0, jitter=0.05),
                before_sleep=_retrying,
            )
            subscription: tuple[Redis, Sentinel | None, PubSub] = await retrying(self._subscribe)
            client, sentinel, pubsub = subscription
            self.subscribed.set()
            try:
                async for message in pubsub.listen():
                    await self._apply(message)
            except _FAILURES as exc:
                log.warning("invalidation channel lost (%s); resubscribing", type(exc).__name__)
            finally:
                self.subscribed.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await _close(client, sentinel)

    async def _apply(self, message: Mapping[str, Any]) -> None:
        try:
            body = json.loads(message["data"])
            source, method, keys = body["source"], body["method"], body["keys"]
            if not (isinstance(source, str) and isinstance(method, str)):
                raise TypeError("source and method must be strings")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise TypeError("keys must be a list of strings")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored an invalidation message: %s", exc)
            return
        if body.get("origin") != self._origin:
            await self.cache.evict(source, method, keys[:_MAX_KEYS])


def _retrying(state: RetryCallState) -> None:
    outcome = state.outcome.exception() if state.outcome else None
    log.warning("invalidation channel: cannot subscribe (%s); retrying", type(outcome).__name__)
