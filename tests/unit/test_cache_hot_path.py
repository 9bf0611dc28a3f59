"""Cache hits from process memory: shared decoded values that no request can change."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from connectors.sdk import Person, SourceRef, Ticket
from gateway import _codec
from gateway.cache import MISSING, CacheLayer, CachePolicy, MemoryStore, Ttl
from gateway.context import Loaders
from gateway.upstream import RequestScope
from tests.unit.test_cache import Clock, Conn

TTL = Ttl(soft=10, hard=100, max_stale=1000, negative=5)
SECRET = b"s" * 32


def answer(key: str) -> list[Person]:
    ref = SourceRef(system="crm", record_id=key)
    return [Person(source=ref, email=key, links={"zendesk": f"z-{key}"})]


class Upstream:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.given: dict[str, list[Person]] = {}

    async def __call__(self, connector, method, keys, scope):
        self.calls.extend(keys)
        found = {key: answer(key) for key in keys}
        self.given.update(found)
        return found


class BytesStore(MemoryStore):
    """Keeps bytes, as Redis does."""

    holds_objects = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.written: list[object] = []

    async def set_many(self, items):
        self.written.extend(value for _, value, _ in items)
        await super().set_many(items)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def layer_on(clock):
    layers = []

    def make(store, upstream):
        layer = CacheLayer(
            store, upstream, policy=CachePolicy(default=TTL), secret=SECRET, clock=clock
        )
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        await layer.aclose()


async def get(layer, *keys):
    return await layer(Conn(), "people_by_email", list(keys), RequestScope())


async def test_hits_share_one_value_that_no_request_can_change(layer_on, clock):
    upstream = Upstream()
    layer = layer_on(MemoryStore(clock=clock), upstream)
    await get(layer, "ada")
    first, second = (await get(layer, "ada"))["ada"], (await get(layer, "ada"))["ada"]
    assert first is second  # served from memory, not rebuilt per request
    with pytest.raises(TypeError):
        first.append(first[0])
    with pytest.raises(TypeError):
        first[0].links["stripe"] = "cus_1"
    assert (await get(layer, "ada")) == {"ada": answer("ada")}
    assert upstream.calls == ["ada"]


async def test_what_the_upstream_handed_the_first_caller_stays_its_own(layer_on, clock):
    upstream = Upstream()
    layer = layer_on(MemoryStore(clock=clock), upstream)
    missed = (await get(layer, "ada"))["ada"]
    missed.append(missed[0])
    missed[0].links.clear()
    assert (await get(layer, "ada")) == {"ada": answer("ada")}


async def test_a_store_that_keeps_bytes_is_given_plain_json(layer_on, clock):
    store = BytesStore(clock=clock)
    layer = layer_on(store, Upstream())
    await get(layer, "ada")
    assert [_codec.loads(blob)["v"] for blob in store.written] == [answer("ada")]
    assert (await get(layer, "ada")) == {"ada": answer("ada")}


async def test_the_memory_store_stays_bounded_and_expires_entries(layer_on, clock):
    upstream, store = Upstream(), MemoryStore(max_entries=2, clock=clock)
    layer = layer_on(store, upstream)
    await get(layer, "a", "b")
    await get(layer, "a")  # "b" is now the least recently used
    await get(layer, "c")
    await get(layer, "a", "c")
    assert upstream.calls == ["a", "b", "c"]
    await get(layer, "b")
    assert upstream.calls == ["a", "b", "c", "b"]
    assert len(store) == 2
    clock.now += TTL.max_stale
    assert len(store) == 0


async def test_every_cached_kind_of_value_comes_back_equal_from_memory(layer_on, clock):
    ref = SourceRef(system="zendesk", record_id="1")
    values = {"tickets": (Ticket(source=ref),), "none": None, "map": {"k": [1, 2]}}

    async def upstream(connector, method, keys, scope):
        return {key: values[key] for key in keys}

    layer = layer_on(MemoryStore(clock=clock), upstream)
    await get(layer, *values)
    assert await get(layer, *values) == values


def test_store_keys_are_the_keyed_hash_every_gateway_version_computes(clock):
    layer = CacheLayer(
        MemoryStore(clock=clock), Upstream(), policy=CachePolicy(), secret=SECRET, clock=clock
    )
    digest = hmac.new(SECRET, b"crm\0people_by_email\0ada", hashlib.sha256).hexdigest()[:32]
    for _ in range(2):  # computed, then remembered
        assert layer.data_key("crm", "people_by_email", "ada") == (
            f"c360:v1:crm:people_by_email:{digest}"
        )


class Counting:
    """The pipeline as the loaders see it: counts the batches that reach it."""

    def __init__(self, layer: CacheLayer) -> None:
        self.layer = layer
        self.batches: list[tuple[str, ...]] = []

    async def __call__(self, connector, method, keys, scope):
        self.batches.append(tuple(keys))
        return await self.layer(connector, method, keys, scope)


def loaders_over(layer: CacheLayer) -> tuple[Loaders, Counting]:
    pipeline = Counting(layer)
    return Loaders(None, pipeline, RequestScope(), fresh=layer.fresh), pipeline


async def test_a_fresh_answer_in_memory_is_served_without_scheduling_a_batch(layer_on, clock):
    events: list[str] = []
    upstream = Upstream()
    layer = CacheLayer(
        MemoryStore(clock=clock),
        upstream,
        policy=CachePolicy(default=TTL),
        secret=SECRET,
        clock=clock,
        on_event=lambda event, source: events.append(event),
    )
    await get(layer, "ada")
    loaders, pipeline = loaders_over(layer)
    hit = loaders.load(Conn(), "people_by_email", "ada")
    assert hit.done()  # answered on the spot: no batch, no task, no loop pass
    assert hit.result() == answer("ada")
    assert loaders.load(Conn(), "people_by_email", "ada") is hit  # once per request
    assert await loaders.load(Conn(), "people_by_email", "bob") == answer("bob")
    assert pipeline.batches == [("bob",)]
    assert upstream.calls == ["ada", "bob"]
    assert events.count("hit") == 1
    await layer.aclose()


async def test_stale_answers_still_take_the_full_path(layer_on, clock):
    upstream = Upstream()
    layer = layer_on(MemoryStore(clock=clock), upstream)
    await get(layer, "ada")
    clock.now += TTL.soft + 1
    loaders, pipeline = loaders_over(layer)
    assert await loaders.load(Conn(), "people_by_email", "ada") == answer("ada")
    assert pipeline.batches == [("ada",)]
    # Served stale and noted as such, with a refresh behind it.
    assert [note.key for note in loaders.scope.stale] == ["ada"]


async def test_a_fresh_negative_answer_is_none_until_it_expires(layer_on, clock):
    async def nobody(connector, method, keys, scope):
        return {}

    layer = layer_on(MemoryStore(clock=clock), nobody)
    await get(layer, "ghost")
    loaders, pipeline = loaders_over(layer)
    known = loaders.load(Conn(), "people_by_email", "ghost")
    assert known.done() and known.result() is None
    clock.now += TTL.negative
    assert pipeline.batches == []
    later, again = loaders_over(layer)
    expired = later.load(Conn(), "people_by_email", "ghost")
    assert not expired.done()
    assert await expired is None
    assert again.batches == [("ghost",)]


async def test_a_store_outside_the_process_is_always_asked(layer_on, clock):
    layer = layer_on(BytesStore(clock=clock), Upstream())
    await get(layer, "ada")
    assert layer.fresh(Conn(), "people_by_email", "ada") is MISSING
    loaders, pipeline = loaders_over(layer)
    assert await loaders.load(Conn(), "people_by_email", "ada") == answer("ada")
    assert pipeline.batches == [("ada",)]
