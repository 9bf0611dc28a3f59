"""Identity never crosses people: the whole seeded world, from every entry point.

The session sandbox's world (300 people) holds switchboard numbers, team
billing inboxes and recycled numbers, marked in its answer key. For every
person and every way in -- their email, each of their records by ``ref``,
and the customer id the gateway gave back -- the golden record is that
person's own: their email and name, exactly their records, one id that no
one else has. What a shared value found of anyone else is a possible match,
never merged. Queries are batched (``customers(emails:)``, 15 aliased
``customer(ref:)`` per request) so the walk stays a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FIELDS = """id name email sources { system id }
  dataQuality { possibleMatches { system recordId matchedOn reason } unreachable score }"""
BY_EMAILS = f"query($emails: [String!]) {{ customers(emails: $emails) {{ {FIELDS} }} }}"
BY_IDS = f"query($ids: [ID!]) {{ customers(ids: $ids) {{ {FIELDS} }} }}"
ALIASES = 15  # the hardened endpoint's limit
REASONS = {"email differs", "link differs", "name differs", "shared email", "shared phone"}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _by_refs(gql, refs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in _chunks(refs, ALIASES):
        params = ", ".join(f"$s{i}: String!, $r{i}: ID!" for i in range(len(chunk)))
        fields = " ".join(
            f"c{i}: customer(ref: {{system: $s{i}, id: $r{i}}}) {{ {FIELDS} }}"
            for i in range(len(chunk))
        )
        variables = {
            k: v for i, (s, r) in enumerate(chunk) for k, v in ((f"s{i}", s), (f"r{i}", r))
        }
        body = gql(f"query({params}) {{ {fields} }}", **variables)
        assert "errors" not in body, body["errors"][:3]
        out += [body["data"][f"c{i}"] for i in range(len(chunk))]
    return out


def _own(person: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["system"], r["id"]) for r in person["records"]}


def _sources(customer: dict[str, Any]) -> set[tuple[str, str]]:
    return {(s["system"], s["id"]) for s in customer["sources"]}


@pytest.fixture(scope="module")
def owners(answer_key: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """Whose each record is: (system, record id) -> (the person's email, the record)."""
    out = {}
    for person in answer_key:
        for record in person["records"]:
            key = (record["system"], record["id"])
            assert key not in out, f"{key} belongs to two people in the answer key"
            out[key] = (person["email"], record)
    return out


@pytest.fixture(scope="module")
def by_email(gql, answer_key: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every person as the gateway answers for their email."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks([p["email"] for p in answer_key], 100):
        body = gql(BY_EMAILS, emails=chunk)
        assert "errors" not in body, body["errors"][:3]
        found += body["data"]["customers"]
    return {p["email"]: c for p, c in zip(answer_key, found, strict=True)}


def test_the_world_seeds_every_kind_of_shared_value_several_times(answer_key):
    kinds = [a.rsplit(":", 1)[0] for p in answer_key for a in p["anomalies"]]
    for kind in ("shared:phone", "shared:email", "recycled:phone", "reassigned:phone"):
        assert kinds.count(kind) >= 3, kind


def test_every_person_by_email_is_exactly_themselves(answer_key, by_email):
    ids: dict[str, str] = {}
    for person in answer_key:
        customer = by_email[person["email"]]
        assert customer is not None, person["email"]
        assert (customer["email"], customer["name"]) == (person["email"], person["name"])
        assert _sources(customer) == _own(person), person["email"]
        assert customer["dataQuality"]["unreachable"] == []
        assert customer["id"] not in ids, (person["email"], ids.get(customer["id"]))
        ids[customer["id"]] = person["email"]


def test_what_a_shared_value_found_of_others_is_reported_not_merged(answer_key, by_email, owners):
    """Possible matches are exactly the records of other people holding one
    of the person's emails or phones, each with the value kind that found it."""
    holders: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for person in answer_key:
        for r in person["records"]:
            for kind in ("email", "phone"):
                if r[kind]:
                    holders.setdefault((kind, r[kind]), set()).add((r["system"], r["id"]))
    reported = 0
    for person in answer_key:
        values = {(kind, r[kind]) for r in person["records"] for kind in ("email", "phone")}
        expected = {
            record
            for value in values
            for record in holders.get(value, ())
            if owners[record][0] != person["email"]
        }
        matches = by_email[person["email"]]["dataQuality"]["possibleMatches"]
        assert {(m["system"], m["recordId"]) for m in matches} == expected, person["email"]
        for m in matches:
            assert m["reason"] in REASONS
            # Found by a value of that kind that the person's records hold too.
            _, record = owners[(m["system"], m["recordId"])]
            assert (m["matchedOn"], record[m["matchedOn"]]) in values
        marked = any(a.split(":")[0] in ("shared", "recycled", "reassigned")
                     for a in person["anomalies"])  # fmt: skip
        assert bool(matches) == marked, person["email"]
        reported += len(matches)
    assert reported >= 12


def test_every_record_of_every_person_leads_to_the_same_customer(gql, answer_key, by_email):
    refs = [(r["system"], r["id"]) for p in answer_key for r in p["records"]]
    expected = [by_email[p["email"]] for p in answer_key for _ in p["records"]]
    found = _by_refs(gql, refs)
    for ref, customer, wanted in zip(refs, found, expected, strict=True):
        # The same id and the same golden record, possible matches included.
        assert customer == wanted, ref


def test_every_customer_id_leads_back_to_its_person(gql, answer_key, by_email):
    ids = [by_email[p["email"]]["id"] for p in answer_key]
    found: list[dict[str, Any]] = []
    for chunk in _chunks(ids, 100):
        body = gql(BY_IDS, ids=chunk)
        assert "errors" not in body, body["errors"][:3]
        found += body["data"]["customers"]
    for person, customer in zip(answer_key, found, strict=True):
        assert customer == by_email[person["email"]], person["email"]
