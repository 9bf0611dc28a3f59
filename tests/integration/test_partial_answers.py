"""A source that could not be reached is always visible in the answer.

Identity resolution asks every system about a customer: when one fails, the
customer comes back without that system's records even if no field of that
system was asked for. The answer must say so -- one error per failing source
at the customer's path, ``dataQuality.unreachable`` naming it, and a data
quality that does not claim to have checked what it could not -- and the log
gets one line per failure, without PII.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import gateway_config, gateway_process, sandbox_process

pytestmark = pytest.mark.integration

QUERY = """query($e: String!) { customer(email: $e) {
  id name title sources { system } dataQuality { missingIn unreachable score } } }"""
LIST = """query($l: [String!]) { customers(emails: $l) { id sources { system } } }"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with sandbox_process(customers=60, seed=2) as sandbox:
        config, env = gateway_config(
            sandbox, tmp_path_factory.mktemp("partial"),
            extra={"gateway": {"request_deadline": 3.0}},
            resilience={"timeout": 1, "attempts": 1, "rate_limit": False,
                        "breaker": {"failures": 1000, "open_for": 1}},
        )  # fmt: skip
        with gateway_process(config, env) as gateway:
            yield sandbox, gateway


@pytest.fixture(scope="module")
def people(servers: tuple[str, str]) -> list[dict[str, Any]]:
    sandbox, _ = servers
    found = httpx.get(f"{sandbox}/_sandbox/customers", params={"limit": 100}).json()
    return [p for p in found["customers"] if p["in_all"] and not p["anomalies"]]


def _ask(gateway: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def faults(servers: tuple[str, str]) -> Iterator[Any]:
    sandbox, _ = servers

    def set_faults(spec: dict[str, Any]) -> None:
        assert httpx.post(f"{sandbox}/_sandbox/faults", json=spec).status_code == 200

    yield set_faults
    set_faults({})


def _by_source(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    errors = body.get("errors") or []
    sources = [e["extensions"].get("source") for e in errors]
    assert len(sources) == len(set(sources)), f"one error per failing source: {errors}"
    return {e["extensions"]["source"]: e for e in errors}


def test_a_failed_source_is_an_error_even_when_none_of_its_fields_were_asked(
    servers, people, faults
):
    _, gateway = servers
    person = people[0]
    clean = _ask(gateway, QUERY, e=person["email"])["data"]["customer"]
    assert clean["dataQuality"] == {"missingIn": [], "unreachable": [], "score": 1.0}
    faults({"salesforce": {"status": 503}})
    body = _ask(gateway, QUERY, e=person["email"])
    customer = body["data"]["customer"]
    assert customer is not None and customer["name"]  # the rest still arrives
    errors = _by_source(body)
    assert set(errors) == {"salesforce"}
    error = errors["salesforce"]
    assert error["path"] == ["customer"]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert error["extensions"]["retryable"] is True
    assert "salesforce" not in {s["system"] for s in customer["sources"]}
    quality = customer["dataQuality"]
    assert quality["unreachable"] == ["salesforce"]
    assert "salesforce" not in quality["missingIn"]  # unknown, not missing
    assert quality["score"] is None  # nothing claims a completeness it did not check


def test_every_failing_source_has_its_own_error(servers, people, faults):
    _, gateway = servers
    faults({"salesforce": {"status": 503}, "stripe": {"status": 500}})
    body = _ask(gateway, QUERY, e=people[1]["email"])
    assert set(_by_source(body)) == {"salesforce", "stripe"}
    assert body["data"]["customer"]["dataQuality"]["unreachable"] == ["salesforce", "stripe"]


def test_a_customer_nobody_could_be_asked_about_is_null_with_every_reason(servers, people, faults):
    _, gateway = servers
    faults({v: {"status": 503} for v in ("salesforce", "zendesk", "stripe", "mailchimp")})
    body = _ask(gateway, QUERY, e=people[2]["email"])
    assert body["data"] == {"customer": None}
    errors = _by_source(body)
    assert set(errors) == {"salesforce", "zendesk", "stripe", "mailchimp"}
    assert all(e["path"] == ["customer"] for e in errors.values())


def test_errors_of_a_list_point_at_each_item(servers, people, faults):
    _, gateway = servers
    faults({"zendesk": {"status": 503}})
    emails = [p["email"] for p in people[:3]]
    body = _ask(gateway, LIST, l=emails)
    paths = sorted(e["path"] for e in body["errors"])
    assert paths == [["customers", i] for i in range(3)]
    assert all(e["extensions"]["source"] == "zendesk" for e in body["errors"])
    assert all(c is not None for c in body["data"]["customers"])
