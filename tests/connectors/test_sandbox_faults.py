"""Sandbox fault knobs: what a client and each real connector see under each fault."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from connectors.sdk import (
    ConfigurationError,
    Connector,
    ConnectorSettings,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from connectors.sdk.http import TransportName, make_transport
from connectors.sdk.models import Domain
from connectors.sdk.sandbox import (
    SANDBOX_CREDENTIALS,
    FaultSpec,
    SandboxState,
    create_combined_app,
    load_vendor_app,
    parse_faults,
)
from connectors.sdk.testing.contract import connector_class
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import World

pytestmark = pytest.mark.integration

VENDORS = ("salesforce", "zendesk", "stripe", "mailchimp")
# One cheap read per vendor that answers 200 when no fault is set.
SAMPLE = {
    "salesforce": "/salesforce/services/data",
    "zendesk": "/zendesk/api/v2/users/show_many.json?ids=1",
    "stripe": "/stripe/v1/customers?limit=1",
    "mailchimp": "/mailchimp/3.0/lists",
}
EMAIL_LOOKUP = {
    Domain.CRM: "people_by_email",
    Domain.TICKETING: "requesters_by_email",
    Domain.BILLING: "customers_by_email",
    Domain.MARKETING: "members_by_email",
}
DEADLINE = 5.0


def auth(vendor: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SANDBOX_CREDENTIALS[vendor]['token']}"}


@pytest.fixture(scope="module")
def state() -> SandboxState:
    return SandboxState(World(customers=30, seed=11))


@pytest.fixture(scope="module")
def base_url(state: SandboxState) -> Iterator[str]:
    with serve_in_thread(create_combined_app(state, VENDORS)) as url:
        yield url
        # Whatever a failed test left hanging must not hold the server open.
        state.shutdown()


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=DEADLINE) as http:
        yield http
        # Every test starts from a clean profile.
        cleared = await http.post("/_sandbox/faults", json={})
        assert cleared.json() == {}


async def set_faults(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    response = await client.post("/_sandbox/faults", json=body)
    assert response.status_code == 200, response.text
    return response


async def sample(client: httpx.AsyncClient, vendor: str) -> httpx.Response:
    return await client.get(SAMPLE[vendor], headers=auth(vendor))


def connector(
    base_url: str, vendor: str, *, timeout: float = DEADLINE, transport: TransportName = "aiohttp"
) -> Connector:
    settings = ConnectorSettings(
        base_url=f"{base_url}/{vendor}",
        credentials=SANDBOX_CREDENTIALS[vendor],
        timeout=timeout,
    )
    return connector_class(vendor)(settings, transport=make_transport(transport))


async def lookup_error(built: Connector) -> UpstreamError:
    """The error the connector's email lookup raises; fails if it succeeds."""
    try:
        with pytest.raises(UpstreamError) as caught:
            await getattr(built, EMAIL_LOOKUP[built.domain])(["someone@example.com"])
    finally:
        await built.close()
    return caught.value


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def error_shape(vendor: str, response: httpx.Response) -> bool:
    body: Any = response.json()
    if vendor == "salesforce":
        return isinstance(body, list) and {"message", "errorCode"} <= set(body[0])
    if vendor == "zendesk":
        return {"error", "description"} <= set(body)
    if vendor == "stripe":
        return {"type", "message"} <= set(body["error"])
    return (
        response.headers["content-type"].startswith("application/problem+json")
        and body["status"] == response.status_code
        and {"type", "title", "detail"} <= set(body)
    )


# --------------------------------------------------------------- each knob
@pytest.mark.parametrize("vendor", VENDORS)
async def test_status_answers_vendor_error_body_and_spares_other_vendors(
    client: httpx.AsyncClient, base_url: str, vendor: str
) -> None:
    await set_faults(client, {vendor: {"status": 500}})
    faulted = await sample(client, vendor)
    assert faulted.status_code == 500
    assert error_shape(vendor, faulted)
    for other in VENDORS:
        if other != vendor:
            assert (await sample(client, other)).status_code == 200, other
    error = await lookup_error(connector(base_url, vendor))
    assert isinstance(error, UpstreamUnavailable)
    assert error.status == 500


