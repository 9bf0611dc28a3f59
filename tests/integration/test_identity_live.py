"""Identity against a changing world: records edited live, systems failing.

A sandbox and a gateway of this module's own (mutations and faults would
leak into the session's), talking HTTP on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import gateway_config, gateway_process, sandbox_process

pytestmark = pytest.mark.integration

QUERY = """query($email: String) { customer(email: $email) {
  id name email title sources { system id }
  dataQuality {
    missingIn score unreachable
    possibleMatches { system recordId matchedOn reason }
  }
} }"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with sandbox_process(customers=80, seed=5) as sandbox:
        config, env = gateway_config(
            sandbox, tmp_path_factory.mktemp("identity-live"),
            # One try, no breaker: a faulted route fails each time, alone.
            resilience={"rate_limit": False, "attempts": 1, "breaker": {"failures": 1000}},
        )  # fmt: skip
        with gateway_process(config, env) as gateway:
            yield sandbox, gateway


@pytest.fixture(scope="module")
def clean(live: tuple[str, str]) -> list[dict[str, Any]]:
    """People in every system with nothing odd about their data."""
    body = httpx.get(f"{live[0]}/_sandbox/customers", params={"limit": 100}).json()
    return [p for p in body["customers"] if p["in_all"] and not p["anomalies"]]


def _ask(gateway: str, email: str) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway}/graphql", json={"query": QUERY, "variables": {"email": email}}, timeout=30
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _sources(customer: dict[str, Any]) -> set[tuple[str, str]]:
    return {(s["system"], s["id"]) for s in customer["sources"]}


def _own(person: dict[str, Any]) -> set[tuple[str, str]]:
    return {(system, rid) for system, ids in person["systems"].items() for rid in ids}


def test_defect_1_another_persons_record_given_my_phone_stays_theirs(live, clean):
    sandbox, gateway = live
    ann, bob = clean[0], clean[1]
    [ann_billing] = ann["systems"]["stripe"]
    before = _ask(gateway, bob["email"])["data"]["customer"]
    # Ann's Stripe customer is given Bob's phone.
    change = {"vendor": "stripe", "kind": "customer", "id": ann_billing,
              "changes": {"phone": bob["phone"]}}  # fmt: skip
    assert httpx.post(f"{sandbox}/_sandbox/mutate", json=change).status_code == 200
    body = _ask(gateway, bob["email"])
    assert "errors" not in body, body["errors"]
    customer = body["data"]["customer"]
    assert (customer["name"], customer["email"]) == (bob["name"], bob["email"])
    assert customer["id"] == before["id"]
    assert _sources(customer) == _own(bob)
    [match] = customer["dataQuality"]["possibleMatches"]
    assert (match["system"], match["recordId"], match["matchedOn"]) == (
        "stripe", ann_billing, "phone",
    )  # fmt: skip
    assert match["reason"] in {"email differs", "link differs"}
    # And Ann is still Ann, her billing record hers.
    customer = _ask(gateway, ann["email"])["data"]["customer"]
    assert (customer["name"], customer["email"]) == (ann["name"], ann["email"])
    assert ("stripe", ann_billing) in _sources(customer)


@pytest.fixture
def faults(live: tuple[str, str]) -> Iterator[Any]:
    sandbox = live[0]

    def set_faults(table: dict[str, Any]) -> None:
        assert httpx.post(f"{sandbox}/_sandbox/faults", json=table).status_code == 200

    yield set_faults
    set_faults({})


def test_a_failing_system_is_unreachable_not_missing_and_the_score_is_not_claimed(
    live, clean, faults
):
    person = clean[2]
    faults({"salesforce": {"status": 503}})
    customer = _ask(live[1], person["email"])["data"]["customer"]
    assert customer["email"] == person["email"]
    assert "salesforce" not in {s["system"] for s in customer["sources"]}
    quality = customer["dataQuality"]
    assert quality["unreachable"] == ["salesforce"]
    assert quality["missingIn"] == []
    assert quality["score"] is None


def test_a_system_is_unreachable_when_any_of_its_lookups_failed(live, clean, faults):
    person = clean[3]
    # Salesforce answers lookups by email, fails its phone search (SOSL).
    faults({"salesforce": {"route": "/services/data/{version}/search", "status": 503}})
    customer = _ask(live[1], person["email"])["data"]["customer"]
    assert _sources(customer) == _own(person)  # its contact was found by email
    assert customer["dataQuality"]["unreachable"] == ["salesforce"]
    assert customer["dataQuality"]["score"] is None
    faults({})
    customer = _ask(live[1], person["email"])["data"]["customer"]
    assert customer["dataQuality"]["unreachable"] == []
    assert customer["dataQuality"]["score"] == 1.0
