"""Live invalidation end to end: a sandbox change reaches every gateway process.

One sandbox and two gateway apps (A and B, each with its own in-memory cache)
run in threads and share a real redis-server for invalidation broadcasts.
``POST /_sandbox/mutate`` changes a record and delivers the vendor's signed
webhook to A; A evicts and publishes; B's next answer shows the change while
an unrelated customer B holds stays cached (no upstream calls).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis
import yaml
from starlette.applications import Starlette

from connectors.sdk import Person, SourceRef
from connectors.sdk.sandbox import SandboxState, World, create_combined_app
from connectors.sdk.testing.server import free_port, serve_in_thread
from connectors.sdk.webhooks import Invalidation, sign_stripe
from gateway.app import create_app
from gateway.cache import CacheLayer, CachePolicy, MemoryStore, Ttl
from gateway.config import Settings, settings_from_mapping
from gateway.upstream import RequestScope
from gateway.webhooks import Invalidator, webhook_routes, webhook_settings
from tests.servers import VENDORS, gateway_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

DEADLINE = 10.0
SECRETS = {vendor: f"{vendor}-webhook-secret-0123456789" for vendor in VENDORS}
QUERY = """query($e: String) { customer(email: $e) {
  phones invoices { id status } tickets { id subject } marketing { status } } }"""


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``DEADLINE`` seconds."""
    deadline = time.monotonic() + DEADLINE
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return result


def start_redis(port: int, directory: Any) -> subprocess.Popen[bytes]:
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                assert proc.poll() is None, "redis-server exited"
                return False

        try:
            wait_for(pong, "redis-server")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def with_webhooks(app: Starlette, settings: Settings) -> Starlette:
    """Wire gateway.webhooks into ``app`` as gateway.app is to (a no-op once it does)."""
    if any(getattr(route, "path", "").startswith("/webhooks/") for route in app.routes):
        return app
    runtime = app.state.c360
    hooks = webhook_settings(settings)
    invalidator = Invalidator(lambda: runtime.cache, redis_url=hooks.redis_url,
                              channel=hooks.channel)  # fmt: skip
    app.router.routes.extend(
        webhook_routes(invalidator, settings.connectors, max_body_bytes=hooks.max_body_bytes)
    )
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(started: Starlette):
        async with inner(started):
            await invalidator.start()
            try:
                yield
            finally:
                await invalidator.aclose()

    app.router.lifespan_context = lifespan
    return app