async def test_vendor_profile_headers_survive_a_fault(client: httpx.AsyncClient) -> None:
    await set_faults(client, {"zendesk": {"status": 503}, "stripe": {"status": 502}})
    zendesk = await sample(client, "zendesk")
    assert zendesk.status_code == 503 and "x-rate-limit-remaining" in zendesk.headers
    stripe = await sample(client, "stripe")
    assert stripe.status_code == 502 and stripe.json()["error"]["type"] == "api_error"
    assert stripe.headers["request-id"].startswith("req_")


@pytest.mark.parametrize("vendor", VENDORS)
async def test_retry_after_answers_429_and_connector_reports_the_wait(
    client: httpx.AsyncClient, base_url: str, vendor: str
) -> None:
    await set_faults(client, {vendor: {"retry_after": 2}})
    faulted = await sample(client, vendor)
    assert faulted.status_code == 429
    assert faulted.headers["retry-after"] == "2"
    assert error_shape(vendor, faulted)
    error = await lookup_error(connector(base_url, vendor))
    assert isinstance(error, UpstreamRateLimited)
    assert error.retry_after == 2.0


async def test_retry_after_goes_with_an_explicit_status(client: httpx.AsyncClient) -> None:
    await set_faults(client, {"stripe": {"status": 503, "retry_after": 1.5}})
    faulted = await sample(client, "stripe")
    assert (faulted.status_code, faulted.headers["retry-after"]) == (503, "1.5")


@pytest.mark.parametrize("vendor", VENDORS)
async def test_hang_lets_the_client_timeout_fire_and_then_lets_go(
    client: httpx.AsyncClient, state: SandboxState, base_url: str, vendor: str
) -> None:
    await set_faults(client, {vendor: {"hang": True}})
    started = time.monotonic()
    error = await lookup_error(connector(base_url, vendor, timeout=0.3))
    assert isinstance(error, UpstreamTimeout)
    assert time.monotonic() - started < DEADLINE
    # The client gave up and closed its connection: the server holds nothing.
    await wait_for(lambda: state.hanging == 0)


async def test_hang_ends_when_faults_are_cleared(
    client: httpx.AsyncClient, state: SandboxState
) -> None:
    await set_faults(client, {"stripe": {"hang": True}})
    pending = asyncio.ensure_future(sample(client, "stripe"))
    await wait_for(lambda: state.hanging == 1)
    assert not pending.done()
    await set_faults(client, {})
    answered = await asyncio.wait_for(pending, DEADLINE)
    assert answered.status_code == 200
    assert answered.json()["object"] == "list"


async def test_shutdown_drops_hanging_requests() -> None:
    state = SandboxState(World(customers=5, seed=3), faults={"mailchimp": {"hang": True}})
    with serve_in_thread(create_combined_app(state, ["mailchimp"])) as url:
        async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
            pending = asyncio.ensure_future(
                http.get(SAMPLE["mailchimp"], headers=auth("mailchimp"))
            )
            await wait_for(lambda: state.hanging == 1)
            state.shutdown()
            with pytest.raises(httpx.RemoteProtocolError):
                await asyncio.wait_for(pending, DEADLINE)
            assert state.hanging == 0


@pytest.mark.parametrize("vendor", VENDORS)
async def test_malformed_answers_200_with_a_body_that_is_not_json(
    client: httpx.AsyncClient, base_url: str, vendor: str
) -> None:
    await set_faults(client, {vendor: {"malformed": True}})
    faulted = await sample(client, vendor)
    assert faulted.status_code == 200
    with pytest.raises(ValueError):
        faulted.json()
    error = await lookup_error(connector(base_url, vendor))
    assert isinstance(error, UpstreamProtocolError)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_reset_drops_the_connection_mid_answer(
    client: httpx.AsyncClient, base_url: str, vendor: str
) -> None:
    await set_faults(client, {vendor: {"reset": True}})
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await sample(client, vendor)
    # httpcore here; the aiohttp transport has its own test below.
    error = await lookup_error(connector(base_url, vendor, transport="httpcore"))
    assert isinstance(error, UpstreamUnavailable)
    # The server itself is fine: the next request after clearing is answered.
    await set_faults(client, {})
    assert (await sample(client, vendor)).status_code == 200


