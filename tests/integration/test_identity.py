"""Identity resolution and the golden record, checked against the sandbox's answer key."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration

GOLDEN = """
query($email: String, $id: ID, $ref: SystemRefInput) {
  customer(email: $email, id: $id, ref: $ref) {
    id name firstName lastName email phone title emails phones
    sources { system id }
    provenance { field system recordId updatedAt rule }
    dataQuality {
      duplicates { system recordIds }
      conflicts { field values { system recordId value } }
      missingIn score unreachable
      possibleMatches { system recordId matchedOn reason }
    }
  }
}"""

BATCH = """query($emails: [String!]) { customers(emails: $emails) {
  email sources { system id }
  dataQuality {
    duplicates { system recordIds } conflicts { field values { system value } } missingIn
  }
} }"""


def _sources(customer):
    out = {}
    for s in customer["sources"]:
        out.setdefault(s["system"], set()).add(s["id"])
    return out


def _kinds(person, kind):
    """Systems named by the person's seeded anomalies of one kind."""
    return {a.rsplit(":", 1)[1] for a in person["anomalies"] if a.rsplit(":", 1)[0] == kind}


def _people(answer_key, kind):
    return [p for p in answer_key if any(a.rsplit(":", 1)[0] == kind for a in p["anomalies"])]


def test_same_person_from_every_entry_point_gives_one_golden_record(gql, answer_key):
    picks = [p for p in answer_key if p["in_all"]][:2]
    for kind in ("placeholder:email", "conflict:phone", "shared:phone", "shared:email",
                 "recycled:phone", "reassigned:phone"):  # fmt: skip
        picks += _people(answer_key, kind)[:1]
    for person in picks:
        baseline = gql(GOLDEN, email=person["email"])["data"]["customer"]
        assert baseline["email"] == person["email"]
        entries = [{"id": baseline["id"]}] + [
            {"ref": {"system": system, "id": rid}}
            for system, ids in person["systems"].items()
            for rid in ids
        ]
        for entry in entries:
            body = gql(GOLDEN, **entry)
            assert "errors" not in body, (entry, body)
            assert body["data"]["customer"] == baseline, entry


def test_every_seeded_anomaly_is_reported_and_none_is_invented(gql, answer_key):
    emails = [p["email"] for p in answer_key]
    found = []
    for i in range(0, len(emails), 100):
        body = gql(BATCH, emails=emails[i : i + 100])
        assert "errors" not in body
        found += body["data"]["customers"]
    for person, customer in zip(answer_key, found, strict=True):
        quality = customer["dataQuality"]
        assert {d["system"] for d in quality["duplicates"]} == _kinds(person, "duplicate"), person
        conflict_fields = {c["field"] for c in quality["conflicts"]}
        # Phones conflict where the person's records hold several numbers: a
        # conflicting one, a switchboard besides their own, a recycled one.
        phones = {r["phone"] for r in person["records"] if r["phone"]}
        assert conflict_fields == ({"phone"} if len(phones) > 1 else set()), person
        if _kinds(person, "conflict:phone"):
            assert len(phones) > 1
        assert set(quality["missingIn"]) == _kinds(person, "missing"), person
        # Every linked record is the person's own, and none is left out.
        assert _sources(customer) == {s: set(ids) for s, ids in person["systems"].items() if ids}


def test_placeholder_values_never_link_people(gql, answer_key):
    assert gql(GOLDEN, email="test@example.com") == {"data": {"customer": None}}
    for person in _people(answer_key, "placeholder:phone"):
        customer = gql(GOLDEN, email=person["email"])["data"]["customer"]
        assert customer["phones"] == [person["phone"]] or customer["phones"] == []
        assert not customer["dataQuality"]["conflicts"]
    linked_via_metadata = _people(answer_key, "placeholder:email")
    assert linked_via_metadata, "the world seeds placeholder billing emails"
    for person in linked_via_metadata:
        customer = gql(GOLDEN, email=person["email"])["data"]["customer"]
        assert _sources(customer)["stripe"] == set(person["systems"]["stripe"])
        assert "test@example.com" not in customer["emails"]


