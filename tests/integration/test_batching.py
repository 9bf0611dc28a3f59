"""N customers cost a bounded number of upstream calls per route, never N × K.

Counted by the sandbox itself (``/_sandbox/stats``), independently of the
gateway. Bounds follow each vendor's batch limit; Mailchimp has no multi-email
read, so its member search is the one documented floor of one call per customer.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.servers import gateway_config, gateway_process

pytestmark = pytest.mark.integration

QUERY = """query($emails: [String!]) { customers(emails: $emails) {
  id name email sources { system id }
  account { id name parent { id name } }
  tickets { id status } subscriptions { id status } invoices { id status }
  marketing { status lists { id } consents { channel status } } } }"""


def _bounds(n: int, emails: int, phones: int) -> dict[str, int]:
    """Calls per route for n customers, identity resolution included: round 1
    by email, round 2 by phone and by explicit CRM links, round 3 by the
    emails and phones of records found by link. ``emails`` and ``phones`` are
    the distinct values the customers' records hold (a team inbox is one more
    address, a switchboard or a conflicting number one more phone); phones
    may be split over rounds 2 and 3, so they may cost one more chunk."""
    dups = 1  # a few duplicate billing customers can add one more chunk
    later = emails - n  # addresses looked up after the first round

    def chunks(per: int) -> int:
        return math.ceil(n / per) + math.ceil(later / per)

    return {
        # SOQL: 100 emails per query.
        "salesforce GET /services/data/{version}/query": chunks(100),
        # SOSL phone search: 100 numbers per search.
        "salesforce GET /services/data/{version}/search": math.ceil(phones / 100) + 1,
        # Multi-id read, 200 ids per call: accounts, then their parents.
        "salesforce GET /services/data/{version}/composite/sobjects/{sobject}": 2
        * math.ceil(n / 200),
        # Search with OR-ed values: 50 emails, 50 phones, 20 requesters (tickets) per search.
        "zendesk GET /api/v2/search.json": chunks(50)
        + math.ceil(phones / 50)
        + 1
        + math.ceil(n / 20),
        # external_ids = CRM ids, 100 per call.
        "zendesk GET /api/v2/users/show_many.json": math.ceil(n / 100),
        # Up to 10 OR-ed clauses per search: emails, phones, CRM links.
        "stripe GET /v1/customers/search": 2 * (chunks(10) + dups) + math.ceil(phones / 10) + 1,
        "stripe GET /v1/invoices/search": math.ceil(n * 1.1 / 10) + dups,
        # The floor: one search per email.
        "mailchimp GET /3.0/search-members": emails,
        "mailchimp GET /3.0/lists": 1,
    }


@pytest.mark.parametrize("n", [1, 10, 50, 200])
def test_calls_per_route_are_bounded(gql, sandbox_url, answer_key, n):
    people = [p for p in answer_key if p["in_all"]][:n]
    emails = [p["email"] for p in people]
    assert len(emails) == n
    # The distinct values the people's records hold: each is looked up once.
    held = [r for p in people for r in p["records"]]
    addresses = len({r["email"] for r in held if r["email"]})
    phones = len({r["phone"] for r in held if r["phone"]})
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    body = gql(QUERY, emails=emails)
    assert "errors" not in body
    assert [c["email"] for c in body["data"]["customers"]] == emails
    routes = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["routes"]
    bounds = _bounds(n, addresses, phones)
    unexpected = set(routes) - set(bounds)
    assert not unexpected, f"routes without a declared bound: {unexpected}"
    for route, calls in routes.items():
        assert calls <= bounds[route], f"{route}: {calls} calls for {n} customers"
    assert routes["mailchimp GET /3.0/search-members"] == addresses
    if n >= 50:
        batched = {r: c for r, c in routes.items() if not r.startswith("mailchimp")}
        assert all(c < n / 2 for c in batched.values()), batched  # never one per customer


def test_same_customer_twice_in_one_query_is_fetched_once(gql, sandbox_url, answer_key):
    email = next(p["email"] for p in answer_key if p["in_all"])
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    body = gql(QUERY, emails=[email, email.upper(), f"  {email} "])
    assert [c["email"] for c in body["data"]["customers"]] == [email] * 3
    routes = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["routes"]
    assert routes["mailchimp GET /3.0/search-members"] == 1
    assert routes["salesforce GET /services/data/{version}/query"] == 1


SINGLE = QUERY.replace("$emails: [String!]", "$email: String").replace(
    "customers(emails: $emails)", "customer(email: $email)"
)


def _calls(sandbox_url: str) -> int:
    routes = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["routes"]
    return sum(routes.values())


def test_concurrent_requests_each_get_only_their_own_customer(gql, sandbox_url, answer_key):
    """Requests in flight together may share upstream calls (their batches are
    merged): each must still get exactly the answer it gets alone."""
    emails = [p["email"] for p in answer_key if p["in_all"]][60:72]
    alone = {}
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    for email in emails:
        alone[email] = gql(SINGLE, email=email)
        assert alone[email]["data"]["customer"]["email"] == email
    calls_alone = _calls(sandbox_url)

    barrier = threading.Barrier(len(emails))

    def ask(email: str) -> dict:
        with httpx.Client(timeout=30) as client:
            # Connected first, so the requests leave together.
            client.get(gql.url.removesuffix("/graphql") + "/healthz")
            barrier.wait(timeout=30)
            response = client.post(
                gql.url,
                json={"query": SINGLE, "variables": {"email": email}},
                headers=gql.headers,
            )
        assert response.status_code == 200
        return response.json()

    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    with ThreadPoolExecutor(len(emails)) as pool:
        together = dict(zip(emails, pool.map(ask, emails), strict=True))
    assert together == alone
    assert _calls(sandbox_url) <= calls_alone


BURST = 8
_RATE_LIMITED = re.compile(
    r'^c360_resilience_events_total\{event="rate_limited",source="(\w+)"\} ([0-9.]+)$', re.M
)
_CALLS = re.compile(
    r'^c360_upstream_requests_total\{connector="(\w+)",operation="\w+",outcome="ok"\} ([0-9.]+)$',
    re.M,
)


@pytest.fixture(scope="module")
def metered_gateway(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config, env = gateway_config(
        sandbox_url, Path(tmp_path_factory.mktemp("metered")),
        resilience={"rate_limit": {"per_second": 200, "burst": BURST}, "merge_max_keys": 0},
        extra={"graphql": {"max_cost": 1_000_000}},
    )  # fmt: skip
    with gateway_process(config, env) as url:
        yield url


def _tally(pattern: re.Pattern[str], text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for source, value in pattern.findall(text):
        out[source] = out.get(source, 0.0) + float(value)
    return out


def test_a_rate_limit_counts_each_vendor_call_of_a_batch(metered_gateway, answer_key):
    """Mailchimp answers one email per search: 30 customers are one batch of
    30 vendor calls, and each of them takes a token of its rate limit."""
    emails = [p["email"] for p in answer_key if p["in_all"]][:30]
    response = httpx.post(
        f"{metered_gateway}/graphql",
        json={"query": QUERY, "variables": {"emails": emails}},
        timeout=60,
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body.get("errors")
    assert [c["email"] for c in body["data"]["customers"]] == emails
    metrics = httpx.get(f"{metered_gateway}/metrics").text
    calls = _tally(_CALLS, metrics)
    assert calls["mailchimp"] > BURST  # one batch, many vendor calls
    assert "mailchimp" in _tally(_RATE_LIMITED, metrics)
