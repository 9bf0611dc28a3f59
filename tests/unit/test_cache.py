"""The cache layer over an in-memory store, with a fake upstream and a fake clock."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

from connectors.sdk import Person, SourceRef, UpstreamRateLimited, UpstreamUnavailable
from gateway.cache import (
    CacheLayer,
    CachePolicy,
    MemoryStore,
    RedisStore,
    StoreError,
    Ttl,
    cache_from_settings,
)
from gateway.config import ConfigError, settings_from_mapping
from gateway.context import Loaders
from gateway.upstream import RequestScope

DEADLINE = 5.0  # seconds any wait in these tests may take before it is a failure
TTL = Ttl(soft=10, hard=100, max_stale=1000, negative=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Conn:
    def __init__(self, name: str = "crm") -> None:
        self.name = name


def person(email: str, version: int = 1) -> list[Person]:
    source = SourceRef(system="crm", record_id=f"{email}#{version}")
    return [Person(source=source, email=email, name=f"v{version}")]


class Upstream:
    """A connector method: answers from ``data``, records every call, can fail or block."""

    def __init__(self, data=None) -> None:
        self.data = dict(data or {})
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.cancelled = 0

    async def __call__(self, connector, method, keys, scope):
        self.calls.append((method, tuple(keys)))
        self.entered.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail is not None:
            raise self.fail
        return {k: self.data[k] for k in keys if k in self.data}

    def keys_called(self) -> list[str]:
        return [key for _, keys in self.calls for key in keys]


class Events(Counter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, asyncio.Event] = {}

    def __call__(self, event: str, source: str) -> None:
        self[event] += 1
        self.seen.setdefault(event, asyncio.Event()).set()

    async def wait(self, event: str) -> None:
        async with asyncio.timeout(DEADLINE):
            await self.seen.setdefault(event, asyncio.Event()).wait()


class SharedMemoryStore(MemoryStore):
    """A memory store that says it is shared: two layers on it act as two processes."""

    shared = True


class BytesMemoryStore(MemoryStore):
    """A memory store that keeps bytes, as Redis does: the codec path."""

    holds_objects = False


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def upstream():
    return Upstream({"ada@example.com": person("ada@example.com")})


@pytest.fixture
def events():
    return Events()


@pytest.fixture(params=[MemoryStore, BytesMemoryStore], ids=["objects", "bytes"])
async def make_layer(request, clock, events):
    layers = []

    def make(inner, *, store=None, policy=None, **kwargs):
        layer = CacheLayer(
            request.param(clock=clock) if store is None else store,
            inner,
            policy=policy or CachePolicy(default=TTL, lock_ttl=2.0),
            secret=b"s" * 32,
            on_event=events,
            clock=clock,
            poll_interval=0.005,
            **kwargs,
        )
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        await layer.aclose()


async def test_a_miss_goes_upstream_once_then_hits(make_layer, upstream, events):
    layer = make_layer(upstream)
    first = await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    second = await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    assert first == second == {"ada@example.com": person("ada@example.com")}
    assert upstream.keys_called() == ["ada@example.com"]
    assert (events["miss"], events["hit"]) == (1, 1)


async def test_only_the_missing_keys_of_a_batch_go_upstream(make_layer, upstream):
    upstream.data["bob@example.com"] = person("bob@example.com")
    layer = make_layer(upstream)
    await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    found = await layer(
        Conn(), "people_by_email", ["ada@example.com", "bob@example.com"], RequestScope()
    )
    assert set(found) == {"ada@example.com", "bob@example.com"}
    assert upstream.calls[-1] == ("people_by_email", ("bob@example.com",))


async def test_methods_and_connectors_do_not_share_entries(make_layer, upstream):
    layer = make_layer(upstream)
    await layer(Conn("crm"), "people_by_email", ["ada@example.com"], RequestScope())
    await layer(Conn("crm"), "requesters_by_email", ["ada@example.com"], RequestScope())
    await layer(Conn("ticketing"), "people_by_email", ["ada@example.com"], RequestScope())
    assert len(upstream.calls) == 3


async def test_unknown_keys_are_remembered_for_the_negative_ttl(make_layer, upstream, clock):
    layer = make_layer(upstream)
    for _ in range(2):
        assert await layer(Conn(), "people_by_email", ["nobody@x.io"], RequestScope()) == {}
    assert len(upstream.calls) == 1
    clock.now += TTL.negative + 1
    upstream.data["nobody@x.io"] = person("nobody@x.io")
    found = await layer(Conn(), "people_by_email", ["nobody@x.io"], RequestScope())
    assert found == {"nobody@x.io": person("nobody@x.io")}
    assert len(upstream.calls) == 2


async def test_past_soft_ttl_the_stale_value_is_served_while_one_refresh_runs(
    make_layer, upstream, clock, events
):
    layer = make_layer(upstream)
    key = "ada@example.com"
    await layer(Conn(), "people_by_email", [key], RequestScope())
    clock.now += TTL.soft + 32
    upstream.data[key] = person(key, version=2)
    upstream.gate = asyncio.Event()
    upstream.entered.clear()

    scopes = [RequestScope() for _ in range(5)]
    answers = await asyncio.gather(
        *(layer(Conn(), "people_by_email", [key], scope) for scope in scopes)
    )
    assert all(answer == {key: person(key, version=1)} for answer in answers)
    for scope in scopes:
        assert [(n.source, n.operation, n.key, n.age) for n in scope.stale] == [
            ("crm", "people_by_email", key, TTL.soft + 32)
        ]
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
    upstream.gate.set()
    await events.wait("refreshed")

    scope = RequestScope()
    assert await layer(Conn(), "people_by_email", [key], scope) == {key: person(key, version=2)}
    assert scope.stale == []
    assert len(upstream.calls) == 2  # the first miss and exactly one refresh
    assert events["refresh"] == 1


async def test_a_failing_upstream_is_answered_with_a_stale_value_up_to_max_stale(
    make_layer, upstream, clock, events
):
    layer = make_layer(upstream)
    key = "ada@example.com"
    await layer(Conn(), "people_by_email", [key], RequestScope())
    upstream.fail = UpstreamUnavailable("down", source="crm")

    clock.now += TTL.hard + 1
    scope = RequestScope()
    assert await layer(Conn(), "people_by_email", [key], scope) == {key: person(key)}
    assert [n.age for n in scope.stale] == [TTL.hard + 1]
    assert events["stale_if_error"] == 1

    clock.now += TTL.max_stale
    with pytest.raises(UpstreamUnavailable):
        await layer(Conn(), "people_by_email", [key], RequestScope())


async def test_a_rate_limited_upstream_is_answered_with_the_stale_value(
    make_layer, upstream, clock, events
):
    layer = make_layer(upstream)
    key = "ada@example.com"
    await layer(Conn(), "people_by_email", [key], RequestScope())
    upstream.fail = UpstreamRateLimited("crm rate limit reached", source="crm", retry_after=2)
    clock.now += TTL.hard + 1
    scope = RequestScope()
    assert await layer(Conn(), "people_by_email", [key], scope) == {key: person(key)}
    assert [(n.source, n.key) for n in scope.stale] == [("crm", key)]
    assert events["stale_if_error"] == 1
    with pytest.raises(UpstreamRateLimited) as caught:  # nothing to fall back on
        await layer(Conn(), "people_by_email", ["cold@example.com"], RequestScope())
    assert caught.value.retry_after == 2


async def test_a_request_that_waited_for_a_failed_fetch_logs_it_with_its_own_id(
    make_layer, upstream, caplog
):
    caplog.set_level(logging.WARNING, logger="c360.upstream")
    layer = make_layer(upstream)
    upstream.gate = asyncio.Event()
    upstream.fail = UpstreamUnavailable("down", source="crm")
    key = "ada@example.com"
    owner = asyncio.create_task(
        layer(Conn(), "people_by_email", [key], RequestScope(request_id="owner-request"))
    )
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
    joiner = asyncio.create_task(
        layer(Conn(), "people_by_email", [key], RequestScope(request_id="joiner-request"))
    )
    await asyncio.sleep(0)
    upstream.gate.set()
    results = await asyncio.gather(owner, joiner, return_exceptions=True)
    assert all(isinstance(r, UpstreamUnavailable) for r in results)
    assert len(upstream.calls) == 1
    # The owner's line is the upstream layer's (not in this test); the joiner's is here.
    lines = [r for r in caplog.records if r.name == "c360.upstream"]
    assert [(r.request_id, r.connector, r.operation, r.code) for r in lines] == [
        ("joiner-request", "crm", "people_by_email", "UPSTREAM_UNAVAILABLE")
    ]
    assert key not in lines[0].getMessage()


async def test_a_failure_costs_only_the_keys_with_nothing_to_fall_back_on(
    make_layer, upstream, clock
):
    layer = make_layer(upstream)
    await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    clock.now += TTL.hard + 1
    upstream.fail = UpstreamUnavailable("down", source="crm")
    loaders = Loaders(None, call=layer)

    stale, cold = await asyncio.gather(
        loaders.load(Conn(), "people_by_email", "ada@example.com"),
        loaders.load(Conn(), "people_by_email", "cold@example.com"),
        return_exceptions=True,
    )
    assert stale == person("ada@example.com")
    assert isinstance(cold, UpstreamUnavailable)
    assert [n.key for n in loaders.scope.stale] == ["ada@example.com"]


async def test_a_burst_of_identical_cold_loads_costs_one_upstream_call(make_layer, upstream):
    layer = make_layer(upstream)
    upstream.gate = asyncio.Event()
    burst = [
        asyncio.create_task(layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope()))
        for _ in range(100)
    ]
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert all(answer == {"ada@example.com": person("ada@example.com")} for answer in answers)
    assert len(upstream.calls) == 1


async def test_a_caller_that_gives_up_does_not_cancel_the_fetch_for_the_others(
    make_layer, upstream
):
    layer = make_layer(upstream)
    upstream.gate = asyncio.Event()
    quitter = asyncio.create_task(
        layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    )
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
    stayer = asyncio.create_task(
        layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    )
    quitter.cancel()
    upstream.gate.set()
    assert await stayer == {"ada@example.com": person("ada@example.com")}
    assert quitter.cancelled()
    assert upstream.cancelled == 0


async def test_two_processes_sharing_a_store_fetch_once(make_layer, upstream, clock, events):
    store = SharedMemoryStore(clock=clock)
    first, second = make_layer(upstream, store=store), make_layer(upstream, store=store)
    upstream.gate = asyncio.Event()
    winner = asyncio.create_task(
        first(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    )
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
    waiter = asyncio.create_task(
        second(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    )
    await events.wait("wait")  # the second process found the lock taken
    upstream.gate.set()
    assert await winner == await waiter == {"ada@example.com": person("ada@example.com")}
    assert len(upstream.calls) == 1


class LaggingStore(SharedMemoryStore):
    """Answers the first read as if a peer's write had not landed yet."""

    lagging = False

    async def get_many(self, keys):
        if self.lagging:
            self.lagging = False
            return [None] * len(keys)
        return await super().get_many(keys)