class Stack:
    def __init__(self, sandbox: str, a: str, b: str, people: list[dict[str, Any]]) -> None:
        self.sandbox, self.a, self.b, self.people = sandbox, a, b, people

    def ask(self, gateway: str, email: str) -> dict[str, Any]:
        query = {"query": QUERY, "variables": {"e": email}}
        response = httpx.post(f"{gateway}/graphql", json=query, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        customer: dict[str, Any] = body["data"]["customer"]
        return customer

    def upstream_calls(self, action: Callable[[], Any]) -> int:
        httpx.post(f"{self.sandbox}/_sandbox/reset-stats")
        action()
        total: int = httpx.get(f"{self.sandbox}/_sandbox/stats").json()["total"]
        return total

    def mutate(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.sandbox}/_sandbox/mutate", json=spec, timeout=30)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    world = World(customers=80, seed=5)
    state = SandboxState(world)
    people = [world.answer_key(p) for p in world.people]
    # Clean people with one billing account: no shared key links two of them.
    clean = [
        p for p in people if p["in_all"] and not p["anomalies"] and len(p["systems"]["stripe"]) == 1
    ]
    with (
        serve_in_thread(create_combined_app(state, VENDORS)) as sandbox,
        pytest.MonkeyPatch.context() as env,
    ):
        apps = []
        for name in ("a", "b"):
            path, variables = gateway_config(
                sandbox, tmp_path_factory.mktemp(f"gateway-{name}"),
                cache={"soft_ttl": 300, "hard_ttl": 600, "max_stale": 900, "negative_ttl": 300},
                extra={"webhooks": {"redis_url": redis_url}},
            )  # fmt: skip
            for var, value in variables.items():
                env.setenv(var, value)
            document = yaml.safe_load(path.read_text())
            for vendor in VENDORS:
                env.setenv(f"C360_TEST_{vendor.upper()}_WEBHOOK", SECRETS[vendor])
                document["connectors"][vendor]["webhook_secret"] = (
                    f"env:C360_TEST_{vendor.upper()}_WEBHOOK"
                )
            settings = settings_from_mapping(document)
            apps.append(with_webhooks(create_app(settings), settings))
        with serve_in_thread(apps[0]) as a, serve_in_thread(apps[1]) as b:
            targets = {vendor: {"url": f"{a}/webhooks/{vendor}", "secret": SECRETS[vendor]}
                       for vendor in VENDORS}  # fmt: skip
            targets["mailchimp"] = {"url": f"{a}/webhooks/mailchimp/{SECRETS['mailchimp']}"}
            assert httpx.post(f"{sandbox}/_sandbox/webhooks", json=targets).status_code == 200
            yield Stack(sandbox, a, b, clean)


def stripe_invoice(stack: Stack, person: dict[str, Any]) -> tuple[dict[str, Any], Callable]:
    invoice = stack.ask(stack.b, person["email"])["invoices"][0]
    status = "paid" if invoice["status"] == "void" else "void"
    spec = {"vendor": "stripe", "kind": "invoice", "id": invoice["id"],
            "changes": {"status": status}}  # fmt: skip
    return spec, lambda c: {"id": invoice["id"], "status": status} in c["invoices"]


def stripe_phone(stack: Stack, person: dict[str, Any]) -> tuple[dict[str, Any], Callable]:
    spec = {"vendor": "stripe", "kind": "customer", "id": person["systems"]["stripe"][0],
            "changes": {"phone": "+14155559876"}}  # fmt: skip
    return spec, lambda c: "+14155559876" in c["phones"]


def zendesk_ticket(stack: Stack, person: dict[str, Any]) -> tuple[dict[str, Any], Callable]:
    spec = {"vendor": "zendesk", "kind": "ticket", "requester": person["systems"]["zendesk"][0],
            "create": {"subject": "Invoice PDF will not open"}}  # fmt: skip
    return spec, lambda c: "Invoice PDF will not open" in [t["subject"] for t in c["tickets"]]


def salesforce_phone(stack: Stack, person: dict[str, Any]) -> tuple[dict[str, Any], Callable]:
    spec = {"vendor": "salesforce", "kind": "contact", "id": person["systems"]["salesforce"][0],
            "changes": {"Phone": "(415) 555-9874"}}  # fmt: skip
    return spec, lambda c: "+14155559874" in c["phones"]


def mailchimp_cleaned(stack: Stack, person: dict[str, Any]) -> tuple[dict[str, Any], Callable]:
    spec = {"vendor": "mailchimp", "kind": "member", "email": person["email"],
            "changes": {"status": "cleaned"}}  # fmt: skip
    return spec, lambda c: c["marketing"]["status"] == "cleaned"


SCENARIOS = [stripe_phone, stripe_invoice, zendesk_ticket, salesforce_phone, mailchimp_cleaned]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_a_vendor_change_reaches_every_gateway_and_evicts_only_its_keys(stack, scenario):
    n = SCENARIOS.index(scenario)
    person, bystander = stack.people[2 * n], stack.people[2 * n + 1]
    for gateway in (stack.a, stack.b):
        for someone in (person, bystander):
            stack.ask(gateway, someone["email"])
    spec, changed = scenario(stack, person)
    assert not changed(stack.ask(stack.b, person["email"]))
    assert stack.upstream_calls(lambda: stack.ask(stack.b, person["email"])) == 0  # cached

    answer = stack.mutate(spec)

    assert answer["deliveries"], answer
    assert all(d == {"delivered": True, "status": 200} for d in answer["deliveries"]), answer
    # A evicted before it answered the webhook; B hears of it over Redis.
    assert changed(stack.ask(stack.a, person["email"]))
    wait_for(lambda: changed(stack.ask(stack.b, person["email"])), "gateway B to see the change")
    for gateway in (stack.a, stack.b):
        assert stack.upstream_calls(lambda g=gateway: stack.ask(g, bystander["email"])) == 0
        assert stack.upstream_calls(lambda g=gateway: stack.ask(g, person["email"])) == 0


def test_a_webhook_with_a_bad_signature_changes_nothing(stack):
    person = stack.people[-1]
    customer = person["systems"]["stripe"][0]
    for gateway in (stack.a, stack.b):
        stack.ask(gateway, person["email"])
    body = (b'{"id": "evt_forged", "type": "customer.deleted", "data": {"object": '
            b'{"id": "%s", "object": "customer", "email": "%s"}}}'
            % (customer.encode(), person["email"].encode()))  # fmt: skip
    forged = {"Stripe-Signature": sign_stripe("whsec_guessed_wrongly_0000", body, int(time.time())),
              "Content-Type": "application/json"}  # fmt: skip
    response = httpx.post(f"{stack.a}/webhooks/stripe", content=body, headers=forged)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    unsigned = httpx.post(f"{stack.a}/webhooks/salesforce", content=b"{}")
    assert unsigned.status_code == 401
    assert SECRETS["stripe"] not in response.text + unsigned.text
    for gateway in (stack.a, stack.b):
        assert stack.upstream_calls(lambda g=gateway: stack.ask(g, person["email"])) == 0


def test_a_replayed_delivery_is_handled_once_across_gateways(stack):
    """A signed delivery replayed to the other gateway finds the claim in Redis."""
    person = stack.people[-2]
    customer = person["systems"]["stripe"][0]
    for gateway in (stack.a, stack.b):
        stack.ask(gateway, person["email"])
    event = {"id": "evt_replayed_0001", "object": "event", "type": "customer.updated",
             "data": {"object": {"id": customer, "object": "customer",
                                 "email": person["email"]}}}  # fmt: skip
    body = json.dumps(event).encode()
    signed = {"Stripe-Signature": sign_stripe(SECRETS["stripe"], body, int(time.time())),
              "Content-Type": "application/json"}  # fmt: skip
    first = httpx.post(f"{stack.a}/webhooks/stripe", content=body, headers=signed)
    assert first.json() == {"received": True, "evicted": 2}
    # B hears of A's eviction and refills its copy; a replay to either changes nothing.
    wait_for(
        lambda: stack.upstream_calls(lambda: stack.ask(stack.b, person["email"])) > 0,
        "gateway B to drop its copy",
    )
    stack.ask(stack.a, person["email"])  # A refills its copy too
    for gateway in (stack.b, stack.a):
        replay = httpx.post(f"{gateway}/webhooks/stripe", content=body, headers=signed)
        assert replay.status_code == 200
        assert replay.json() == {"received": True, "duplicate": True, "evicted": 0}
    for gateway in (stack.a, stack.b):
        assert stack.upstream_calls(lambda g=gateway: stack.ask(g, person["email"])) == 0


class Upstream:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, connector, method, keys, scope):
        self.calls += len(keys)
        source = SourceRef(system=connector.name, record_id=str(self.calls))
        return {key: [Person(source=source, email=key)] for key in keys}


