"""Integration tests: the Stripe connector against the Stripe sandbox over loopback."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from connectors.sdk import ConnectorSettings, UpstreamAuthError, UpstreamBadRequest
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState, create_combined_app
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import BillingAccount, World, WorldPerson
from connectors.stripe import StripeConnector
from connectors.stripe.sandbox import create_app

pytestmark = pytest.mark.integration

KEY = SANDBOX_CREDENTIALS["stripe"]["token"]
SEARCH = "stripe GET /v1/customers/search"
INVOICE_SEARCH = "stripe GET /v1/invoices/search"


@pytest.fixture(scope="module")
def state() -> SandboxState:
    return SandboxState(World(customers=200, seed=7))


@pytest.fixture(scope="module")
def world(state: SandboxState) -> World:
    return state.world


@pytest.fixture(scope="module")
def base_url(state: SandboxState) -> Iterator[str]:
    with serve_in_thread(create_app(state)) as url:
        yield url


def make(url: str, token: str = KEY, **options: Any) -> StripeConnector:
    return StripeConnector(
        ConnectorSettings(base_url=url, credentials={"token": token}, options=options)
    )


@pytest.fixture
async def stripe(base_url: str) -> AsyncIterator[StripeConnector]:
    connector = make(base_url)
    yield connector
    await connector.close()


@pytest.fixture
async def raw(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        yield client


def having(world: World, anomaly: str) -> list[WorldPerson]:
    people = [p for p in world.people if anomaly in p.anomalies]
    assert people, f"the test world has nobody with {anomaly}"
    return people


def accounts(world: World, count: int) -> list[BillingAccount]:
    return [b for p in world.people for b in p.billing][:count]


def current_subscriptions(person: WorldPerson) -> set[str]:
    return {s.id for b in person.billing for s in b.subscriptions if s.status != "canceled"}


# ----------------------------------------------------------------- connector
async def test_customers_by_email_keyed_by_normalized_email(
    stripe: StripeConnector, world: World
) -> None:
    people = [
        *world.people[:5],
        *having(world, "email_case:stripe")[:4],
        *having(world, "email_whitespace:stripe")[:4],
        *having(world, "duplicate:stripe"),
    ]
    found = await stripe.customers_by_email([p.email for p in people])
    assert set(found) == {p.email for p in people}
    for person in people:
        records = found[person.email]
        assert sorted(r.id for r in records) == sorted(b.id for b in person.billing)
        assert all(r.email == person.email and r.name == person.name for r in records)
        assert {s.id for r in records for s in r.subscriptions} == current_subscriptions(person)
        for record, account in zip(
            sorted(records, key=lambda r: r.id), sorted(person.billing, key=lambda b: b.id)
        ):
            assert record.links == ({"salesforce": account.crm_id} if account.crm_id else {})
            assert record.source.url == f"https://dashboard.stripe.com/test/customers/{account.id}"


async def test_duplicate_customers_both_appear(stripe: StripeConnector, world: World) -> None:
    people = having(world, "duplicate:stripe")
    found = await stripe.customers_by_email([p.email for p in people])
    assert all(len(found[p.email]) == 2 for p in people)


async def test_missing_and_unknown_emails_are_absent(stripe: StripeConnector, world: World) -> None:
    missing = having(world, "missing:stripe")
    present = world.people[0]
    emails = [*(p.email for p in missing), "nobody@nowhere.example", present.email]
    assert set(await stripe.customers_by_email(emails)) == {present.email}


async def test_customers_by_id(stripe: StripeConnector, world: World) -> None:
    wanted = accounts(world, 8)
    found = await stripe.customers_by_id([b.id for b in wanted] + ["cus_doesnotexist"])
    assert set(found) == {b.id for b in wanted}
    for account in wanted:
        person = found[account.id]
        assert person.id == account.id
        expected = {s.id for s in account.subscriptions if s.status != "canceled"}
        assert {s.id for s in person.subscriptions} == expected


async def test_invoices_of_customers_grouped_newest_first(
    stripe: StripeConnector, world: World
) -> None:
    wanted = accounts(world, 30)
    found = await stripe.invoices_of_customers([b.id for b in wanted])
    expected = {b.id: [i.id for i in b.invoices] for b in wanted if b.invoices}
    assert {k: [i.id for i in v] for k, v in found.items()} == expected
    some = next(b for b in wanted if b.invoices)
    first = found[some.id][0]
    assert (first.amount_due, first.status) == (
        some.invoices[0].amount_due,
        some.invoices[0].status,
    )


async def test_small_pages_are_followed(
    base_url: str, state: SandboxState, stripe: StripeConnector
) -> None:
    people = [p for p in state.world.people if p.billing][:10]
    expected = await stripe.customers_by_email([p.email for p in people])
    customers = sum(len(p.billing) for p in people)
    invoices = [b for p in people for b in p.billing]
    small = make(base_url, page_size=2)
    try:
        state.stats.clear()
        paged = await small.customers_by_email([p.email for p in people])
        assert state.stats[SEARCH] == math.ceil(customers / 2) > 1
        paged_invoices = await small.invoices_of_customers([b.id for b in invoices])
        invoice_count = sum(len(b.invoices) for b in invoices)
        assert state.stats[INVOICE_SEARCH] == math.ceil(invoice_count / 2) > 1
    finally:
        await small.close()
    assert {k: [r.id for r in v] for k, v in paged.items()} == {
        k: [r.id for r in v] for k, v in expected.items()
    }
    assert sum(len(v) for v in paged_invoices.values()) == invoice_count


async def test_fifty_keys_cost_at_most_five_searches(
    stripe: StripeConnector, raw: httpx.AsyncClient, world: World
) -> None:
    emails = [p.email for p in world.people[:50]]
    ids = [b.id for b in accounts(world, 50)]
    await raw.post("/_sandbox/reset-stats")
    await stripe.customers_by_email(emails)
    await stripe.invoices_of_customers(ids)
    await stripe.customers_by_id(ids[:7])
    routes = (await raw.get("/_sandbox/stats")).json()["routes"]
    assert routes[SEARCH] <= math.ceil(50 / 10)
    assert routes[INVOICE_SEARCH] <= math.ceil(50 / 10)
    # No multi-id read in Stripe: one retrieve per id is the documented floor.
    assert routes["stripe GET /v1/customers/{id}"] == 7


async def test_bad_credentials_are_an_auth_error(base_url: str) -> None:
    connector = make(base_url, token="sk_test_not_the_right_key")
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await connector.customers_by_email(["a@x.example"])
    finally:
        await connector.close()
    detail = info.value.vendor_detail or ""
    assert "Invalid API Key provided: sk_test_" in detail
    assert "not_the_right_key" not in detail


async def test_invalid_api_version_is_a_bad_request(base_url: str) -> None:
    connector = make(base_url, api_version="last-tuesday")
    try:
        with pytest.raises(UpstreamBadRequest, match="HTTP 400"):
            await connector.customers_by_id(["cus_x"])
    finally:
        await connector.close()


async def test_connector_works_under_a_mount_prefix(world: World) -> None:
    state = SandboxState(world)
    with serve_in_thread(create_combined_app(state, ["stripe"])) as url:
        connector = make(f"{url}/stripe", page_size=1)
        try:
            person = world.people[0]
            found = await connector.customers_by_email([person.email])
        finally:
            await connector.close()
    assert [r.id for r in found[person.email]] == [b.id for b in person.billing]
    assert state.stats[SEARCH] == len(person.billing)


# --------------------------------------------------------- raw vendor shapes
def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


async def test_search_result_shape_and_headers(raw: httpx.AsyncClient, world: World) -> None:
    person = world.people[0]
    response = await raw.get("/v1/customers/search", params={"query": f"email:'{person.email}'"})
    body = response.json()
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["stripe-version"] == "2024-06-20"
    assert (body["object"], body["url"], body["has_more"], body["next_page"]) == (
        "search_result",
        "/v1/customers/search",
        False,
        None,
    )
    customer = body["data"][0]
    assert customer["object"] == "customer"
    assert customer["livemode"] is False
    assert "subscriptions" not in customer
    expanded = await raw.get(
        "/v1/customers/search",
        params={"query": f"email:'{person.email}'", "expand[]": "data.subscriptions"},
    )
    subs = expanded.json()["data"][0]["subscriptions"]
    assert subs["object"] == "list"
    assert {s["id"] for s in subs["data"]} == current_subscriptions(person)


async def test_search_pages_and_cursor_checks(raw: httpx.AsyncClient, world: World) -> None:
    people = [p for p in world.people if p.billing][:3]
    query = " OR ".join(f"email:'{p.email.upper()}'" for p in people)
    params: dict[str, Any] = {"query": query, "limit": 1}
    ids: list[str] = []
    while True:
        body = (await raw.get("/v1/customers/search", params=params)).json()
        ids += [c["id"] for c in body["data"]]
        if not body["has_more"]:
            assert body["next_page"] is None
            break
        params["page"] = body["next_page"]
    assert sorted(ids) == sorted(b.id for p in people for b in p.billing)
    forged = await raw.get("/v1/customers/search", params={"query": query, "page": "page_MTA6"})
    assert _error(forged, 400)["param"] == "page"
    first = (await raw.get("/v1/customers/search", params={"query": query, "limit": 1})).json()
    other = {"query": "email:'x@y.example'", "page": first["next_page"]}
    assert _error(await raw.get("/v1/customers/search", params=other), 400)["param"] == "page"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"query": " OR ".join(f"email:'{i}@x.example'" for i in range(11))}, "query"),
        ({"query": "email:'a@x.example' OR email:'b' AND name:'c'"}, "query"),
        ({"query": "shoe_size:'44'"}, "query"),
        ({"query": "email:unquoted@x.example"}, "query"),
        ({}, "query"),
        ({"query": "email:'a@x.example'", "limit": 0}, "limit"),
        ({"query": "email:'a@x.example'", "limit": 101}, "limit"),
        ({"query": "email:'a@x.example'", "limit": "ten"}, "limit"),
        ({"query": "email:'a@x.example'", "colour": "red"}, "colour"),
        ({"query": "email:'a@x.example'", "expand[]": "data.default_source"}, "expand"),
    ],
)
async def test_bad_search_requests_get_stripe_400s(
    raw: httpx.AsyncClient, params: dict[str, Any], param: str
) -> None:
    error = _error(await raw.get("/v1/customers/search", params=params), 400)
    assert error["param"] == param
    assert error["message"]


async def test_invoice_and_subscription_search(raw: httpx.AsyncClient, world: World) -> None:
    account = next(b for b in accounts(world, 200) if any(i.status == "paid" for i in b.invoices))
    query = f"customer:'{account.id}' AND status:'paid'"
    body = (await raw.get("/v1/invoices/search", params={"query": query, "limit": 100})).json()
    assert [i["id"] for i in body["data"]] == [i.id for i in account.invoices if i.status == "paid"]
    canceled = [
        s.id for b in accounts(world, 1000) for s in b.subscriptions if s.status == "canceled"
    ]
    params = {"query": "status:'canceled'", "limit": 100}
    body = (await raw.get("/v1/subscriptions/search", params=params)).json()
    assert sorted(s["id"] for s in body["data"]) == sorted(canceled)
    linked = next(b for b in accounts(world, 200) if b.crm_id)
    params = {"query": f"metadata['salesforce_id']:'{linked.crm_id}'"}
    body = (await raw.get("/v1/customers/search", params=params)).json()
    assert [c["id"] for c in body["data"]] == [linked.id]
    no_customer_field = {"query": f"customer:'{account.id}'"}
    error = _error(await raw.get("/v1/subscriptions/search", params=no_customer_field), 400)
    assert error["param"] == "query"


async def test_retrieve_customer_and_404(raw: httpx.AsyncClient, world: World) -> None:
    account = accounts(world, 1)[0]
    plain = (await raw.get(f"/v1/customers/{account.id}")).json()
    assert (plain["id"], plain["email"], plain["created"]) == (
        account.id,
        account.email,
        int(account.created.timestamp()),
    )
    assert "subscriptions" not in plain
    for key in ("expand[]", "expand[0]"):
        body = (await raw.get(f"/v1/customers/{account.id}", params={key: "subscriptions"})).json()
        assert body["subscriptions"]["object"] == "list"
    missing = await raw.get("/v1/customers/cus_nope")
    assert missing.json() == {
        "error": {
            "code": "resource_missing",
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
            "message": "No such customer: 'cus_nope'",
            "param": "id",
            "type": "invalid_request_error",
        }
    }
    assert missing.status_code == 404


async def test_unknown_url_and_method(raw: httpx.AsyncClient) -> None:
    error = _error(await raw.get("/v1/charges_of_doom"), 404)
    assert error["message"].startswith("Unrecognized request URL (GET: /v1/charges_of_doom)")
    error = _error(await raw.post("/v1/customers/search"), 404)
    assert "(POST: /v1/customers/search)" in error["message"]


async def test_auth_variants(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        missing = await client.get("/v1/customers")
        assert _error(missing, 401)["message"].startswith("You did not provide an API key")
        assert missing.headers["www-authenticate"] == 'Basic realm="Stripe"'
        wrong_key = "sk_test_0123456789abcdefWXYZ"
        wrong = await client.get("/v1/customers", headers={"Authorization": f"Bearer {wrong_key}"})
        message = _error(wrong, 401)["message"]
        assert message == "Invalid API Key provided: sk_test_" + "*" * 16 + "WXYZ"
        assert wrong_key not in wrong.text
        basic = await client.get("/v1/customers", auth=(KEY, ""))
        assert basic.status_code == 200
        assert basic.headers["request-id"].startswith("req_")


async def test_customer_list_paging_and_email_filter(raw: httpx.AsyncClient, world: World) -> None:
    total = sum(len(p.billing) for p in world.people)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        body = (await raw.get("/v1/customers", params=params)).json()
        assert (body["object"], body["url"]) == ("list", "/v1/customers")
        seen += [c["id"] for c in body["data"]]
        if not body["has_more"]:
            break
        params["starting_after"] = seen[-1]
    assert len(seen) == len(set(seen)) == total
    before = (await raw.get("/v1/customers", params={"ending_before": seen[5], "limit": 2})).json()
    assert [c["id"] for c in before["data"]] == seen[3:5]
    assert before["has_more"] is True
    bad = await raw.get("/v1/customers", params={"starting_after": "cus_nope"})
    assert _error(bad, 400)["code"] == "resource_missing"
    person = having(world, "email_case:stripe")[0]
    stored = person.billing[0].email
    exact = (await raw.get("/v1/customers", params={"email": stored})).json()["data"]
    assert [c["id"] for c in exact] == [person.billing[0].id]
    # Stripe documents the list filter as case-sensitive, unlike search.
    assert (await raw.get("/v1/customers", params={"email": person.email})).json()["data"] == []


async def test_subscription_and_invoice_lists(raw: httpx.AsyncClient, world: World) -> None:
    account = next(
        b for b in accounts(world, 200) if any(s.status == "canceled" for s in b.subscriptions)
    )
    default = (await raw.get("/v1/subscriptions", params={"customer": account.id})).json()
    every = (
        await raw.get("/v1/subscriptions", params={"customer": account.id, "status": "all"})
    ).json()
    assert {s["id"] for s in default["data"]} == {
        s.id for s in account.subscriptions if s.status != "canceled"
    }
    assert {s["id"] for s in every["data"]} == {s.id for s in account.subscriptions}
    item = every["data"][0]["items"]["data"][0]
    assert item["price"]["object"] == "price"
    assert item["quantity"] == 1
    assert item["price"]["recurring"]["interval"] in ("month", "year")
    bad = await raw.get("/v1/subscriptions", params={"status": "sleeping"})
    assert _error(bad, 400)["param"] == "status"
    invoices = (await raw.get("/v1/invoices", params={"customer": account.id, "limit": 100})).json()
    assert [i["id"] for i in invoices["data"]] == [i.id for i in account.invoices]
