"""The permission matrix: every built-in role × every guarded field, over real tokens.

A gateway built in-process over the shared sandbox validates tokens from the
dev issuer, so each request runs as a real principal of one role, with or
without MFA. The expected access below is written out from the built-in
policy by hand, so the test checks the policy rather than restating it. The
sandbox counts upstream requests on its side: a forbidden subtree must cost
none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from connectors.sdk.testing.server import serve_in_thread
from gateway.app import create_app
from gateway.auth import AuthSettings
from gateway.demo import sandbox_settings
from gateway.issuer import DevIssuer
from gateway.policy import PiiKind, mask

pytestmark = pytest.mark.integration

ROLES = ("support_agent", "account_manager", "marketing", "billing_admin", "integration", "admin")

# PII treatment per role: (ordinary PII, sensitive without MFA, sensitive with MFA).
PII = {
    "support_agent": ("full", "masked", "masked"),
    "account_manager": ("full", "masked", "masked"),
    "marketing": ("masked", "masked", "masked"),
    "billing_admin": ("full", "masked", "full"),
    "integration": ("hidden", "hidden", "hidden"),
    "admin": ("full", "masked", "full"),
}
# Subtrees each role may not read.
FORBIDDEN = {
    "support_agent": {"subscriptions", "invoices"},
    "account_manager": {"marketing"},
    "marketing": {"tickets", "subscriptions", "invoices"},
    "billing_admin": {"tickets", "marketing"},
    "integration": set(),
    "admin": set(),
}
SCOPE = {
    "account": "crm:read",
    "tickets": "tickets:read",
    "subscriptions": "billing:read",
    "invoices": "billing:read",
    "marketing": "marketing:read",
}
SUBTREES = {
    "account": "account { id name }",
    "tickets": "tickets { id status }",
    "subscriptions": "subscriptions { id status }",
    "invoices": "invoices { id amountDue }",
    "marketing": "marketing { status activity { kind } }",
}
# Customer PII fields: (field, kind, sensitive).
PII_FIELDS = [
    ("name", PiiKind.NAME, False),
    ("firstName", PiiKind.NAME, False),
    ("lastName", PiiKind.NAME, False),
    ("email", PiiKind.EMAIL, False),
    ("emails", PiiKind.EMAIL, False),
    ("phone", PiiKind.PHONE, True),
    ("phones", PiiKind.PHONE, True),
]
# Only these routes serve one subtree alone: their count must be zero when it is forbidden.
OWN_ROUTE = {
    "invoices": "stripe GET /v1/invoices/search",
    "marketing": "mailchimp GET /3.0/lists/{list_id}/members/{subscriber_hash}/activity-feed",
}


def query(subtrees: set[str]) -> str:
    selected = " ".join(SUBTREES[s] for s in SUBTREES if s in subtrees)
    return (
        "query($emails: [String!]) { customers(emails: $emails) {"
        " id title name firstName lastName email phone emails phones"
        " dataQuality { conflicts { field values { system value } } }"
        f" {selected} }} }}"
    )


FULL = query(set(SUBTREES))


class Gateway:
    def __init__(self, url: str, issuer: DevIssuer) -> None:
        self.url = f"{url}/graphql"
        self.issuer = issuer
        self.tokens: dict[tuple[str, bool], str] = {}

    def ask(self, role: str, mfa: bool, document: str, emails: list[str]) -> dict[str, Any]:
        token = self.tokens.get((role, mfa))
        if token is None:
            token = self.tokens[role, mfa] = self.issuer.mint_token(role, mfa=mfa)
        response = httpx.post(
            self.url,
            json={"query": document, "variables": {"emails": emails}},
            headers={"authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def gateways(
    sandbox_url: str, issuer: DevIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    """(without cache, with the in-memory cache), both validating dev-issuer tokens."""
    base = sandbox_settings(sandbox_url, graphiql=False)
    audit = {**base.raw["audit"], "path": str(tmp_path_factory.mktemp("audit") / "audit.jsonl")}
    auth = AuthSettings(issuer=str(issuer.issuer_url), audience=("c360",))
    uncached = create_app(
        replace(base, raw={"audit": audit, "cache": {"enabled": False}}), auth=auth
    )
    cached = create_app(replace(base, raw={"audit": audit}), auth=auth)
    with serve_in_thread(uncached) as plain_url, serve_in_thread(cached) as cached_url:
        yield Gateway(plain_url, issuer), Gateway(cached_url, issuer)


@pytest.fixture(scope="module")
def emails(answer_key: list[dict[str, Any]]) -> list[str]:
    """A clean customer with tickets and an account, and one with a phone conflict."""
    clean = next(
        p for p in answer_key
        if p["in_all"] and p["counts"]["tickets"] and p["counts"]["invoices"]
        and p["counts"]["subscriptions"]
        and p["organization"] and not p["anomalies"]
    )  # fmt: skip
    conflict = next(
        p for p in answer_key if any(a.startswith("conflict:phone") for a in p["anomalies"])
    )
    return [clean["email"], conflict["email"]]


@pytest.fixture(scope="module")
def reference(gateways: tuple[Gateway, Gateway], emails: list[str]) -> list[dict[str, Any]]:
    """Everything in full: admin with MFA."""
    body = gateways[0].ask("admin", True, FULL, emails)
    assert "errors" not in body, body["errors"]
    customers: list[dict[str, Any]] = body["data"]["customers"]
    # The matrix below only means something if every guarded field has data.
    clean, conflict = customers
    assert clean["tickets"] and clean["invoices"] and clean["subscriptions"]
    assert clean["account"] and clean["marketing"]["activity"]
    assert clean["email"] and clean["phone"] and clean["name"]
    assert conflict["dataQuality"]["conflicts"]
    return customers


def expected(treatment: str, kind: PiiKind, value: Any) -> Any:
    if treatment == "full":
        return value
    if treatment == "hidden":
        return [] if isinstance(value, list) else None
    if isinstance(value, list):
        return [mask(kind, v) for v in value]
    return None if value is None else mask(kind, value)


def check_matrix(
    role: str, mfa: bool, body: dict[str, Any], reference: list[dict[str, Any]]
) -> None:
    ordinary, sensitive = PII[role][0], PII[role][2 if mfa else 1]
    customers = body["data"]["customers"]
    assert len(customers) == len(reference)
    for got, full in zip(customers, reference, strict=True):
        assert (got["id"], got["title"]) == (full["id"], full["title"])
        for field, kind, is_sensitive in PII_FIELDS:
            treatment = sensitive if is_sensitive else ordinary
            assert got[field] == expected(treatment, kind, full[field]), (field, treatment)
            if treatment == "masked" and full[field]:
                assert got[field] != full[field] and "***" in str(got[field]), field
        for conflict, full_conflict in zip(
            got["dataQuality"]["conflicts"], full["dataQuality"]["conflicts"], strict=True
        ):
            values = [v["value"] for v in conflict["values"]]
            full_values = [v["value"] for v in full_conflict["values"]]
            hidden = ["" for _ in full_values] if sensitive == "hidden" else None
            assert values == (hidden or expected(sensitive, PiiKind.OTHER, full_values))
        for subtree in SUBTREES:
            want = None if subtree in FORBIDDEN[role] else full[subtree]
            assert got[subtree] == want, subtree
    errors = body.get("errors", [])
    assert all(e["extensions"]["code"] == "FORBIDDEN" for e in errors), errors
    assert sorted((e["path"][1], e["path"][2]) for e in errors) == sorted(
        (i, s) for i in range(len(customers)) for s in FORBIDDEN[role]
    )
    for error in errors:
        assert error["extensions"]["missing"] == [SCOPE[error["path"][2]]]


@pytest.mark.parametrize("mfa", [False, True], ids=["password", "mfa"])
@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(gateways, emails, reference, role, mfa):
    body = gateways[0].ask(role, mfa, FULL, emails)
    check_matrix(role, mfa, body, reference)


def _routes(sandbox_url: str) -> dict[str, int]:
    routes: dict[str, int] = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["routes"]
    return routes


def _reset(sandbox_url: str) -> None:
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats").raise_for_status()


@pytest.mark.parametrize("role", [r for r in ROLES if FORBIDDEN[r]])
def test_forbidden_subtrees_cost_no_upstream_requests(
    gateways, emails, reference, sandbox_url, role
):
    gateway = gateways[0]
    _reset(sandbox_url)
    gateway.ask("admin", True, FULL, emails)
    everything = _routes(sandbox_url)

    _reset(sandbox_url)
    gateway.ask(role, False, FULL, emails)
    as_role = _routes(sandbox_url)

    # What the same query costs with the forbidden subtrees left out of it.
    _reset(sandbox_url)
    gateway.ask("admin", True, query(set(SUBTREES) - FORBIDDEN[role]), emails)
    assert as_role == _routes(sandbox_url)
    assert sum(as_role.values()) < sum(everything.values())
    for subtree in FORBIDDEN[role] & set(OWN_ROUTE):
        assert everything[OWN_ROUTE[subtree]] > 0
        assert OWN_ROUTE[subtree] not in as_role


@pytest.mark.parametrize("role", ["marketing", "integration", "support_agent"])
def test_cached_records_are_guarded_per_request(gateways, emails, reference, sandbox_url, role):
    cached = gateways[1]
    # Admin fills the cache; the next principal is served from it alone.
    body = cached.ask("admin", True, FULL, emails)
    assert body["data"]["customers"] == reference
    _reset(sandbox_url)
    body = cached.ask(role, False, FULL, emails)
    assert _routes(sandbox_url) == {}
    check_matrix(role, False, body, reference)
