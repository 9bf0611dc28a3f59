"""PII through side paths: the same value gets the same rule wherever it appears.

Each test is a way the attack on c360 found to read PII a role may not see:
a contact list holding the customer's own phone, a Mailchimp id that is an
email's hash, and a search that answers "is there someone with this number?".
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.sdk.world import World
from tests.conftest import SESSION_WORLD
from tests.integration.schema_walk import PiiKey

pytestmark = pytest.mark.integration


def _ask(url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"}, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def pii() -> PiiKey:
    return PiiKey.of(World(**SESSION_WORLD))


@pytest.fixture(scope="module")
def colleague(answer_key: list[dict[str, Any]]) -> dict[str, Any]:
    """Someone in the CRM at an account, with a phone there."""
    return next(p for p in answer_key if p["organization"] and p["in_all"] and not p["anomalies"])


CONTACTS = """query($e: String!) { customer(email: $e) {
  phone account { contacts(first: 100) { edges { node { id email phone } } } } } }"""


@pytest.mark.parametrize(("role", "mfa"), [("support_agent", False), ("admin", False)])
def test_a_contacts_phone_is_as_masked_as_the_customers(
    role, mfa, gateway_url, issuer, colleague, pii
):
    body = _ask(gateway_url, issuer.mint_token(role, mfa=mfa), CONTACTS, e=colleague["email"])
    customer = body["data"]["customer"]
    assert customer["phone"].endswith(colleague["phone"][-4:]) and "***" in customer["phone"]
    contacts = [e["node"] for e in customer["account"]["contacts"]["edges"]]
    own = next(c for c in contacts if c["email"] == colleague["email"])
    # The same record's number: masked the same way (the CRM stores it without
    # a country code, so its mask has none either).
    assert own["phone"].endswith(colleague["phone"][-4:]) and "***" in own["phone"]
    assert all(not pii.kinds(c["phone"] or "") & {"phone"} for c in contacts)


def test_paging_every_account_harvests_no_personal_phone(gateway_url, issuer, pii):
    token = issuer.mint_token("support_agent")
    query = """query($after: String) { accounts(first: 50, after: $after) {
      pageInfo { hasNextPage endCursor }
      edges { node { contacts(first: 100) { edges { node { phone } } } } } } }"""
    phones, after = [], None
    while True:
        page = _ask(gateway_url, token, query, after=after)["data"]["accounts"]
        for edge in page["edges"]:
            phones += [c["node"]["phone"] for c in edge["node"]["contacts"]["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    shown = [p for p in phones if p]
    assert len(shown) > 100  # the harvest reached them all...
    assert not [p for p in shown if "phone" in pii.kinds(p)]  # ...and got no number in full


SOURCES = """query($e: String!) { customer(email: $e) {
  sources { system id } marketing { lists { source { system id } } } } }"""


@pytest.mark.parametrize(
    ("role", "shown"), [("marketing", "***"), ("integration", ""), ("support_agent", None)]
)
def test_a_subscriber_hash_is_the_email_it_hashes(role, shown, gateway_url, issuer, answer_key):
    person = next(p for p in answer_key if p["in_all"])
    digest = person["systems"]["mailchimp"][0]
    customer = _ask(gateway_url, issuer.mint_token(role), SOURCES, e=person["email"])["data"][
        "customer"
    ]
    ids = [s["id"] for s in customer["sources"] if s["system"] == "mailchimp"]
    if customer["marketing"] is not None:
        ids += [lst["source"]["id"] for lst in customer["marketing"]["lists"]]
    assert ids
    assert all(i == (digest if shown is None else shown) for i in ids), ids
    others = [s["id"] for s in customer["sources"] if s["system"] != "mailchimp"]
    assert digest not in others and all(others)  # other systems' ids are not PII


SEARCH = """query($t: String!) { searchCustomers(text: $t, first: 5) {
  edges { node { id } } } }"""


@pytest.mark.parametrize(
    ("role", "mfa", "by", "allowed", "mfa_required"),
    [
        ("support_agent", False, "phone", False, False),
        ("admin", False, "phone", False, True),
        ("admin", True, "phone", True, False),
        ("marketing", False, "email", False, False),
        ("marketing", False, "name", False, False),
        ("support_agent", False, "email", True, False),
        ("support_agent", False, "name", True, False),
    ],
)
def test_a_search_only_looks_where_the_caller_may_see(
    role, mfa, by, allowed, mfa_required, gateway_url, issuer, colleague, sandbox_url
):
    text = {
        "phone": colleague["phone"][-10:],
        "email": colleague["email"],
        "name": colleague["name"],
    }[by]
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    body = _ask(gateway_url, issuer.mint_token(role, mfa=mfa), SEARCH, t=text)
    calls = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["total"]
    if allowed:
        assert "errors" not in body, body
        assert body["data"]["searchCustomers"]["edges"]
        return
    assert body["data"] == {"searchCustomers": None}
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["extensions"]["searchedBy"] == by
    assert error["extensions"]["mfaRequired"] is mfa_required
    assert text not in error["message"]
    assert calls == 0  # refused before the CRM was asked: no oracle, not even timing
