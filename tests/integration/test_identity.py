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
      missingIn score
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
    picks += (
        _people(answer_key, "placeholder:email")[:1] + _people(answer_key, "conflict:phone")[:1]
    )
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
        assert conflict_fields == ({"phone"} if _kinds(person, "conflict:phone") else set()), person
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