async def test_reset_on_the_aiohttp_transport(client: httpx.AsyncClient, base_url: str) -> None:
    await set_faults(client, {"stripe": {"reset": True}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = await lookup_error(connector(base_url, "stripe", transport="aiohttp"))
        assert isinstance(error, UpstreamUnavailable)
        assert isinstance(error.__cause__, httpx.ReadError)
        del error
        gc.collect()
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, "a body that breaks off must give its connection back"


async def test_latency_delays_a_normal_answer(client: httpx.AsyncClient) -> None:
    await set_faults(client, {"stripe": {"latency_ms": 250}})
    started = time.monotonic()
    delayed = await sample(client, "stripe")
    assert time.monotonic() - started >= 0.25
    assert delayed.status_code == 200 and delayed.json()["object"] == "list"
    started = time.monotonic()
    assert (await sample(client, "zendesk")).status_code == 200
    assert time.monotonic() - started < 0.25


async def test_latency_beyond_the_client_timeout_is_a_timeout(
    client: httpx.AsyncClient, base_url: str
) -> None:
    await set_faults(client, {"zendesk": {"latency_ms": 1000}})
    error = await lookup_error(connector(base_url, "zendesk", timeout=0.2))
    assert isinstance(error, UpstreamTimeout)


# ---------------------------------------------------------------- scoping
async def test_route_template_scopes_the_fault(client: httpx.AsyncClient) -> None:
    await set_faults(client, {"stripe": {"route": "/v1/customers/{id}", "status": 500}})
    key = auth("stripe")
    assert (await client.get("/stripe/v1/customers/cus_nope", headers=key)).status_code == 500
    assert (await client.get("/stripe/v1/customers", headers=key)).status_code == 200
    assert (await client.get("/stripe/v1/invoices/in_nope", headers=key)).status_code == 404


async def test_route_path_prefix_scopes_the_fault(client: httpx.AsyncClient) -> None:
    await set_faults(client, {"zendesk": {"route": "/api/v2/users", "status": 503}})
    key = auth("zendesk")
    for path in ("/api/v2/users/show_many?ids=1", "/api/v2/users/1.json"):
        assert (await client.get(f"/zendesk{path}", headers=key)).status_code == 503, path
    tickets = await client.get("/zendesk/api/v2/tickets/show_many.json?ids=1", headers=key)
    assert tickets.status_code == 200


async def test_first_matching_spec_wins(client: httpx.AsyncClient) -> None:
    await set_faults(
        client,
        {"stripe": [{"route": "/v1/customers/search", "status": 503}, {"status": 500}]},
    )
    key = auth("stripe")
    search = await client.get("/stripe/v1/customers/search?query=email:'x@y.z'", headers=key)
    assert search.status_code == 503
    assert (await client.get("/stripe/v1/invoices", headers=key)).status_code == 500


async def test_faulted_requests_still_count_and_control_routes_are_never_faulted(
    client: httpx.AsyncClient,
) -> None:
    await set_faults(client, {"stripe": {"status": 500}, "mailchimp": {"reset": True}})
    await client.post("/_sandbox/reset-stats")
    for _ in range(3):
        assert (await sample(client, "stripe")).status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        await sample(client, "mailchimp")
    # The vendor's own copy of the control routes is not faulted either.
    stats = (await client.get("/stripe/_sandbox/stats")).json()
    assert stats["routes"] == {"mailchimp GET /3.0/lists": 1, "stripe GET /v1/customers": 3}


async def test_rate_faults_a_deterministic_fraction(client: httpx.AsyncClient) -> None:
    async def pattern() -> list[bool]:
        await set_faults(client, {"stripe": {"status": 500, "rate": 0.5}})
        return [(await sample(client, "stripe")).status_code == 500 for _ in range(200)]

    first = await pattern()
    assert 80 <= sum(first) <= 120
    assert await pattern() == first


async def test_rate_zero_never_faults(client: httpx.AsyncClient) -> None:
    await set_faults(client, {"stripe": {"status": 500, "rate": 0}})
    statuses = {(await sample(client, "stripe")).status_code for _ in range(20)}
    assert statuses == {200}


# ------------------------------------------------------- setting and reading
async def test_get_returns_the_faults_in_force_and_empty_object_clears(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "stripe": {"status": 500, "rate": 0.25},
        "zendesk": {"route": "/api/v2/search", "retry_after": 2},
        "mailchimp": {"hang": True},
        "salesforce": {"malformed": True, "latency_ms": 10},
    }
    posted = await set_faults(client, body)
    shown = (await client.get("/_sandbox/faults")).json()
    assert shown == posted.json()
    assert shown == {
        "mailchimp": [{"rate": 1.0, "hang": True}],
        "salesforce": [{"rate": 1.0, "latency_ms": 10.0, "malformed": True}],
        "stripe": [{"rate": 0.25, "status": 500}],
        "zendesk": [{"route": "/api/v2/search", "rate": 1.0, "status": 429, "retry_after": 2.0}],
    }
    # What GET shows can be posted back as is.
    assert (await set_faults(client, shown)).json() == shown
    assert (await set_faults(client, {})).json() == {}
    assert (await client.get("/_sandbox/faults")).json() == {}
    for vendor in VENDORS:
        assert (await sample(client, vendor)).status_code == 200


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"not json", "JSON"),
        (b"[]", "object keyed by vendor"),
        (b'{"hubspot": {"status": 500}}', "unknown vendor 'hubspot'"),
        (b'{"stripe": {"status": 200}}', "stripe[0].status"),
        (b'{"stripe": {"status": true}}', "stripe[0].status"),
        (b'{"stripe": {"status": 500, "rate": 1.5}}', "stripe[0].rate"),
        (b'{"stripe": {"status": 500, "rate": "0.5"}}', "stripe[0].rate"),
        (b'{"stripe": {"retry_after": -1}}', "stripe[0].retry_after"),
        (b'{"stripe": {"latency_ms": 1e9}}', "stripe[0].latency_ms"),
        (b'{"stripe": {"status": 500, "colour": "red"}}', "colour"),
        (b'{"stripe": {"hang": "yes"}}', "stripe[0].hang"),
        (b'{"stripe": [{"status": 500}, {"hang": true, "reset": true}]}', "stripe[1]"),
        (b'{"stripe": {"route": "v1/customers", "status": 500}}', "stripe[0].route"),
        (b'{"stripe": {"rate": 0.5}}', "no effect"),
        (b'{"stripe": [1]}', "stripe[0] must be an object"),
        (b'{"stripe": null}', "stripe[0] must be an object"),
    ],
)
async def test_bad_faults_are_refused_and_leave_the_faults_in_force(
    client: httpx.AsyncClient, body: bytes, mentions: str
) -> None:
    await set_faults(client, {"stripe": {"status": 502}})
    refused = await client.post(
        "/_sandbox/faults", content=body, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_faults"
    assert mentions in refused.json()["message"]
    assert (await sample(client, "stripe")).status_code == 502


async def test_faults_set_at_start_on_a_standalone_vendor_app() -> None:
    faults = parse_faults({"zendesk": {"status": 500}}, vendors=["zendesk"])
    state = SandboxState(World(customers=5, seed=3), faults=faults)
    with serve_in_thread(load_vendor_app("zendesk", state)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            key = auth("zendesk")
            first = await http.get("/api/v2/users/show_many.json?ids=1", headers=key)
            assert first.status_code == 500 and first.json()["error"] == "InternalServerError"
            assert (await http.get("/_sandbox/faults")).json() == {
                "zendesk": [{"rate": 1.0, "status": 500}]
            }
            # Only the vendors this server serves can be faulted.
            other = await http.post("/_sandbox/faults", json={"stripe": {"status": 500}})
            assert other.status_code == 400
            await http.post("/_sandbox/faults", json={})
            second = await http.get("/api/v2/users/show_many.json?ids=1", headers=key)
            assert second.status_code == 200


def test_parse_faults_for_the_cli() -> None:
    parsed = parse_faults({"zendesk": [{"route": "/api/v2/search", "retry_after": 2}]})
    assert parsed.by_vendor == {
        "zendesk": (FaultSpec(route="/api/v2/search", status=429, retry_after=2.0),)
    }
    assert parse_faults({"stripe": []}).to_json() == {}
    with pytest.raises(ConfigurationError, match="unknown vendor 'stripe'"):
        parse_faults({"stripe": {"status": 500}}, vendors=["zendesk"])
    state = SandboxState(World(customers=5, seed=3), faults={"stripe": {"reset": True}})
    assert state.faults.to_json() == {"stripe": [{"rate": 1.0, "reset": True}]}
