"""The cache layer against a real redis-server that the tests start, kill and pause."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest
import redis

from connectors.sdk import Person, SourceRef
from connectors.sdk.testing.server import free_port
from gateway.cache import CacheLayer, CachePolicy, RedisStore, Ttl
from gateway.upstream import RequestScope

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

DEADLINE = 10.0
TTL = Ttl(soft=10, hard=100, max_stale=1000, negative=5)
KEY = "ada.lovelace@example.com"


def person(email: str, version: int = 1) -> list[Person]:
    return [Person(source=SourceRef(system="crm", record_id=f"{version}"), email=email)]


class RedisServer:
    """One redis-server process on a fixed port, which the test may kill, restart or pause."""

    def __init__(self, directory, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            wait_for_ping(self.port, self.proc)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)


def wait_for_ping(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
            time.sleep(0.02)


@pytest.fixture
def server(tmp_path):
    srv = RedisServer(tmp_path)
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.resume()
        srv.kill()


class Conn:
    name = "crm"


class Upstream:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.version = 1

    async def __call__(self, connector, method, keys, scope):
        self.calls.append(tuple(keys))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return {key: person(key, self.version) for key in keys if not key.startswith("nobody")}


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


@pytest.fixture
async def make_layer():
    layers = []

    def make(url, inner, events, clock=time.time, **store_options):
        # Generous by default: a loaded CI machine must not look like a dead Redis.
        # The tests about timeouts pass tight ones.
        options = {"timeout": 1.0, "breaker_threshold": 2, "breaker_ttl": 0.2, **store_options}
        layer = CacheLayer(
            RedisStore.from_url(url, **options),
            inner,
            policy=CachePolicy(default=TTL, lock_ttl=3.0),
            secret=b"integration-secret-0123456789abc",
            on_event=events,
            clock=clock,
            poll_interval=0.005,
        )
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        await layer.aclose()


async def test_hit_miss_stale_and_negative_paths_through_redis(server, make_layer):
    now = [time.time()]
    upstream, events = Upstream(), Events()
    layer = make_layer(server.url, upstream, events, clock=lambda: now[0])

    assert await layer(Conn(), "people_by_email", [KEY, "nobody@x.io"], RequestScope()) == {
        KEY: person(KEY)
    }
    assert await layer(Conn(), "people_by_email", [KEY, "nobody@x.io"], RequestScope()) == {
        KEY: person(KEY)
    }
    assert len(upstream.calls) == 1
    assert (events["miss"], events["hit"]) == (2, 2)

    now[0] += TTL.soft + 5
    upstream.version = 2
    scope = RequestScope()
    assert await layer(Conn(), "people_by_email", [KEY], scope) == {KEY: person(KEY, 1)}
    assert [(note.key, note.age) for note in scope.stale] == [(KEY, TTL.soft + 5)]
    await events.wait("refreshed")
    assert await layer(Conn(), "people_by_email", [KEY], RequestScope()) == {KEY: person(KEY, 2)}
    assert len(upstream.calls) == 2


async def test_redis_never_holds_a_raw_key(server, make_layer):
    layer = make_layer(server.url, Upstream(), Events())
    emails = [KEY, "grace.hopper@example.com", "nobody.here@example.com"]
    await layer(Conn(), "people_by_email", emails, RequestScope())
    with server.client() as client:
        keys = [key.decode() for key in client.scan_iter(count=1000)]
    assert len(keys) == 3
    for key in keys:
        assert key.startswith("c360:v1:crm:people_by_email:")
        assert "@" not in key
        assert not any(part in key for part in ("ada", "lovelace", "grace", "hopper", "nobody"))


async def test_two_gateways_sharing_redis_make_one_upstream_call_for_a_burst(server, make_layer):
    upstream, events = Upstream(), Events()
    a = make_layer(server.url, upstream, events)
    b = make_layer(server.url, upstream, events)
    upstream.gate = asyncio.Event()
    burst = [
        asyncio.create_task(layer(Conn(), "people_by_email", [KEY], RequestScope()))
        for layer in (a, b) * 50
    ]
    async with asyncio.timeout(DEADLINE):
        await upstream.entered.wait()
    await events.wait("wait")  # the process that lost the lock waits for the other's value
    upstream.gate.set()
    answers = await asyncio.gather(*burst)
    assert all(answer == {KEY: person(KEY)} for answer in answers)
    assert upstream.calls == [(KEY,)]


async def _until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def test_redis_killed_and_restarted_mid_traffic_fails_open_and_recovers(server, make_layer):
    upstream, events = Upstream(), Events()
    layer = make_layer(server.url, upstream, events, breaker_ttl=1.0)

    async def request(key: str = KEY) -> dict:
        return dict(await layer(Conn(), "people_by_email", [key], RequestScope()))

    assert await request() == {KEY: person(KEY)}
    assert await request() == {KEY: person(KEY)}
    assert len(upstream.calls) == 1

    server.kill()
    answers = await asyncio.gather(*(request() for _ in range(20)))
    tried = events["redis_error"]
    answers += [await request() for _ in range(20)]
    assert all(answer == {KEY: person(KEY)} for answer in answers)
    assert events["fail_open"] == 40
    # The breaker opened: later requests do not even try the dead server.
    assert 2 <= tried <= 20
    assert events["redis_error"] == tried

    server.start()  # same port, empty

    async def cache_works_again() -> bool:
        hits = events["hit"]
        await request()
        return events["hit"] > hits

    await _until(cache_works_again, "the cache to serve hits again")


async def test_a_paused_redis_costs_a_bounded_delay_then_recovers(server, make_layer):
    upstream, events = Upstream(), Events()
    layer = make_layer(server.url, upstream, events, timeout=0.2, breaker_ttl=0.5)
    await layer(Conn(), "people_by_email", [KEY], RequestScope())

    server.pause()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(
            *(layer(Conn(), "people_by_email", [KEY], RequestScope()) for _ in range(20))
        )
        # One socket timeout, not one per Redis command nor per request.
        assert loop.time() - started < 1.0
        assert all(answer == {KEY: person(KEY)} for answer in answers)
        assert events["fail_open"] == 20
    finally:
        server.resume()

    async def cache_works_again() -> bool:
        hits = events["hit"]
        await layer(Conn(), "people_by_email", [KEY], RequestScope())
        return events["hit"] > hits

    await _until(cache_works_again, "the cache to serve hits again")


@pytest.fixture
def sentinel(server, tmp_path):
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor c360 127.0.0.1 {server.port} 1\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(config), "--sentinel", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_ping(port, proc)
        yield port
    finally:
        proc.kill()
        proc.wait()


async def test_a_sentinel_url_finds_the_master(server, sentinel, make_layer):
    upstream = Upstream()
    url = f"redis+sentinel://127.0.0.1:{sentinel},127.0.0.1:{free_port()}/c360/0"
    layer = make_layer(url, upstream, Events(), timeout=1.0)
    for _ in range(2):
        await layer(Conn(), "people_by_email", [KEY], RequestScope())
    assert len(upstream.calls) == 1
    with server.client() as client:
        assert len(list(client.scan_iter("c360:v1:crm:*"))) == 1


@pytest.fixture
def cluster(tmp_path):
    nodes = []
    try:
        for i in range(3):
            directory = tmp_path / f"node{i}"
            directory.mkdir()
            bus = ("--cluster-enabled", "yes", "--cluster-port", str(free_port()))
            node = RedisServer(directory, *bus)
            node.start()
            nodes.append(node)
        subprocess.run(
            ["redis-cli", "--cluster", "create", "--cluster-yes"]
            + [f"127.0.0.1:{node.port}" for node in nodes],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=DEADLINE,
        )
        deadline = time.monotonic() + DEADLINE
        with nodes[0].client() as client:
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                assert time.monotonic() < deadline, "cluster did not form"
                time.sleep(0.05)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")
async def test_a_cluster_url_spreads_keys_over_slots(cluster, make_layer):
    upstream = Upstream()
    layer = make_layer(f"redis+cluster://127.0.0.1:{cluster[0].port}", upstream, Events())
    emails = [f"user{i}@example.com" for i in range(20)]
    for _ in range(2):
        found = await layer(Conn(), "people_by_email", emails, RequestScope())
        assert set(found) == set(emails)
    assert len(upstream.calls) == 1
    counts = []
    for node in cluster:
        with node.client() as client:
            counts.append(client.dbsize())
    assert sum(counts) == 20
    assert sum(1 for count in counts if count) > 1
