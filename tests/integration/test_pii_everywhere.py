"""PII follows the policy on every path: the whole schema, for every role, with and without MFA.

The query reaches every field of the schema (generated from it, so new fields
are walked too) for customers chosen for their messy data, through every
entry point (email, a system's id, lists, search, accounts and their
contacts). Every string of every answer -- data and errors -- is checked
against every personal value the seeded world stores, in any format: a value
of a kind the role may not see in full must not be there, on any path. And
every PII field shown, in full or masked, must be in the request's audit event.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from connectors.sdk.world import World
from schema import build_schema
from schema.roles import guarded_fields
from tests.conftest import SESSION_WORLD
from tests.integration.schema_walk import PiiKey, Selection, select, strings

pytestmark = pytest.mark.integration

# What each built-in role may see in full (phones: a person's number is
# sensitive, so only with pii:sensitive and an MFA login). Written out here,
# not computed from the policy, so a policy bug cannot also fix the test.
FULL: dict[tuple[str, bool], set[str]] = {
    ("support_agent", False): {"name", "email", "hash"},
    ("account_manager", False): {"name", "email", "hash"},
    ("marketing", False): set(),
    ("billing_admin", False): {"name", "email", "hash"},
    ("billing_admin", True): {"name", "email", "hash", "phone"},
    ("integration", False): set(),
    ("admin", False): {"name", "email", "hash"},
    ("admin", True): {"name", "email", "hash", "phone"},
}
for (_role, _mfa), _kinds in list(FULL.items()):
    FULL.setdefault((_role, True), set(_kinds))
ROLES = sorted(FULL)


@pytest.fixture(scope="module")
def pii() -> PiiKey:
    return PiiKey.of(World(**SESSION_WORLD))


@pytest.fixture(scope="module")
def walk(answer_key: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Documents that together reach every field, and their variables.

    One per entry point: a whole-schema selection is near the hardened
    endpoint's token limit, so each goes in its own request (and its own
    audit event).
    """
    schema = build_schema()._schema
    messy = [p for p in answer_key if p["anomalies"] and p["systems"]["salesforce"]]
    complete = next(p for p in answer_key if p["in_all"])
    people = [complete, *sorted(messy, key=lambda p: -len(p["anomalies"]))[:3]]
    mailchimp = next(p for p in answer_key if p["systems"]["mailchimp"] and p["in_all"])
    zendesk = next(p for p in answer_key if p["systems"]["zendesk"] and p is not complete)
    org = next(p["organization"] for p in answer_key if p["organization"])
    args = {
        ("Account", "contacts"): "first: 100",
        ("Account", "children"): "first: 100",
        ("MarketingProfile", "activity"): "first: 100",
    }
    customer = select(schema, "Customer", args, ("Customer",))
    account = select(schema, "Account", args, ("Account",))
    connection = select(schema, "CustomerConnection", args, ("CustomerConnection",))
    docs: list[tuple[str, dict[str, Any]]] = []
    for person in people:
        document = f"query Walk($e: String!) {{ customer(email: $e) {{ {customer} }} }}"
        docs.append((document, {"e": person["email"]}))
    for system, person in (("mailchimp", mailchimp), ("zendesk", zendesk)):
        ref = f'{{system: "{system}", id: "{person["systems"][system][0]}"}}'
        docs.append((f"query Walk {{ customer(ref: {ref}) {{ {customer} }} }}", {}))
    document = f"query Walk($l: [String!]) {{ customers(emails: $l) {{ {customer} }} }}"
    docs.append((document, {"l": [p["email"] for p in people[:2]]}))
    search = f"query Walk($t: String!) {{ searchCustomers(text: $t, first: 5) {{ {connection} }} }}"
    for text in (complete["name"].split()[-1], complete["email"], complete["phone"][-10:]):
        docs.append((search, {"t": text}))
    docs.append(
        (f"query Walk {{ accounts(first: 50) {{ edges {{ node {{ {account} }} }} }} }}", {})
    )
    docs.append((f'query Walk {{ account(id: "{org["salesforce"]}") {{ {account} }} }}', {}))
    return docs


def _post(url: str, token: str, document: str, variables: dict[str, Any]) -> tuple[dict, str]:
    request_id = f"walk-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{url}/graphql",
        json={"query": document, "variables": variables, "operationName": "Walk"},
        headers={"authorization": f"Bearer {token}", "x-request-id": request_id},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:500]
    return response.json(), request_id


def _events(gateway_dir, request_id: str) -> list[dict[str, Any]]:
    path = gateway_dir / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e.get("request_id") == request_id]


def _pii_fields() -> tuple[set[str], set[str]]:
    """Fields that always hold PII, and those that hold it for some records."""
    fields = list(guarded_fields(build_schema()))
    return {n for n, g, _ in fields if g.pii}, {n for n, g, _ in fields if g.rule_of}


@pytest.mark.parametrize(
    ("role", "mfa"), ROLES, ids=[f"{r}{'+mfa' if m else ''}" for r, m in ROLES]
)
def test_no_role_sees_pii_it_may_not_on_any_path(
    role, mfa, gateway_url, gateway_dir, issuer, pii, walk
):
    token = issuer.mint_token(role, mfa=mfa)
    allowed = FULL[(role, mfa)]
    selection = Selection(build_schema()._schema, {})
    always, sometimes = _pii_fields()
    leaks, unaudited = [], set()
    seen: set[str] = set()
    for document, variables in walk:
        body, request_id = _post(gateway_url, token, document, variables)
        assert body.get("data") is not None, body
        for path, text in strings({"data": body["data"], "errors": body.get("errors")}):
            kinds = pii.kinds(text)
            seen |= kinds
            leaks += [(path, kind) for kind in kinds - allowed]
        # Every PII field shown, in full or masked, is in the request's audit event.
        shown = {
            name for name, _path, value in selection.values(body["data"])
            if value not in (None, "", []) and (
                name in always
                or (name in sometimes and ("***" in value or pii.kinds(value)))
            )
        }  # fmt: skip
        audited = {name for e in _events(gateway_dir, request_id) for name in e["fields"]}
        unaudited |= shown - audited
    assert not leaks, f"{role} (mfa={mfa}) sees PII it may not: {leaks[:10]}"
    # The walk reached what the role may see: the check above cannot pass by
    # showing nothing at all.
    assert allowed <= seen, f"{role} was shown less than it may see: {allowed - seen}"
    assert not unaudited, f"shown but not audited: {unaudited}"


def test_a_token_without_c360_scopes_learns_nothing(gateway_url, issuer, sandbox_url, walk):
    token = issuer.mint_token("integration", extra_claims={"roles": [], "scope": "openid profile"})
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    for document, variables in walk:
        body, _ = _post(gateway_url, token, document, variables)
        assert all(value is None for value in body["data"].values()), body
        assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    # Refused before any vendor was asked: not even "is this a customer?".
    assert httpx.get(f"{sandbox_url}/_sandbox/stats").json()["total"] == 0