class Conn:
    name = "stripe"


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds; fail after ``DEADLINE`` seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        if condition():
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_gateway_resubscribes_after_redis_restarts(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, tmp_path)
    ttl = CachePolicy(default=Ttl(soft=300, hard=600, max_stale=900, negative=300))
    upstream = Upstream()
    cache = CacheLayer(MemoryStore(), upstream, policy=ttl, secret=b"k" * 32)
    sender, receiver = Invalidator(cache, redis_url=url), Invalidator(cache, redis_url=url)
    evict = [Invalidation("customers_by_email", "ada@example.com")]

    async def evicted_by_broadcast() -> None:
        await cache(Conn(), "customers_by_email", ["ada@example.com"], RequestScope())
        calls = upstream.calls
        # The sender's own eviction is local; only the receiver's can undo this read.
        assert await sender.publish("stripe", "customers_by_email", ["ada@example.com"])
        deadline = time.monotonic() + DEADLINE
        while upstream.calls == calls:
            assert time.monotonic() < deadline, "the broadcast never evicted the key"
            await cache(Conn(), "customers_by_email", ["ada@example.com"], RequestScope())
            await asyncio.sleep(0.01)

    try:
        await sender.start()
        await receiver.start()
        assert receiver.subscribed.is_set()
        await evicted_by_broadcast()
        stop(proc)
        await until(lambda: not receiver.subscribed.is_set())
        assert not await sender.invalidate("stripe", evict)  # cannot broadcast: retry later
        proc = start_redis(port, tmp_path)
        await until(receiver.subscribed.is_set)
        await evicted_by_broadcast()
    finally:
        await sender.aclose()
        await receiver.aclose()
        await cache.aclose()
        stop(proc)
