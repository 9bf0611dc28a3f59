"""Unit tests of the Stripe mapping, search-query building/parsing and error policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from connectors.stripe import StripeConnector
from connectors.stripe._search import (
    MAX_CLAUSES,
    Clause,
    QueryError,
    any_of,
    parse_query,
    quote,
)
from connectors.stripe.mapping import (
    dashboard_url,
    invoice_from_stripe,
    list_data,
    person_from_customer,
    subscription_from_stripe,
)

CREATED = 1_700_000_000
CREATED_AT = datetime.fromtimestamp(CREATED, tz=UTC)


def _subscription(**overrides: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": "active",
        "created": CREATED,
        "current_period_end": CREATED + 86_400,
        "livemode": False,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "quantity": 3,
                    "price": {
                        "id": "price_growth",
                        "nickname": "Growth",
                        "unit_amount": 4900,
                        "currency": "usd",
                        "recurring": {"interval": "month"},
                        "product": "prod_growth",
                    },
                }
            ],
        },
    }
    sub.update(overrides)
    return sub


# ------------------------------------------------------------------ mapping
def test_customer_maps_to_person_with_links_and_subscriptions() -> None:
    person = person_from_customer(
        {
            "id": "cus_1",
            "object": "customer",
            "email": "  Ada.Lovelace@Example.COM ",
            "name": "Ada Lovelace",
            "phone": "+14155550100",
            "created": CREATED,
            "livemode": True,
            "metadata": {"salesforce_id": "003ABC"},
            "subscriptions": {"object": "list", "data": [_subscription()], "has_more": False},
        }
    )
    assert person is not None
    assert person.id == "cus_1"
    assert person.email == "ada.lovelace@example.com"
    assert person.name == "Ada Lovelace"
    assert person.phone == "+14155550100"
    assert person.links == {"salesforce": "003ABC"}
    assert person.source.system == "stripe"
    assert person.source.updated_at == CREATED_AT
    assert person.source.url == "https://dashboard.stripe.com/customers/cus_1"
    assert [s.id for s in person.subscriptions] == ["sub_1"]


def test_customer_with_only_an_id_maps_to_empty_person() -> None:
    person = person_from_customer({"id": "cus_2", "email": None, "metadata": None})
    assert person is not None
    assert (person.email, person.name, person.links, person.subscriptions) == (None, None, {}, ())
    assert person.source.updated_at is None


def test_deleted_customer_is_none() -> None:
    assert person_from_customer({"id": "cus_3", "object": "customer", "deleted": True}) is None


@pytest.mark.parametrize(
    "body",
    [
        [{"id": "cus_1"}],
        "cus_1",
        None,
        {"object": "customer"},
        {"id": 12},
        {"id": "cus_1", "subscriptions": {"data": "nope"}},
        {"id": "cus_1", "subscriptions": {"data": [["sub_1"]]}},
    ],
)
def test_customer_of_wrong_shape_is_a_protocol_error(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        person_from_customer(body)
    assert info.value.source == "stripe"


def test_subscription_plan_amount_interval_and_period() -> None:
    sub = subscription_from_stripe(_subscription())
    assert (sub.id, sub.customer_id, sub.status) == ("sub_1", "cus_1", "active")
    assert (sub.plan, sub.amount, sub.currency, sub.interval) == ("Growth", 14700, "usd", "month")
    assert sub.current_period_end == datetime.fromtimestamp(CREATED + 86_400, tz=UTC)
    assert sub.source.url == "https://dashboard.stripe.com/test/subscriptions/sub_1"


def test_subscription_falls_back_to_product_name_then_price_id() -> None:
    sub = _subscription(current_period_end=None, customer={"id": "cus_9", "object": "customer"})
    item = sub["items"]["data"][0]
    item["current_period_end"] = CREATED + 60
    item["price"]["nickname"] = None
    item["price"]["product"] = {"id": "prod_x", "name": "Scale"}
    item.pop("quantity")
    mapped = subscription_from_stripe(sub)
    assert (mapped.plan, mapped.amount, mapped.customer_id) == ("Scale", 4900, "cus_9")
    # Newer API versions carry the period on the item only.
    assert mapped.current_period_end == datetime.fromtimestamp(CREATED + 60, tz=UTC)
    item["price"]["product"] = "prod_x"
    assert subscription_from_stripe(sub).plan == "price_growth"


def test_subscription_without_items_has_no_plan() -> None:
    sub = subscription_from_stripe({"id": "sub_2", "items": None, "created": "yesterday"})
    assert (sub.plan, sub.amount, sub.interval, sub.source.updated_at) == (None, None, None, None)


def test_invoice_maps_amounts_in_minor_units() -> None:
    invoice = invoice_from_stripe(
        {
            "id": "in_1",
            "object": "invoice",
            "customer": "cus_1",
            "status": "paid",
            "amount_due": 4900,
            "amount_paid": 4900,
            "currency": "usd",
            "created": CREATED,
            "livemode": False,
        }
    )
    assert (invoice.id, invoice.customer_id, invoice.status) == ("in_1", "cus_1", "paid")
    assert (invoice.amount_due, invoice.amount_paid, invoice.currency) == (4900, 4900, "usd")
    assert invoice.created_at == CREATED_AT
    assert invoice.source.url == "https://dashboard.stripe.com/test/invoices/in_1"


def test_invoice_tolerates_missing_and_odd_fields() -> None:
    invoice = invoice_from_stripe({"id": "in_2", "amount_due": True, "amount_paid": "10"})
    assert (invoice.amount_due, invoice.amount_paid, invoice.created_at) == (None, None, None)
    with pytest.raises(UpstreamProtocolError):
        invoice_from_stripe(["in_2"])


def test_list_data_rejects_wrong_shapes() -> None:
    assert list_data({"object": "search_result", "data": [1]}) == [1]
    for body in ([], {"data": None}, {"data": {"id": "x"}}):
        with pytest.raises(UpstreamProtocolError):
            list_data(body)


def test_dashboard_url_marks_test_mode() -> None:
    assert dashboard_url("customers", "cus_1", False).endswith("/test/customers/cus_1")
    assert (
        dashboard_url("customers", "cus_1", None) == "https://dashboard.stripe.com/customers/cus_1"
    )


# ------------------------------------------------------------ search syntax
def test_quote_escapes_quotes_and_backslashes_and_round_trips() -> None:
    nasty = "o'neil\\@x.com' OR email:'victim@x.com"
    assert quote("o'neil") == "'o\\'neil'"
    query = parse_query(any_of("email", [nasty, "b@x.com"]))
    assert query.conjunction == "OR"
    assert query.clauses == (Clause("email", nasty), Clause("email", "b@x.com"))


def test_any_of_respects_the_clause_cap() -> None:
    assert len(parse_query(any_of("customer", [f"cus_{i}" for i in range(10)])).clauses) == 10
    with pytest.raises(ValueError, match="at most 10"):
        any_of("customer", [f"cus_{i}" for i in range(MAX_CLAUSES + 1)])
    with pytest.raises(ValueError, match="at least one"):
        any_of("customer", [])


def test_parser_accepts_the_documented_forms() -> None:
    query = parse_query("email:\"a@x.com\" and metadata['salesforce_id']:'003' total:100")
    assert query.conjunction == "AND"
    assert query.clauses == (
        Clause("email", "a@x.com"),
        Clause("metadata", "003", key="salesforce_id"),
        Clause("total", "100"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("email:'a' OR email:'b' AND email:'c'", "cannot be combined"),
        (" OR ".join(f"email:'{i}'" for i in range(11)), "at most 10"),
        ("email:'a", "unterminated"),
        ("email:a@x.com", "must be quoted"),
        ("email~'a'", "':'"),
        ("-email:'a'", "negated"),
        ("email:'a'email:'b'", "whitespace"),
        ("email:'a' OR", "ends with OR"),
        ("metadata:'a'", "metadata"),
        ("'a'", "field name"),
    ],
)
def test_parser_rejects_invalid_queries(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(text)


# -------------------------------------------------------------- error policy
Handler = Callable[[httpx.Request], httpx.Response]


def _connector(handler: Handler, **options: Any) -> StripeConnector:
    settings = ConnectorSettings(
        base_url="https://api.stripe.test", credentials={"token": "sk_test_x"}, options=options
    )
    return StripeConnector(settings, transport=httpx.MockTransport(handler))


def _stripe_error(status: int, headers: dict[str, str] | None = None, **error: str) -> Handler:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": error}, headers=headers)

    return handler


async def test_401_is_an_auth_error_with_stripe_detail() -> None:
    handler = _stripe_error(
        401,
        {"Request-Id": "req_123"},
        type="invalid_request_error",
        message="Invalid API Key provided: sk_test_****x",
    )
    connector = _connector(handler)
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await connector.customers_by_email(["a@x.com"])
    finally:
        await connector.close()
    detail = info.value.vendor_detail or ""
    assert "invalid_request_error: Invalid API Key provided" in detail
    assert "req_123" in detail
    assert "Invalid API Key" not in str(info.value)


async def test_404_resource_missing_means_absent_but_other_404s_raise() -> None:
    handler = _stripe_error(
        404, type="invalid_request_error", code="resource_missing", message="No such customer"
    )
    connector = _connector(handler)
    try:
        assert await connector.customers_by_id(["cus_nope"]) == {}
        with pytest.raises(UpstreamBadRequest) as info:
            await connector.invoices_of_customers(["cus_nope"])
    finally:
        await connector.close()
    assert info.value.status == 404
    assert "resource_missing" in (info.value.vendor_detail or "")


async def test_400_carries_code_and_param() -> None:
    handler = _stripe_error(
        400, type="invalid_request_error", message="Invalid query", param="query"
    )
    connector = _connector(handler)
    try:
        with pytest.raises(UpstreamBadRequest) as info:
            await connector.customers_by_email(["a@x.com"])
    finally:
        await connector.close()
    assert info.value.vendor_detail == "invalid_request_error: Invalid query (param query)"


async def test_429_is_rate_limited_with_retry_after() -> None:
    handler = _stripe_error(429, {"Retry-After": "2"}, type="rate_limit_error", message="slow")
    connector = _connector(handler)
    try:
        with pytest.raises(UpstreamRateLimited) as info:
            await connector.invoices_of_customers(["cus_1"])
    finally:
        await connector.close()
    assert info.value.retry_after == 2.0
    assert info.value.retryable


async def test_stripe_should_retry_makes_a_4xx_retryable() -> None:
    handler = _stripe_error(
        409, {"Stripe-Should-Retry": "true"}, type="invalid_request_error", code="lock_timeout"
    )
    connector = _connector(handler)
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await connector.customers_by_id(["cus_1"])
    finally:
        await connector.close()
    assert info.value.status == 409
    assert info.value.retryable


async def test_500_is_unavailable() -> None:
    connector = _connector(lambda _: httpx.Response(500, text="<html>oops</html>"))
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await connector.customers_by_email(["a@x.com"])
    finally:
        await connector.close()
    assert info.value.vendor_detail == "<html>oops</html>"


@pytest.mark.parametrize(
    "content",
    [b"not json {", b"[1, 2]", json.dumps({"object": "search_result", "data": {}}).encode()],
)
async def test_garbage_or_wrong_shape_is_a_protocol_error(content: bytes) -> None:
    connector = _connector(lambda _: httpx.Response(200, content=content))
    try:
        with pytest.raises(UpstreamProtocolError):
            await connector.customers_by_email(["a@x.com"])
        with pytest.raises(UpstreamProtocolError):
            await connector.customers_by_id(["cus_1"])
    finally:
        await connector.close()


@pytest.mark.parametrize("options", [{"page_size": 0}, {"page_size": 101}, {"api_version": ""}])
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        _connector(lambda _: httpx.Response(200), **options)


def test_missing_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        StripeConnector(ConnectorSettings(base_url="https://api.stripe.test"))
