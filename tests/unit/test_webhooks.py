"""Vendor webhooks: each signature scheme, the exact keys each event spoils,
the gateway endpoint over a real cache layer, and the sandbox's mutations."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette

from connectors.mailchimp import webhook as mailchimp
from connectors.salesforce import webhook as salesforce
from connectors.sdk import ConnectorSettings, Domain, Person, SourceRef
from connectors.sdk.sandbox import SandboxState, World, create_combined_app
from connectors.sdk.testing.server import free_port
from connectors.sdk.webhooks import (
    DEPENDENT_LISTS,
    PERSON_LOOKUPS,
    Invalidation,
    WebhookMalformed,
    WebhookRejected,
    sign_c360,
    sign_stripe,
    sign_zendesk,
)
from connectors.stripe import webhook as stripe
from connectors.zendesk import webhook as zendesk
from gateway._deliveries import Deliveries
from gateway._stores import StoreError
from gateway.cache import CacheLayer, CachePolicy, MemoryStore, Ttl
from gateway.config import ConfigError, ConnectorConfig, settings_from_mapping
from gateway.identity import EMAIL_LOOKUP, ID_LOOKUP, PHONE_LOOKUP
from gateway.upstream import RequestScope
from gateway.webhooks import Invalidator, load_handler, webhook_routes, webhook_settings

SECRET = "whsec_0123456789abcdef0123456789abcdef"
NOW = 1_750_000_000.0
K = Invalidation  # one cached answer: (method, key)


def zendesk_time(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def stripe_headers(body: bytes, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    return {"Stripe-Signature": sign_stripe(secret, body, int(at))}


def zendesk_headers(body: bytes, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    stamp = zendesk_time(at)
    return {
        "X-Zendesk-Webhook-Signature": sign_zendesk(secret, body, stamp),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }


def secret_headers(body: bytes, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    return {"X-C360-Webhook-Secret": secret}


SCHEMES = {
    "stripe": (stripe.handler, stripe_headers),
    "zendesk": (zendesk.handler, zendesk_headers),
    "salesforce": (salesforce.handler, secret_headers),
    "mailchimp": (mailchimp.handler, secret_headers),
}
BODY = b'{"type": "customer.updated"}'


# ------------------------------------------------------------------ signatures
@pytest.mark.parametrize("vendor", sorted(SCHEMES))
def test_a_valid_delivery_is_accepted(vendor):
    handler, sign = SCHEMES[vendor]
    handler.verify(sign(BODY), BODY, SECRET, NOW)
    # Header names are case-insensitive, as HTTP has them.
    lowered = {k.lower(): v for k, v in sign(BODY).items()}
    handler.verify(lowered, BODY, SECRET, NOW)


@pytest.mark.parametrize("vendor", sorted(SCHEMES))
def test_a_wrong_secret_is_rejected(vendor):
    handler, sign = SCHEMES[vendor]
    with pytest.raises(WebhookRejected) as caught:
        handler.verify(sign(BODY, secret="whsec_someone_else_entirely"), BODY, SECRET, NOW)
    assert caught.value.reason in ("bad_signature", "bad_secret")
    assert caught.value.status == 401
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("vendor", ["stripe", "zendesk"])
def test_a_tampered_body_is_rejected(vendor):
    handler, sign = SCHEMES[vendor]
    with pytest.raises(WebhookRejected, match="does not match"):
        handler.verify(sign(BODY), BODY.replace(b"updated", b"deleted"), SECRET, NOW)


@pytest.mark.parametrize("vendor", ["stripe", "zendesk"])
@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_outside_300_seconds_is_rejected(vendor, skew):
    handler, sign = SCHEMES[vendor]
    with pytest.raises(WebhookRejected) as caught:
        handler.verify(sign(BODY, at=NOW + skew), BODY, SECRET, NOW)
    assert caught.value.reason == "stale_timestamp"
    handler.verify(sign(BODY, at=NOW - 299), BODY, SECRET, NOW)


@pytest.mark.parametrize("vendor", sorted(SCHEMES))
def test_missing_headers_are_rejected(vendor):
    handler, _ = SCHEMES[vendor]
    with pytest.raises(WebhookRejected) as caught:
        handler.verify({}, BODY, SECRET, NOW)
    assert caught.value.reason in ("missing_signature", "missing_secret")


def test_a_zendesk_signature_without_its_timestamp_is_rejected():
    headers = zendesk_headers(BODY)
    del headers["X-Zendesk-Webhook-Signature-Timestamp"]
    with pytest.raises(WebhookRejected) as caught:
        zendesk.handler.verify(headers, BODY, SECRET, NOW)
    assert caught.value.reason == "missing_signature"


@pytest.mark.parametrize(
    "header", ["t=1750000000", "v1=abc", "garbage", "t=soon,v1=abc", "t=1750000000,v0=abc"]
)
def test_a_malformed_stripe_signature_is_rejected(header):
    with pytest.raises(WebhookRejected) as caught:
        stripe.handler.verify({"Stripe-Signature": header}, BODY, SECRET, NOW)
    assert caught.value.reason == "malformed_signature"


def test_stripe_accepts_any_v1_during_a_secret_rotation():
    old = sign_stripe("whsec_the_previous_secret", BODY, int(NOW)).split(",")[1]
    header = f"{sign_stripe(SECRET, BODY, int(NOW))},{old}"
    stripe.handler.verify({"Stripe-Signature": header}, BODY, SECRET, NOW)


# ------------------------------------------------------------------ what events spoil
def stripe_event(kind: str, obj: dict, previous: dict | None = None, event_id="evt_1") -> bytes:
    data = {"object": obj, **({"previous_attributes": previous} if previous else {})}
    return json.dumps({"id": event_id, "object": "event", "type": kind, "data": data}).encode()


def test_a_stripe_customer_update_spoils_old_and_new_keys_of_that_customer():
    body = stripe_event(
        "customer.updated",
        {"id": "cus_1", "object": "customer", "email": " Ada@Example.com ",
         "phone": "(415) 555-0100", "metadata": {"salesforce_id": "003NEW"}},
        {"email": "ada@old.example", "phone": "+14155550199",
         "metadata": {"salesforce_id": "003OLD"}},
    )  # fmt: skip
    assert sorted(stripe.handler.invalidations({}, body)) == sorted([
        K("customers_by_email", "ada@example.com"), K("customers_by_email", "ada@old.example"),
        K("customers_by_phone", "+14155550100"), K("customers_by_phone", "+14155550199"),
        K("customers_by_id", "cus_1"),
        K("people_linked_to", "salesforce:003NEW"), K("people_linked_to", "salesforce:003OLD"),
    ])  # fmt: skip


def test_a_deleted_stripe_customer_spoils_its_invoice_list_too():
    body = stripe_event("customer.deleted", {"id": "cus_1", "object": "customer", "email": None})
    assert sorted(stripe.handler.invalidations({}, body)) == [
        K("customers_by_id", "cus_1"),
        K("invoices_of_customers", "cus_1"),
    ]


@pytest.mark.parametrize(
    ("kind", "obj", "expected"),
    [
        ("invoice.paid", {"id": "in_1", "customer": "cus_1"},
         [K("invoices_of_customers", "cus_1")]),
        ("invoice.updated", {"id": "in_1", "customer": {"id": "cus_2"}},
         [K("invoices_of_customers", "cus_2")]),
        ("customer.subscription.updated", {"id": "sub_1", "customer": "cus_1"},
         [K("customers_by_id", "cus_1")]),
        ("customer.discount.created", {"id": "di_1", "object": "discount"}, []),
        ("charge.succeeded", {"id": "ch_1"}, []),
    ],
)  # fmt: skip
def test_other_stripe_events_spoil_only_what_holds_them(kind, obj, expected):
    assert stripe.handler.invalidations({}, stripe_event(kind, obj)) == expected


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "customer.updated"}'])
def test_an_unreadable_stripe_event_is_malformed(body):
    with pytest.raises(WebhookMalformed) as caught:
        stripe.handler.invalidations({}, body)
    assert caught.value.status == 400


def zendesk_event(kind: str, detail: dict, change: object = None) -> bytes:
    event = {"type": f"zen:event-type:{kind}", "detail": detail, "event": change}
    return json.dumps(event).encode()


def test_a_zendesk_ticket_event_spoils_its_requesters_ticket_list():
    body = zendesk_event("ticket.status_changed", {"id": "5", "requester_id": "42"},
                         {"current": "solved", "previous": "open"})  # fmt: skip
    assert zendesk.handler.invalidations({}, body) == [K("tickets_of_requesters", "42")]
    moved = zendesk_event("ticket.requester_changed", {"id": "5", "requester_id": "42"},
                          {"current": {"id": 42}, "previous": {"id": 7}})  # fmt: skip
    assert zendesk.handler.invalidations({}, moved) == [
        K("tickets_of_requesters", "42"),
        K("tickets_of_requesters", "7"),
    ]


def test_a_zendesk_phone_change_spoils_both_numbers():
    body = zendesk_event(
        "user.identity_changed",
        {"id": "42", "email": "Bo@Example.com", "external_id": "003A"},
        {"current": {"type": "phone_number", "value": "+1 415 555 0101"},
         "previous": {"type": "phone_number", "value": "415-555-0102"}},
    )  # fmt: skip
    assert sorted(zendesk.handler.invalidations({}, body)) == sorted([
        K("requesters_by_email", "bo@example.com"),
        K("requesters_by_phone", "+14155550101"), K("requesters_by_phone", "+14155550102"),
        K("requesters_by_id", "42"), K("people_linked_to", "salesforce:003A"),
    ])  # fmt: skip


def test_a_zendesk_external_id_change_spoils_both_links_and_a_deletion_the_tickets():
    body = zendesk_event("user.external_id_changed", {"id": "42", "email": "", "external_id": "B"},
                         {"current": "B", "previous": "A"})  # fmt: skip
    assert sorted(zendesk.handler.invalidations({}, body)) == [
        K("people_linked_to", "salesforce:A"),
        K("people_linked_to", "salesforce:B"),
        K("requesters_by_id", "42"),
    ]
    gone = zendesk_event("user.deleted", {"id": "42", "email": "bo@example.com"})
    assert K("tickets_of_requesters", "42") in zendesk.handler.invalidations({}, gone)


def test_salesforce_ids_in_every_form_the_loaders_may_have_used():
    assert salesforce.id_forms("001A0000006Vm9r") == ["001A0000006Vm9r", "001A0000006Vm9rIAC"]
    assert salesforce.id_forms("001A0000006Vm9rIAC") == ["001A0000006Vm9rIAC", "001A0000006Vm9r"]
    assert salesforce.id_forms("not an id") == []


def test_a_salesforce_contact_change_spoils_person_keys_and_the_account_contact_lists():
    change = {"sobject": "Contact", "event": "updated",
              "record": {"Id": "003A0000006Vm9r", "Email": "cy@example.com",
                         "Phone": "+14155550103", "AccountId": "001A0000006Vm9r"},
              "prior": {"Id": "003A0000006Vm9r", "Email": "cy@example.com",
                        "Phone": None, "AccountId": None}}  # fmt: skip
    assert sorted(salesforce.handler.invalidations({}, json.dumps([change]).encode())) == sorted([
        K("people_by_email", "cy@example.com"), K("people_by_phone", "+14155550103"),
        K("people_by_id", "003A0000006Vm9r"), K("people_by_id", "003A0000006Vm9rIAC"),
        K("contacts_of_organizations", "001A0000006Vm9r"),
        K("contacts_of_organizations", "001A0000006Vm9rIAC"),
    ])  # fmt: skip


def test_salesforce_account_and_opportunity_changes():
    account = {"sobject": "Account", "record": {"Id": "001A0000006Vm9r", "ParentId": None},
               "prior": {"Id": "001A0000006Vm9r", "ParentId": "001A0000006Vm9s"}}  # fmt: skip
    methods = {i.method for i in salesforce.handler.invalidations({}, json.dumps(account).encode())}
    assert methods == {"organizations_by_id", "child_organizations"}
    opportunity = {
        "sobject": "Opportunity",
        "prior": {"Id": "006A", "AccountId": "001A0000006Vm9r"},
    }
    assert salesforce.handler.invalidations({}, json.dumps(opportunity).encode())[0] == K(
        "opportunities_of_organizations", "001A0000006Vm9r"
    )
    with pytest.raises(WebhookMalformed):
        salesforce.handler.invalidations({}, b'{"sobject": "Contact"}')


def mailchimp_form(kind: str, **data: str) -> bytes:
    return urlencode({"type": kind, **{f"data[{k}]": v for k, v in data.items()}}).encode()


def test_a_mailchimp_unsubscribe_spoils_the_memberships_and_the_activity_feed():
    body = mailchimp_form("unsubscribe", email="Di@Example.com", list_id="L1", id="8a25ff1d98")
    digest = mailchimp.subscriber_hash("di@example.com")
    assert sorted(mailchimp.handler.invalidations({}, body)) == sorted([
        K("members_by_email", "di@example.com"), K("members_by_id", digest),
        K("activity_of_members", digest),
    ])  # fmt: skip


def test_mailchimp_address_changes_profiles_and_the_rest():
    upemail = mailchimp_form("upemail", old_email="a@example.com", new_email="b@example.com")
    assert {(i.method, i.key) for i in mailchimp.handler.invalidations({}, upemail)} == {
        ("members_by_email", "a@example.com"), ("members_by_email", "b@example.com"),
        ("members_by_id", mailchimp.subscriber_hash("a@example.com")),
        ("members_by_id", mailchimp.subscriber_hash("b@example.com")),
        ("activity_of_members", mailchimp.subscriber_hash("a@example.com")),
        ("activity_of_members", mailchimp.subscriber_hash("b@example.com")),
    }  # fmt: skip
    profile = mailchimp_form("profile", email="a@example.com")
    assert {i.method for i in mailchimp.handler.invalidations({}, profile)} == {
        "members_by_email", "members_by_id"
    }  # fmt: skip
    assert mailchimp.handler.invalidations({}, mailchimp_form("campaign", id="c1")) == []
    assert mailchimp.handler.invalidations({}, b"") == []
    with pytest.raises(WebhookMalformed):
        mailchimp.handler.invalidations({}, b"data[email]=a@example.com")


def test_the_sdk_names_the_lookups_the_gateway_resolves_people_with():
    for domain in Domain:
        by_email, by_id, by_phone = PERSON_LOOKUPS[domain]
        assert (by_email, by_id, by_phone) == (
            EMAIL_LOOKUP[domain], ID_LOOKUP[domain], PHONE_LOOKUP.get(domain)
        )  # fmt: skip
    assert set(DEPENDENT_LISTS.values()) == {
        "tickets_of_requesters", "invoices_of_customers", "activity_of_members"
    }  # fmt: skip


# ------------------------------------------------------------------ the gateway endpoint
class Conn:
    def __init__(self, name: str) -> None:
        self.name = name


class Upstream:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, connector, method, keys, scope):
        self.calls += [(method, key) for key in keys]
        source = SourceRef(system=connector.name, record_id=f"{method}:{len(self.calls)}")
        return {key: [Person(source=source, email=key)] for key in keys}


def config(name: str, kind: str, secret_ref: str | None = "env:C360_TEST_WEBHOOK"):
    raw = {"webhook_secret": secret_ref} if secret_ref else {}
    settings = ConnectorSettings(base_url="https://vendor.invalid")
    return ConnectorConfig(name=name, kind=kind, settings=settings, raw=raw)


@pytest.fixture
def cache():
    ttl = Ttl(soft=60, hard=120, max_stale=600, negative=60)
    return CacheLayer(MemoryStore(), Upstream(), policy=CachePolicy(default=ttl), secret=b"k" * 32)


@pytest.fixture
async def gateway(cache, monkeypatch):
    monkeypatch.setenv("C360_TEST_WEBHOOK", SECRET)
    invalidator = Invalidator(lambda: cache)
    configs = [config("billing", "stripe"), config("marketing", "mailchimp"),
               config("tickets", "zendesk", None)]  # fmt: skip
    routes = webhook_routes(invalidator, configs, max_body_bytes=4096, clock=lambda: NOW)
    app = Starlette(routes=routes)
    await invalidator.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://gw"
    ) as client:
        yield client
    await invalidator.aclose()
    await cache.aclose()


async def warm(cache, source: str, method: str, keys: list[str]) -> list[tuple[str, str]]:
    """Read ``keys`` through the cache; the upstream calls that read made."""
    upstream = cache._inner
    before = len(upstream.calls)
    await cache(Conn(source), method, keys, RequestScope())
    return upstream.calls[before:]


async def test_a_signed_webhook_evicts_exactly_the_keys_of_that_customer(gateway, cache):
    await warm(cache, "billing", "customers_by_email", ["ada@example.com", "bo@example.com"])
    await warm(cache, "billing", "customers_by_id", ["cus_1", "cus_2"])
    customer = {"id": "cus_1", "object": "customer", "email": "ada@example.com"}
    body = stripe_event("customer.updated", customer)
    response = await gateway.post("/webhooks/billing", content=body, headers=stripe_headers(body))
    assert response.status_code == 200
    assert response.json() == {"received": True, "evicted": 2}
    again = await warm(
        cache, "billing", "customers_by_email", ["ada@example.com", "bo@example.com"]
    )
    assert again == [("customers_by_email", "ada@example.com")]
    assert await warm(cache, "billing", "customers_by_id", ["cus_1", "cus_2"]) == [
        ("customers_by_id", "cus_1")
    ]
    # Another connector's copy of the same address is not this event's business.
    await warm(cache, "crm", "customers_by_email", ["ada@example.com"])
    body = stripe_event("customer.updated", customer, event_id="evt_2")
    response = await gateway.post("/webhooks/billing", content=body, headers=stripe_headers(body))
    assert response.json() == {"received": True, "evicted": 2}
    assert await warm(cache, "crm", "customers_by_email", ["ada@example.com"]) == []


@pytest.mark.parametrize(
    ("sign", "code"),
    [
        (lambda body: stripe_headers(body, secret="whsec_not_ours_at_all"), "bad_signature"),
        (lambda body: {}, "missing_signature"),
        (lambda body: stripe_headers(body, at=NOW - 3600), "stale_timestamp"),
        (lambda body: stripe_headers(body + b" "), "bad_signature"),  # tampered in transit
    ],
)
async def test_a_refused_webhook_changes_nothing(gateway, cache, sign, code):
    await warm(cache, "billing", "customers_by_id", ["cus_1"])
    body = stripe_event("customer.deleted", {"id": "cus_1", "object": "customer"})
    response = await gateway.post("/webhooks/billing", content=body, headers=sign(body))
    assert response.status_code == 401
    assert response.json()["error"] == code
    assert SECRET not in response.text
    assert await warm(cache, "billing", "customers_by_id", ["cus_1"]) == []


async def test_endpoint_errors_are_clear_and_never_echo_the_secret(gateway):
    body = b"not json"
    signed = stripe_headers(body)
    cases = [
        (await gateway.post("/webhooks/billing", content=body, headers=signed), 400),
        (await gateway.post("/webhooks/nobody", content=body), 404),
        (await gateway.post("/webhooks/tickets", content=body), 404),  # no secret configured
        (await gateway.post(f"/webhooks/billing/{SECRET}", content=body, headers=signed), 404),
        (await gateway.get("/webhooks/billing"), 405),
        (await gateway.post("/webhooks/billing", content=b"x" * 5000, headers=signed), 413),
        (await gateway.post("/webhooks/marketing/not-the-secret", content=b"type=profile"), 401),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "message"}
        assert SECRET not in response.text


async def test_mailchimp_secret_in_the_url_and_its_validation_ping(gateway, cache):
    assert (await gateway.get(f"/webhooks/marketing/{SECRET}")).json() == {"ok": True}
    assert (await gateway.get("/webhooks/marketing/guess")).status_code == 401
    digest = mailchimp.subscriber_hash("di@example.com")
    await warm(cache, "marketing", "members_by_id", [digest])
    body = mailchimp_form("unsubscribe", email="di@example.com", list_id="L1")
    response = await gateway.post(f"/webhooks/marketing/{SECRET}", content=body)
    assert response.json() == {"received": True, "evicted": 3}
    assert await warm(cache, "marketing", "members_by_id", [digest]) == [("members_by_id", digest)]


# ------------------------------------------------------------------ replays
async def post_twice(client, url: str, body: bytes, headers: dict[str, str]) -> list[dict]:
    first = await client.post(url, content=body, headers=headers)
    again = await client.post(url, content=body, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    return [first.json(), again.json()]


async def test_a_replayed_stripe_delivery_is_handled_once(gateway, cache):
    body = stripe_event("customer.deleted", {"id": "cus_1", "object": "customer"})
    headers = stripe_headers(body)
    first = await gateway.post("/webhooks/billing", content=body, headers=headers)
    assert first.json() == {"received": True, "evicted": 2}
    await warm(cache, "billing", "customers_by_id", ["cus_1"])
    # The same bytes again (an attacker who saw them, inside the 300 s tolerance),
    # and the same event signed anew (Stripe sending it twice): nothing evicted.
    for replay in (headers, stripe_headers(body, at=NOW - 60)):
        again = await gateway.post("/webhooks/billing", content=body, headers=replay)
        assert again.status_code == 200
        assert again.json() == {"received": True, "duplicate": True, "evicted": 0}
    assert await warm(cache, "billing", "customers_by_id", ["cus_1"]) == []
    other = stripe_event("customer.deleted", {"id": "cus_1", "object": "customer"}, None, "evt_9")
    answer = await gateway.post("/webhooks/billing", content=other, headers=stripe_headers(other))
    assert answer.json() == {"received": True, "evicted": 2}
    assert await warm(cache, "billing", "customers_by_id", ["cus_1"]) == [
        ("customers_by_id", "cus_1")
    ]


def test_event_ids_come_from_what_the_signature_covers():
    body = stripe_event("invoice.paid", {"id": "in_1", "customer": "cus_1"}, event_id="evt_7")
    assert stripe.handler.event_id(stripe_headers(body), body) == "evt_7"
    anonymous = b'{"type": "invoice.paid", "data": {"object": {"customer": "cus_1"}}}'
    ids = {stripe.handler.event_id(stripe_headers(anonymous, at=at), anonymous)
           for at in (NOW, NOW, NOW + 1)}  # fmt: skip
    assert len(ids) == 2  # a replay is the same delivery; a new signing time is another
    event = zendesk_event("ticket.created", {"id": "5", "requester_id": "42"})
    with_id = json.dumps({**json.loads(event), "id": "01HZX"}).encode()
    assert zendesk.handler.event_id(zendesk_headers(with_id), with_id) == "01HZX"
    # A trigger's body has no id: the signed timestamp and body stand for one,
    # never the unsigned invocation-id header a replay could change.
    signed = zendesk_headers(event)
    assert zendesk.handler.event_id(signed, event) == zendesk.handler.event_id(
        {**signed, "X-Zendesk-Webhook-Invocation-Id": "other"}, event
    )
    assert zendesk.handler.event_id(signed, event) != zendesk.handler.event_id(
        zendesk_headers(event, at=NOW + 1), event
    )
    assert salesforce.handler.event_id({}, b"{}") is None
    assert mailchimp.handler.event_id({}, b"type=profile") is None


async def test_unsigned_vendors_stay_replayable_as_documented(gateway, cache):
    """Mailchimp signs nothing and sends no id: each replay evicts again."""
    digest = mailchimp.subscriber_hash("di@example.com")
    body = mailchimp_form("profile", email="di@example.com", list_id="L1")
    for _ in range(2):
        await warm(cache, "marketing", "members_by_id", [digest])
        answer = await gateway.post(f"/webhooks/marketing/{SECRET}", content=body)
        assert answer.json() == {"received": True, "evicted": 2}
        assert await warm(cache, "marketing", "members_by_id", [digest]) == [
            ("members_by_id", digest)
        ]


@pytest.fixture
async def relayed(cache, monkeypatch):
    """Salesforce and Mailchimp behind a relay that signs with X-C360-Signature."""
    monkeypatch.setenv("C360_TEST_WEBHOOK", SECRET)
    configs = [config("crm", "salesforce"), config("marketing", "mailchimp")]
    for item in configs:
        item.raw["webhook_signature"] = "c360"
    invalidator = Invalidator(lambda: cache)
    app = Starlette(routes=webhook_routes(invalidator, configs, clock=lambda: NOW))
    await invalidator.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        yield c
    await invalidator.aclose()
    await cache.aclose()


def c360_headers(body: bytes, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    return {"X-C360-Signature": sign_c360(secret, body, int(at))}


async def test_a_connector_can_require_the_gateways_own_timestamped_signature(relayed, cache):
    change = {"sobject": "Contact", "record": {"Id": "003000000000001", "Email": "ed@example.com"}}
    body = json.dumps(change).encode()
    refused = [
        # The vendor's own scheme no longer opens the door, in a header or the URL.
        (await relayed.post("/webhooks/crm", content=body, headers=secret_headers(body)), 401),
        (await relayed.post(f"/webhooks/crm/{SECRET}", content=body), 404),
        (await relayed.get(f"/webhooks/marketing/{SECRET}"), 404),
        (await relayed.post("/webhooks/crm", content=body,
                            headers=c360_headers(body, at=NOW - 301)), 401),  # too old to replay
        (await relayed.post("/webhooks/crm", content=body,
                            headers=c360_headers(body, secret="not-the-relay-secret")), 401),
        (await relayed.post("/webhooks/crm", content=body + b" ", headers=c360_headers(body)), 401),
    ]  # fmt: skip
    for response, status in refused:
        assert response.status_code == status, response.text
        assert SECRET not in response.text
    assert refused[0][0].json()["message"] == "no X-C360-Signature header"
    assert refused[3][0].json()["error"] == "stale_timestamp"
    await warm(cache, "crm", "people_by_email", ["ed@example.com"])
    first, again = await post_twice(relayed, "/webhooks/crm", body, c360_headers(body))
    assert first == {"received": True, "evicted": 3}  # the id in 15 and 18 characters, the email
    assert again == {"received": True, "duplicate": True, "evicted": 0}
    assert await warm(cache, "crm", "people_by_email", ["ed@example.com"]) == [
        ("people_by_email", "ed@example.com")
    ]
    # The same change relayed again later is a new delivery, handled again.
    later = await relayed.post(
        "/webhooks/crm", content=body, headers=c360_headers(body, at=NOW + 1)
    )
    assert later.json() == {"received": True, "evicted": 3}
    form = mailchimp_form("unsubscribe", email="di@example.com", list_id="L1")
    assert (await relayed.post("/webhooks/marketing", content=form,
                               headers=c360_headers(form))).json()["evicted"] == 3  # fmt: skip


class FailingEvictions(CacheLayer):
    """A cache that refuses the first ``failures`` evictions."""

    def __init__(self, inner: CacheLayer, failures: int) -> None:
        self.__dict__.update(inner.__dict__)
        self.failures = failures

    async def evict(self, source, method, keys):
        if self.failures:
            self.failures -= 1
            return False
        return await super().evict(source, method, keys)


async def test_an_event_whose_eviction_failed_is_handled_when_the_vendor_retries(
    cache, monkeypatch
):
    monkeypatch.setenv("C360_TEST_WEBHOOK", SECRET)
    invalidator = Invalidator(FailingEvictions(cache, failures=1))
    app = Starlette(routes=webhook_routes(invalidator, [config("billing", "stripe")],
                                          clock=lambda: NOW))  # fmt: skip
    body = stripe_event("invoice.paid", {"id": "in_1", "customer": "cus_1"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        failed = await c.post("/webhooks/billing", content=body, headers=stripe_headers(body))
        retried = await c.post("/webhooks/billing", content=body, headers=stripe_headers(body))
        replayed = await c.post("/webhooks/billing", content=body, headers=stripe_headers(body))
    assert failed.status_code == 503 and failed.json()["error"] == "invalidation_failed"
    assert retried.json() == {"received": True, "evicted": 1}
    assert replayed.json() == {"received": True, "duplicate": True, "evicted": 0}
    await invalidator.aclose()


async def test_a_replay_check_that_cannot_be_made_asks_the_vendor_to_retry(cache, monkeypatch):
    monkeypatch.setenv("C360_TEST_WEBHOOK", SECRET)
    invalidator = Invalidator(cache)

    async def unavailable(*_args):
        raise StoreError("redis: ConnectionError")

    monkeypatch.setattr(invalidator.deliveries, "claim", unavailable)
    app = Starlette(routes=webhook_routes(invalidator, [config("billing", "stripe")],
                                          clock=lambda: NOW))  # fmt: skip
    await warm(cache, "billing", "invoices_of_customers", ["cus_1"])
    body = stripe_event("invoice.paid", {"id": "in_1", "customer": "cus_1"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
        response = await c.post("/webhooks/billing", content=body, headers=stripe_headers(body))
    assert response.status_code == 503
    assert response.json() == {
        "error": "replay_check_failed", "message": "cannot tell if this event was handled; retry"
    }  # fmt: skip
    await invalidator.aclose()


async def test_handled_events_are_remembered_for_a_bounded_window():
    now = [0.0]
    deliveries = Deliveries(MemoryStore(max_entries=3, clock=lambda: now[0]), window=60)
    token = await deliveries.claim("billing", "evt_1")
    assert token is not None
    assert await deliveries.claim("billing", "evt_1") is None
    assert await deliveries.claim("crm", "evt_1") is not None  # per connector
    await deliveries.release("billing", "evt_1", "someone-else's-token")
    assert await deliveries.claim("billing", "evt_1") is None
    await deliveries.release("billing", "evt_1", token)
    token = await deliveries.claim("billing", "evt_1")
    assert token is not None
    now[0] = 61.0
    assert await deliveries.claim("billing", "evt_1") is not None  # the window has passed
    for n in range(3):  # at most max_entries ids are kept: the oldest go first
        assert await deliveries.claim("billing", f"evt_new_{n}") is not None
    assert await deliveries.claim("billing", "evt_1") is not None
    await deliveries.aclose()


async def test_a_broadcast_that_cannot_be_sent_asks_the_vendor_to_retry(cache, monkeypatch):
    monkeypatch.setenv("C360_TEST_WEBHOOK", SECRET)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    invalidator = Invalidator(cache, redis_url=nowhere, connect_timeout=0.1)
    # Events without an id (Salesforce's) skip the replay check, which needs Redis too.
    monkeypatch.setattr(invalidator, "deliveries", Deliveries(MemoryStore()))
    app = Starlette(routes=webhook_routes(invalidator, [config("billing", "stripe")],
                                          clock=lambda: NOW))  # fmt: skip
    await invalidator.start()
    try:
        assert not invalidator.subscribed.is_set()
        body = stripe_event("invoice.paid", {"id": "in_1", "customer": "cus_1"})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
            response = await c.post("/webhooks/billing", content=body, headers=stripe_headers(body))
        assert response.status_code == 503
        assert response.json()["error"] == "invalidation_failed"
    finally:
        await invalidator.aclose()
        await cache.aclose()


def test_webhook_config_is_checked_at_startup(monkeypatch):
    invalidator = Invalidator(lambda: None)
    monkeypatch.setenv("C360_TEST_WEBHOOK", SECRET)
    bad_scheme = config("billing", "stripe")
    bad_scheme.raw["webhook_signature"] = "hmac"
    with pytest.raises(ConfigError) as caught:
        webhook_routes(invalidator, [bad_scheme])
    assert str(caught.value) == "connectors.billing.webhook_signature must be 'vendor' or 'c360'"
    unsigned = config("billing", "stripe", None)
    unsigned.raw["webhook_signature"] = "c360"
    with pytest.raises(ConfigError) as caught:
        webhook_routes(invalidator, [unsigned])
    assert str(caught.value) == "connectors.billing.webhook_signature needs a webhook_secret"
    with pytest.raises(ConfigError, match="C360_TEST_UNSET"):
        webhook_routes(invalidator, [config("billing", "stripe", "env:C360_TEST_UNSET")])
    monkeypatch.setenv("C360_TEST_SHORT", "short")
    with pytest.raises(ConfigError, match="16 characters"):
        webhook_routes(invalidator, [config("billing", "stripe", "env:C360_TEST_SHORT")])
    with pytest.raises(ConfigError, match="literal"):
        webhook_routes(invalidator, [config("billing", "stripe", SECRET)])
    assert load_handler("stripe") is stripe.handler
    assert load_handler("no_such_vendor") is None


def test_webhook_settings_name_their_redis():
    base = {"connectors": {"s": {"base_url": "https://x.invalid"}}}
    cached = {**base, "cache": {"redis_url": "redis://cache:6379/0"}}
    own = {**cached, "webhooks": {"redis_url": "redis://own:1/0", "channel": "c"}}

    def url(document, override=None):
        return webhook_settings(settings_from_mapping(document), redis_url=override).redis_url

    assert url(base) is None
    assert url(cached) == "redis://cache:6379/0"
    assert url(cached, "redis://cli:1/0") == "redis://cli:1/0"  # --redis-url beats cache:
    assert url(own, "redis://cli:1/0") == "redis://own:1/0"  # webhooks: beats both
    assert webhook_settings(settings_from_mapping(own)).channel == "c"
    with pytest.raises(ConfigError, match="max_body_bytes"):
        webhook_settings(settings_from_mapping({**base, "webhooks": {"max_body_bytes": 0}}))
    with pytest.raises(ConfigError) as caught:
        webhook_settings(settings_from_mapping({**base, "webhooks": {"redis": "redis://x/0"}}))
    assert str(caught.value) == (
        "webhooks: unknown key(s) ['redis']; expected some of "
        "['channel', 'max_body_bytes', 'redis_url']"
    )


# ------------------------------------------------------------------ the sandbox side
@pytest.fixture
async def sandbox():
    world = World(customers=40, seed=3)
    state = SandboxState(world)
    app = create_combined_app(state, ["salesforce", "zendesk", "stripe", "mailchimp"])
    people = [world.answer_key(p) for p in world.people]
    person = next(p for p in people if p["in_all"] and not p["anomalies"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sb") as c:
        yield c, state, person


def delivered(vendor: str, event) -> list[Invalidation]:
    """What the gateway would evict for an event the sandbox emitted."""
    handler, encode = {
        "stripe": (stripe.handler, stripe.encode), "zendesk": (zendesk.handler, zendesk.encode),
        "salesforce": (salesforce.handler, salesforce.encode),
        "mailchimp": (mailchimp.handler, mailchimp.encode),
    }[vendor]  # fmt: skip
    headers, body = encode(event, SECRET, time.time())
    if vendor == "mailchimp":
        headers["X-C360-Webhook-Secret"] = SECRET  # what the gateway does with a URL secret
    handler.verify(headers, body, SECRET, time.time())
    return handler.invalidations(headers, body)


async def test_a_sandbox_mutation_is_served_next_and_its_event_names_the_keys(sandbox):
    client, _, person = sandbox
    customer = person["systems"]["stripe"][0]
    spec = {"vendor": "stripe", "kind": "customer", "id": customer,
            "changes": {"phone": "+14155559876"}}  # fmt: skip
    answer = (await client.post("/_sandbox/mutate", json=spec)).json()
    assert answer["webhook"] == "not configured" and answer["deliveries"] == []
    [event] = answer["events"]
    assert event["type"] == "customer.updated"
    assert event["data"]["previous_attributes"]["phone"] != "+14155559876"
    token = {"Authorization": "Bearer sk_test_c360sandbox"}
    served = (await client.get(f"/stripe/v1/customers/{customer}", headers=token)).json()
    assert served["phone"] == "+14155559876"
    assert K("customers_by_phone", "+14155559876") in delivered("stripe", event)
    assert K("customers_by_id", customer) in delivered("stripe", event)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"vendor": "zendesk", "kind": "ticket", "create": {"subject": "Printer on fire"}},
         "tickets_of_requesters"),
        ({"vendor": "zendesk", "kind": "user", "changes": {"phone": "+14155559875"}},
         "requesters_by_phone"),
        ({"vendor": "salesforce", "kind": "contact", "changes": {"Phone": "(415) 555-9874"}},
         "people_by_phone"),
        ({"vendor": "mailchimp", "kind": "member", "changes": {"status": "cleaned"}},
         "activity_of_members"),
    ],
)  # fmt: skip
async def test_every_vendor_sandbox_emits_events_its_handler_reads(sandbox, spec, expected):
    client, _, person = sandbox
    vendor = spec["vendor"]
    target = {"zendesk": person["systems"]["zendesk"][0],
              "salesforce": person["systems"]["salesforce"][0]}.get(vendor)  # fmt: skip
    spec = {**spec, "email": person["email"], "id": target, "requester": target}
    response = await client.post("/_sandbox/mutate", json=spec)
    assert response.status_code == 200, response.text
    keys = [key for event in response.json()["events"] for key in delivered(vendor, event)]
    assert expected in {key.method for key in keys}


async def test_the_sandbox_refuses_what_it_cannot_mutate(sandbox):
    client, state, _ = sandbox
    bad = [
        ({"vendor": "nobody"}, 404),
        ({"vendor": "stripe", "kind": "customer", "id": "cus_none", "changes": {"name": "x"}}, 400),
        ({"vendor": "stripe", "kind": "invoice", "id": "in_x", "changes": {"status": "?"}}, 400),
        ({"vendor": "zendesk", "kind": "ticket", "id": 1, "changes": {"status": "lost"}}, 400),
        ({"vendor": "mailchimp", "kind": "member", "email": "no@one.example",
          "changes": {"status": "unsubscribed"}}, 400),
    ]  # fmt: skip
    for spec, status in bad:
        assert (await client.post("/_sandbox/mutate", json=spec)).status_code == status, spec
    assert (
        await client.post("/_sandbox/webhooks", json={"stripe": {"url": "ftp://x"}})
    ).status_code == 400
    configured = await client.post(
        "/_sandbox/webhooks", json={"stripe": {"url": "http://127.0.0.1:9/hook", "secret": SECRET}}
    )
    assert configured.json() == {"configured": ["stripe"]}
    assert SECRET not in repr(state.mutations._targets)