async def test_a_process_that_missed_just_before_a_peer_stored_does_not_fetch_again(
    make_layer, upstream, clock, events
):
    store = LaggingStore(clock=clock)
    first, second = make_layer(upstream, store=store), make_layer(upstream, store=store)
    await first(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    store.lagging = True
    found = await second(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    assert found == {"ada@example.com": person("ada@example.com")}
    assert events["miss"] == 2
    assert len(upstream.calls) == 1
    assert len(store) == 1  # the entry; the second process's lock is released


async def test_a_peer_whose_fetch_failed_does_not_leave_the_others_waiting(
    make_layer, clock, events
):
    store = SharedMemoryStore(clock=clock)
    failing = Upstream()
    failing.gate, failing.fail = asyncio.Event(), UpstreamUnavailable("down", source="crm")
    working = Upstream({"ada@example.com": person("ada@example.com")})
    first, second = make_layer(failing, store=store), make_layer(working, store=store)

    doomed = asyncio.create_task(
        first(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    )
    async with asyncio.timeout(DEADLINE):
        await failing.entered.wait()
    waiter = asyncio.create_task(
        second(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    )
    await events.wait("wait")
    failing.gate.set()
    with pytest.raises(UpstreamUnavailable):
        await doomed
    async with asyncio.timeout(DEADLINE):  # well before the lock would have expired
        assert await waiter == {"ada@example.com": person("ada@example.com")}
    assert len(working.calls) == 1


async def test_closing_cancels_background_refreshes(make_layer, upstream, clock, events):
    layer = make_layer(upstream)
    await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    clock.now += TTL.soft + 1
    upstream.gate = asyncio.Event()  # the refresh never finishes by itself
    upstream.entered.clear()
    await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
        await layer.aclose()
    assert upstream.cancelled == 1


async def test_refreshes_are_bounded(make_layer, upstream, clock, events):
    upstream.data.update({f"p{i}@x.io": person(f"p{i}@x.io") for i in range(3)})
    layer = make_layer(upstream, max_refreshes=1)
    keys = [f"p{i}@x.io" for i in range(3)]
    await layer(Conn(), "people_by_email", keys, RequestScope())
    clock.now += TTL.soft + 1
    upstream.gate = asyncio.Event()
    for key in keys:
        await layer(Conn(), "people_by_email", [key], RequestScope())
    assert (events["refresh"], events["refresh_skipped"]) == (1, 2)
    upstream.gate.set()


class BrokenStore(MemoryStore):
    async def get_many(self, keys):
        raise StoreError("redis: ConnectionError")

    set_many = delete_many = acquire_many = release_many = get_many


async def test_a_broken_store_fails_open_to_the_upstream(make_layer, upstream, events):
    layer = make_layer(upstream, store=BrokenStore())
    for _ in range(2):
        found = await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
        assert found == {"ada@example.com": person("ada@example.com")}
    assert len(upstream.calls) == 2
    assert events["fail_open"] == 2
    assert events["redis_error"] == 2  # the read only: the same request skips the store after
    assert not await layer.evict("crm", "people_by_email", ["ada@example.com"])


async def test_evict_forgets_an_entry(make_layer, upstream):
    layer = make_layer(upstream)
    await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    assert await layer.evict("crm", "people_by_email", ["ada@example.com"])
    await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    assert len(upstream.calls) == 2


async def test_an_unreadable_entry_is_a_miss(make_layer, upstream, clock, events):
    store = MemoryStore(clock=clock)
    layer = make_layer(upstream, store=store)
    await store.set_many([(layer.data_key("crm", "people_by_email", "ada@example.com"), b"{", 60)])
    found = await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    assert found == {"ada@example.com": person("ada@example.com")}
    assert events["decode_error"] == 1


class RecordingStore(MemoryStore):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.written: dict[str, bytes] = {}

    async def set_many(self, items):
        self.written.update({key: value for key, value, _ in items})
        await super().set_many(items)


async def test_keys_hold_a_keyed_hash_never_the_raw_key(make_layer, upstream, clock):
    store = RecordingStore(clock=clock)
    layer = make_layer(upstream, store=store)
    await layer(Conn(), "people_by_email", ["ada@example.com", "nobody@x.io"], RequestScope())
    assert len(store.written) == 2
    for key in store.written:
        assert key.startswith("c360:v1:crm:people_by_email:")
        assert "@" not in key and "ada" not in key and "nobody" not in key
    other = CacheLayer(MemoryStore(), upstream, policy=CachePolicy(), secret=b"t" * 32)
    mine = layer.data_key("crm", "people_by_email", "ada@example.com")
    assert other.data_key("crm", "people_by_email", "ada@example.com") != mine


async def test_a_disabled_method_is_not_cached(make_layer, upstream):
    policy = CachePolicy(default=TTL, overrides={("crm", "people_by_email"): Ttl(soft=0)})
    layer = make_layer(upstream, policy=policy)
    for _ in range(2):
        await layer(Conn(), "people_by_email", ["ada@example.com"], RequestScope())
    assert len(upstream.calls) == 2


def _settings(cache=None, **env):
    data = {"connectors": {"crm": {"base_url": "https://crm.example"}}}
    if cache is not None:
        data["cache"] = cache
    return settings_from_mapping(data, env={"C360_ID_KEY": "A" * 43, **env})


async def test_settings_choose_memory_or_redis_and_ttls_per_connector_and_method(
    monkeypatch, upstream
):
    layer = cache_from_settings(_settings(), upstream)
    assert isinstance(layer.store, MemoryStore)
    await layer.aclose()

    monkeypatch.setenv("C360_TEST_REDIS", "redis://127.0.0.1:1/0")
    cache = {
        "redis_url": "env:C360_TEST_REDIS",
        "soft_ttl": 20,
        "connectors": {
            "crm": {"hard_ttl": 400, "people_by_email": {"soft_ttl": 5}},
            "billing": {"enabled": False},
        },
    }
    layer = cache_from_settings(_settings(cache), upstream)
    try:
        assert type(layer.store).__name__ == "RedisStore"
        policy = layer.policy
        assert policy.ttl("crm", "people_by_email") == Ttl(soft=5, hard=400)
        assert policy.ttl("crm", "organizations_by_id") == Ttl(soft=20, hard=400)
        assert policy.ttl("zendesk", "x") == Ttl(soft=20)
        assert not policy.ttl("billing", "customers_by_email").enabled
    finally:
        await layer.aclose()


async def test_the_cache_key_secret_comes_from_config_or_the_id_key(monkeypatch, upstream):
    monkeypatch.setenv("C360_TEST_CACHE_KEY", "k" * 32)
    a = cache_from_settings(_settings({"key_secret": "env:C360_TEST_CACHE_KEY"}), upstream)
    b = cache_from_settings(_settings(), upstream)
    c = cache_from_settings(_settings(), upstream)
    try:
        assert a.data_key("crm", "m", "k") != b.data_key("crm", "m", "k")
        assert b.data_key("crm", "m", "k") == c.data_key("crm", "m", "k")
    finally:
        for layer in (a, b, c):
            await layer.aclose()


@pytest.mark.parametrize(
    ("cache", "fragment"),
    [
        ({"soft_ttl": 500, "hard_ttl": 100}, "soft_ttl <= hard_ttl"),
        ({"connectors": {"crm": {"people_by_email": {"max_stale": 1}}}}, "people_by_email"),
        ({"soft_ttl": "long"}, "cache.soft_ttl"),
        ({"redis_url": "memcached://x"}, "unsupported scheme"),
        ({"redis_url": "redis+sentinel://s1:26379"}, "service_name"),
        ({"key_secret": "short-literal"}, "not a literal"),
        ({"connectors": ["crm"]}, "cache.connectors"),
        ({"breaker": {"ttl": 0}}, "breaker"),
        ({"redis_url": "redis://h:6379/0?socket_timeout=soon"}, "not a usable Redis URL"),
    ],
)
def test_bad_cache_config_is_a_clear_error(cache, fragment, upstream):
    with pytest.raises(ConfigError, match=fragment):
        cache_from_settings(_settings(cache), upstream)


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("redis://:p%40ss@127.0.0.1:6390/2", "Redis", ("127.0.0.1", 6390, 2, "p@ss")),
        ("unix:///run/redis.sock?db=3", "Redis", ("/run/redis.sock", None, 3, None)),
        ("redis+cluster://127.0.0.1:7000", "RedisCluster", ("127.0.0.1", 7000, 0, None)),
        ("redis://127.0.0.1:7000?cluster=true", "RedisCluster", ("127.0.0.1", 7000, 0, None)),
        ("redis+sentinel://:pw@s1:26380,[::1]/main/4", "Redis", ("main", None, 4, "pw")),
    ],
)
async def test_redis_urls_pick_the_deployment_and_keep_timeouts_tight(url, kind, where):
    store = RedisStore.from_url(url, timeout=0.3)
    try:
        client = store._client
        assert type(client).__name__ == kind
        if kind == "RedisCluster":
            [node] = client.nodes_manager.startup_nodes.values()
            assert (node.host, node.port) == where[:2]
            kwargs = {**client.get_connection_kwargs(), "retry": client.retry}
        else:
            kwargs = client.connection_pool.connection_kwargs
            if url.startswith("redis+sentinel"):
                assert client.connection_pool.service_name == where[0]
                sentinels = store._sentinel.sentinels
                hosts = [s.connection_pool.connection_kwargs["host"] for s in sentinels]
                ports = [s.connection_pool.connection_kwargs["port"] for s in sentinels]
                assert (hosts, ports) == (["s1", "::1"], [26380, 26379])
            else:
                assert kwargs.get("host", kwargs.get("path")) == where[0]
                assert kwargs.get("port") == where[1]
            assert (kwargs.get("db", 0), kwargs.get("password")) == where[2:]
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.3
        assert kwargs["retry"].get_retries() == 0
    finally:
        await store.aclose()
