"""One query over four systems: the sandbox's answer key is the truth."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

FULL = """
query($email: String, $id: ID, $ref: SystemRefInput) {
  customer(email: $email, id: $id, ref: $ref) {
    id name email phone
    sources { system id url updatedAt }
    account { id name industry parent { id name } }
    tickets { id subject status priority createdAt updatedAt }
    subscriptions { id status plan amount currency interval currentPeriodEnd }
    invoices { id status amountDue amountPaid currency createdAt }
    marketing { status lists { id name status } consents { channel status updatedAt } }
  }
}"""


def _pick(answer_key: list[dict[str, Any]], **want: Any) -> dict[str, Any]:
    for person in answer_key:
        anomalies = person["anomalies"]
        if want.get("in_all") and not person["in_all"]:
            continue
        if "anomaly" in want and want["anomaly"] not in anomalies:
            continue
        if want.get("clean") and anomalies:
            continue
        if want.get("tickets") and not person["counts"]["tickets"]:
            continue
        return person
    pytest.skip(f"the sandbox world has no customer with {want}")


def _sources(customer: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for source in customer["sources"]:
        out.setdefault(source["system"], set()).add(source["id"])
    return out


def test_full_profile_matches_answer_key(gql, answer_key):
    person = _pick(answer_key, in_all=True, tickets=True)
    body = gql(FULL, email=person["email"])
    assert "errors" not in body
    customer = body["data"]["customer"]
    assert customer["email"] == person["email"]
    assert customer["name"] == person["name"]
    sources = _sources(customer)
    for system, ids in person["systems"].items():
        assert sources.get(system, set()) == set(ids), system
    assert len(customer["tickets"]) == person["counts"]["tickets"]
    assert len(customer["subscriptions"]) == person["counts"]["subscriptions"]
    assert len(customer["invoices"]) == person["counts"]["invoices"]
    assert len(customer["marketing"]["lists"]) == person["counts"]["memberships"]
    if person["organization"]:
        assert customer["account"]["id"] == person["organization"]["salesforce"]
        assert customer["account"]["name"] == person["organization"]["name"]
    updated = [t["updatedAt"] for t in customer["tickets"]]
    assert updated == sorted(updated, reverse=True)


def test_every_entry_point_gives_the_same_customer(gql, answer_key):
    person = _pick(answer_key, in_all=True)
    by_email = gql(FULL, email=person["email"])["data"]["customer"]
    by_id = gql(FULL, id=by_email["id"])["data"]["customer"]
    assert by_id == by_email
    for system, ids in person["systems"].items():
        body = gql(FULL, ref={"system": system, "id": ids[0]})
        assert "errors" not in body, body
        assert body["data"]["customer"]["id"] == by_email["id"], system
        assert _sources(body["data"]["customer"]) == _sources(by_email), system


@pytest.mark.parametrize("system", ["salesforce", "stripe", "mailchimp"])
def test_messy_stored_email_still_links(gql, answer_key, system):
    person = _pick(answer_key, anomaly=f"email_case:{system}")
    customer = gql(FULL, email=person["email"].upper())["data"]["customer"]
    assert customer["email"] == person["email"]
    assert _sources(customer)[system] == set(person["systems"][system])


def test_duplicate_billing_customers_are_both_linked(gql, answer_key):
    person = _pick(answer_key, anomaly="duplicate:stripe")
    customer = gql(FULL, email=person["email"])["data"]["customer"]
    assert _sources(customer)["stripe"] == set(person["systems"]["stripe"])
    assert len(person["systems"]["stripe"]) == 2


@pytest.mark.parametrize(
    ("system", "field", "empty"),
    [
        ("zendesk", "tickets", []),
        ("stripe", "subscriptions", []),
        ("stripe", "invoices", []),
        ("mailchimp", "marketing", None),
        ("salesforce", "account", None),
    ],
)
def test_customer_missing_from_a_system_gets_empty_fields(gql, answer_key, system, field, empty):
    person = _pick(answer_key, anomaly=f"missing:{system}")
    body = gql(FULL, email=person["email"])
    assert "errors" not in body
    customer = body["data"]["customer"]
    assert customer[field] == empty
    assert system not in _sources(customer)


def test_unknown_customer_is_null(gql):
    body = gql(FULL, email="nobody.at.all@nowhere.example")
    assert body == {"data": {"customer": None}}
    body = gql(FULL, ref={"system": "zendesk", "id": "999999999"})
    assert body == {"data": {"customer": None}}


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"email": "a@b.example", "id": "c360_x"},
        {"email": "a@b.example", "ref": {"system": "stripe", "id": "cus_1"}},
    ],
)
def test_exactly_one_argument(gql, args):
    body = gql(FULL, **args)
    assert body["data"]["customer"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "exactly one" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "two@@example.com"}, "email"),
        ({"email": "x" * 300 + "@example.com"}, "email"),
        ({"id": "123"}, "id"),
        ({"id": "c360_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "id"),
        ({"ref": {"system": "sap", "id": "1"}}, "system"),
        ({"ref": {"system": "zendesk", "id": "  "}}, "ref.id"),
    ],
)
def test_bad_input_is_a_clear_error(gql, args, fragment):
    body = gql(FULL, **args)
    assert body["data"]["customer"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert fragment in error["message"]
    assert "Traceback" not in str(body)


def test_customers_in_input_order_with_nulls(gql, answer_key):
    people = [p for p in answer_key if p["in_all"]][:3]
    emails = [people[0]["email"], "ghost@nowhere.example", people[1]["email"], people[2]["email"]]
    body = gql("query($e: [String!]) { customers(emails: $e) { email } }", e=emails)
    assert "errors" not in body
    got = [c and c["email"] for c in body["data"]["customers"]]
    assert got == [emails[0], None, emails[2], emails[3]]


@pytest.mark.parametrize(
    ("query", "variables", "fragment"),
    [
        ("{ customers { id } }", {}, "exactly one"),
        ("{ customers(ids: [], emails: []) { id } }", {}, "exactly one"),
        ("{ customers(emails: []) { id } }", {}, "empty"),
        (
            "query($e: [String!]) { customers(emails: $e) { id } }",
            {"e": ["x@y.example"] * 201},
            "at most 200",
        ),
    ],
)
def test_customers_argument_errors(gql, query, variables, fragment):
    body = gql(query, **variables)
    assert body["data"] == {"customers": None}  # the field, not the whole answer
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert fragment in body["errors"][0]["message"]


def _errors_at(body: dict[str, Any]) -> dict[tuple[str | int, ...], dict[str, Any]]:
    return {tuple(e["path"]): e for e in body.get("errors", [])}


def test_a_bad_email_in_the_list_is_that_items_error_only(gql, answer_key):
    first, second = answer_key[0], answer_key[1]
    emails = [first["email"], "not-an-email", second["email"], "ghost@nowhere.example", "a b@c.d"]
    body = gql("query($e: [String!]) { customers(emails: $e) { email name } }", e=emails)
    got = [c and (c["email"], c["name"]) for c in body["data"]["customers"]]
    assert got == [(first["email"], first["name"]), None, (second["email"], second["name"]),
                   None, None]  # fmt: skip
    # The unknown address is null without an error: only the bad ones say why.
    errors = _errors_at(body)
    assert sorted(errors) == [("customers", 1), ("customers", 4)]
    for error in errors.values():
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "emails"}
        assert error["message"] == "email is not a valid address"


def test_a_bad_id_in_the_list_is_that_items_error_only(gql, answer_key):
    by_email = "query($e: String) { customer(email: $e) { id } }"
    ids = [gql(by_email, e=p["email"])["data"]["customer"]["id"] for p in answer_key[:2]]
    given = [ids[0], "123", ids[1], "c360_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    body = gql("query($i: [ID!]) { picked: customers(ids: $i) { id email } }", i=given)
    got = [c and c["id"] for c in body["data"]["picked"]]
    assert got == [ids[0], None, ids[1], None]
    emails = [c["email"] for c in body["data"]["picked"] if c]
    assert emails == [answer_key[0]["email"], answer_key[1]["email"]]
    # Paths name the field as the client asked for it: by its alias.
    errors = _errors_at(body)
    assert sorted(errors) == [("picked", 1), ("picked", 3)]
    assert {e["extensions"]["argument"] for e in errors.values()} == {"ids"}
    assert {e["extensions"]["code"] for e in errors.values()} == {"BAD_USER_INPUT"}


def test_a_list_of_only_bad_items_is_still_a_list(gql):
    body = gql('{ customers(emails: ["bad", "worse"]) { id } }')
    assert body["data"] == {"customers": [None, None]}
    assert sorted(_errors_at(body)) == [("customers", 0), ("customers", 1)]


def test_transport_level_bad_requests_are_4xx_not_500(gateway_url, gql):
    url = f"{gateway_url}/graphql"
    auth = gql.headers
    assert (
        httpx.post(
            url, content=b"{not json", headers={"content-type": "application/json", **auth}
        ).status_code
        == 400
    )
    assert httpx.get(url, params={"query": "{ __typename }"}, headers=auth).status_code in (
        400,
        404,
        405,
    )
    big = httpx.post(url, json={"query": "{ __typename }", "pad": "x" * 200_000}, headers=auth)
    assert big.status_code == 413
    assert big.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


def test_metrics_and_health(gql, gateway_url, answer_key):
    gql(FULL, email=answer_key[0]["email"])
    health = httpx.get(f"{gateway_url}/healthz").json()
    assert health == {
        "status": "ok",
        "connectors": ["mailchimp", "salesforce", "stripe", "zendesk"],
    }
    text = httpx.get(f"{gateway_url}/metrics").text
    assert (
        'c360_upstream_requests_total{connector="salesforce",operation="people_by_email",outcome="ok"}'
        in text
    )
    assert "c360_upstream_request_duration_seconds_bucket" in text
