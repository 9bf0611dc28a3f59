"""A vendor answering 429 with Retry-After, seen from a client over HTTP.

The gateway (a real server on 127.0.0.1) reports the vendor's limit as
UPSTREAM_RATE_LIMITED with the time left, keeps the rest of the customer,
stops calling the vendor until its Retry-After has passed (counted by the
sandbox's ``/_sandbox/stats``), answers from stale records when it has them,
and logs one line per failure a request saw. Each test gets a gateway of its
own: the cooldown a test starts must not leak into the next one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.sdk.sandbox import SANDBOX_CREDENTIALS
from connectors.sdk.testing.server import serve_in_thread
from gateway.app import create_app
from gateway.config import load_settings
from tests.servers import gateway_config, gateway_process, sandbox_process

pytestmark = pytest.mark.integration

# The README's query.
QUERY = """query Customer360($email: String!) {
  customer(email: $email) {
    id name email phone
    sources { system id url updatedAt }
    account { id name industry parent { id name } }
    tickets { id subject status priority createdAt updatedAt }
    subscriptions { id status plan amount currency interval currentPeriodEnd }
    invoices { id status amountDue amountPaid currency createdAt }
    marketing { status lists { id name status } consents { channel status updatedAt } }
  }
}"""
FIELDS_OF = {
    "stripe": ("subscriptions", "invoices"),
    "zendesk": ("tickets",),
}
OTHERS = ("account", "tickets", "subscriptions", "invoices", "marketing")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with sandbox_process(customers=120, seed=2) as url:
        yield url


@pytest.fixture(scope="module")
def people(sandbox: str) -> list[dict[str, Any]]:
    everyone = httpx.get(f"{sandbox}/_sandbox/customers", params={"limit": 120}).json()
    return [
        p for p in everyone["customers"] if p["in_all"] and p["organization"] and not p["anomalies"]
    ]


@pytest.fixture
def faults(sandbox: str) -> Iterator[Any]:
    def set_faults(table: dict[str, Any]) -> None:
        assert httpx.post(f"{sandbox}/_sandbox/faults", json=table).status_code == 200
        assert httpx.post(f"{sandbox}/_sandbox/reset-stats").status_code == 200

    yield set_faults
    set_faults({})


def vendor_calls(sandbox: str, vendor: str) -> int:
    calls: int = httpx.get(f"{sandbox}/_sandbox/stats").json()["by_vendor"].get(vendor, 0)
    return calls


def ask(gateway: str, email: str, **headers: str) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway}/graphql",
        json={"query": QUERY, "variables": {"email": email}},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def errors_by_field(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["path"][-1]: e["extensions"] for e in body.get("errors", [])}


def gateway_for(sandbox: str, directory: Path, **options: Any) -> Any:
    # The vendors' default resilience (attempts, retry_after_max 5 s, ...) and
    # the default 8 s request deadline; no client-side rate limit, which would
    # meter the test rather than the vendor.
    config, env = gateway_config(sandbox, directory, resilience={"rate_limit": False}, **options)
    return gateway_process(config, env)


@pytest.mark.parametrize("vendor", ["stripe", "zendesk"])
def test_a_persistent_429_is_rate_limited_and_the_rest_of_the_customer_arrives(
    sandbox, people, faults, tmp_path, vendor
):
    # The case: every call answered 429 with Retry-After: 2, which
    # fits both the 5 s retry_after_max and the 8 s deadline.
    with gateway_for(sandbox, tmp_path) as gateway:
        person = people[0]
        faults({vendor: {"status": 429, "retry_after": 2}})
        body = ask(gateway, person["email"])
        calls = vendor_calls(sandbox, vendor)
    customer = body["data"]["customer"]
    assert customer["email"] == person["email"] and customer["name"]
    errors = errors_by_field(body)
    assert set(errors) == set(FIELDS_OF[vendor]), body["errors"]
    for field in FIELDS_OF[vendor]:
        assert customer[field] is None
        error = errors[field]
        assert (error["code"], error["source"], error["retryable"]) == (
            "UPSTREAM_RATE_LIMITED",
            vendor,
            True,
        )
        assert 0 < error["retryAfter"] <= 2
    for field in set(OTHERS) - set(FIELDS_OF[vendor]):
        assert customer[field] is not None, field
    # The call that met the 429 and one more after waiting it out: the vendor
    # still refusing, nobody else in the query calls it again in the window.
    assert 1 <= calls <= 2


def test_calls_during_the_cooldown_do_not_reach_the_vendor(sandbox, people, faults, tmp_path):
    with gateway_for(sandbox, tmp_path) as gateway:
        # 30 s is past retry_after_max: nobody waits, everybody hears how long.
        faults({"stripe": {"status": 429, "retry_after": 30}})
        bodies = [ask(gateway, person["email"]) for person in people[:5]]
        calls = vendor_calls(sandbox, "stripe")
    assert calls == 1
    waits = []
    for body in bodies:
        errors = errors_by_field(body)
        assert {errors[f]["code"] for f in FIELDS_OF["stripe"]} == {"UPSTREAM_RATE_LIMITED"}
        assert body["data"]["customer"]["tickets"] is not None
        waits.append(errors["subscriptions"]["retryAfter"])
    assert waits[0] <= 30
    assert all(0 < wait < 30 for wait in waits[1:])  # what is left of the vendor's 30 s
    assert waits == sorted(waits, reverse=True)


def test_stale_records_answer_while_the_vendor_asks_to_wait(sandbox, people, faults, tmp_path):
    # Every record is past its hard TTL at once and kept for stale-if-error.
    cache = {"soft_ttl": 0.001, "hard_ttl": 0.001, "max_stale": 300}
    with gateway_for(sandbox, tmp_path, cache=cache) as gateway:
        email = people[1]["email"]
        fresh = ask(gateway, email)
        assert "errors" not in fresh
        faults({"stripe": {"status": 429, "retry_after": 30}})
        answers = [ask(gateway, email) for _ in range(3)]
        calls = vendor_calls(sandbox, "stripe")
    for body in answers:
        assert "errors" not in body, body["errors"]
        assert body["data"] == fresh["data"]
        notes = [n for n in body["extensions"]["stale"] if n["source"] == "stripe"]
        assert notes and all(n["stale"] is True for n in notes)
    assert calls == 1  # the call that met the 429; the rest waited for nobody


# --- one log line per upstream failure ------------------------------------------


@pytest.fixture
def in_process_gateway(sandbox, tmp_path, monkeypatch) -> Iterator[str]:
    """The gateway app served from this process, so caplog sees its log records."""
    config, env = gateway_config(sandbox, tmp_path, resilience={"rate_limit": False})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with serve_in_thread(create_app(load_settings(config))) as url:
        yield url


LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def test_each_failure_is_one_log_line_with_the_request_id_and_nothing_personal(
    sandbox, people, faults, in_process_gateway, caplog
):
    caplog.set_level(logging.WARNING, logger="c360.upstream")
    person = people[2]
    faults({"stripe": {"status": 429, "retry_after": 30}})
    body = ask(in_process_gateway, person["email"], **{"x-request-id": "it-rate-limit-0001"})
    assert errors_by_field(body)["subscriptions"]["code"] == "UPSTREAM_RATE_LIMITED"
    lines = [r for r in caplog.records if r.name == "c360.upstream"]
    assert lines
    operations = set()
    for record in lines:
        message = record.getMessage()
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert message.startswith("upstream_failure ")
        fields = dict(LOGFMT.findall(message))
        # Exactly these fields, and the same on the record for structured handlers.
        assert set(fields) == {"connector", "operation", "code", "request_id", "retry_after"}
        assert fields["connector"] == record.connector == "stripe"
        assert fields["code"] == record.code == "UPSTREAM_RATE_LIMITED"
        assert fields["request_id"] == record.request_id == "it-rate-limit-0001"
        assert 0 < float(fields["retry_after"]) == record.retry_after <= 30
        assert fields["operation"] == record.operation
        operations.add(record.operation)
        # Nothing personal, secret or from the vendor's body.
        for leak in (
            person["email"],
            "@",
            "http",
            "?",
            "Too many requests",
            *SANDBOX_CREDENTIALS["stripe"].values(),
        ):
            assert leak not in message, leak
    assert "customers_by_email" in operations