def test_provenance_names_the_rule_and_the_winning_record(gql, answer_key):
    person = next(p for p in answer_key if p["in_all"] and not p["anomalies"])
    customer = gql(GOLDEN, email=person["email"])["data"]["customer"]
    by_field = {p["field"]: p for p in customer["provenance"]}
    assert by_field["name"]["system"] == "salesforce"
    assert by_field["name"]["recordId"] == person["systems"]["salesforce"][0]
    assert by_field["name"]["rule"] == "source_priority"
    assert by_field["email"]["system"] == "salesforce"
    assert customer["dataQuality"]["score"] == 1.0


def test_conflicting_phone_lists_both_values(gql, answer_key):
    person = _people(answer_key, "conflict:phone")[0]
    customer = gql(GOLDEN, email=person["email"])["data"]["customer"]
    [conflict] = customer["dataQuality"]["conflicts"]
    systems = {v["system"] for v in conflict["values"]}
    assert {"salesforce", "zendesk"} <= systems
    assert len(customer["phones"]) >= 2
    assert customer["dataQuality"]["score"] < 1.0


def test_fifty_customers_with_identity_resolution_stay_batched(gql, sandbox_url, answer_key):
    emails = [p["email"] for p in answer_key if p["in_all"]][:50]
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    body = gql(BATCH, emails=emails)
    assert "errors" not in body
    routes = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["routes"]
    for route, calls in routes.items():
        if route.startswith("mailchimp"):
            assert calls <= 50 + 1, route  # the documented floor: no multi-email read
        else:
            assert calls <= 20, (route, calls)


AMBIGUOUS = """query($emails: [String!]) { customers(emails: $emails) { email name } }"""


def test_a_shared_inbox_is_no_ones_customer_and_names_its_candidates(gql, answer_key):
    payers = _people(answer_key, "shared:email")
    assert payers, "the world seeds team billing inboxes"
    person = payers[0]
    [inbox] = {r["email"] for r in person["records"] if r["email"] != person["email"]}
    holders = [p for p in payers if any(r["email"] == inbox for r in p["records"])]
    expected = sorted(
        ({"system": r["system"], "id": r["id"]}
         for p in holders for r in p["records"] if r["email"] == inbox),
        key=lambda c: c["id"],
    )  # fmt: skip
    assert len(holders) == 2
    body = gql(AMBIGUOUS, emails=[inbox, person["email"]])
    assert body["data"]["customers"][0] is None
    assert body["data"]["customers"][1] == {"email": person["email"], "name": person["name"]}
    [error] = body["errors"]
    assert error["path"] == ["customers", 0]
    assert error["extensions"]["code"] == "AMBIGUOUS_CUSTOMER"
    assert sorted(error["extensions"]["candidates"], key=lambda c: c["id"]) == expected
    # No one's address or name in what the caller is told.
    text = str(error)
    for value in (inbox, *(p["email"] for p in holders), *(p["name"] for p in holders)):
        assert value not in text
    # Each candidate, asked by ref, is one person: its own.
    for candidate, owner in zip(expected, sorted(holders, key=_stripe_ids), strict=True):
        customer = gql(GOLDEN, ref=candidate)["data"]["customer"]
        assert (customer["email"], customer["name"]) == (owner["email"], owner["name"])


def _stripe_ids(person):
    return person["systems"]["stripe"]


def test_possible_matches_say_which_key_found_them_and_why(gql, answer_key):
    switchboard = _people(answer_key, "shared:phone")[0]
    customer = gql(GOLDEN, email=switchboard["email"])["data"]["customer"]
    matches = customer["dataQuality"]["possibleMatches"]
    assert matches
    # Colleagues' CRM contacts, found by the switchboard number, carry their own address.
    assert {(m["system"], m["matchedOn"], m["reason"]) for m in matches} == {
        ("salesforce", "phone", "email differs")
    }
