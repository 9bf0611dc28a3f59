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
def walk(answer_key: list[dict[str, Any]]) -> tuple[str, Selection, dict[str, Any]]:
    """One document that reaches every field, and its variables."""
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
    roots: dict[str, str] = {}
    fields = []
    variables: dict[str, Any] = {}
    for i, person in enumerate(people):
        roots[f"c{i}"] = "customer"
        variables[f"e{i}"] = person["email"]
        fields.append(f"c{i}: customer(email: $e{i}) {{ {customer} }}")
    roots |= {"m": "customer", "z": "customer", "list": "customers"}
    fields += [
        f'm: customer(ref: {{system: "mailchimp", id: "{mailchimp["systems"]["mailchimp"][0]}"}})'
        f" {{ {customer} }}",
        f'z: customer(ref: {{system: "zendesk", id: "{zendesk["systems"]["zendesk"][0]}"}})'
        f" {{ {customer} }}",
        f"list: customers(emails: [$e0, $e1]) {{ {customer} }}",
    ]
    searches = {
        "byName": complete["name"].split()[-1],
        "byEmail": complete["email"],
        "byPhone": complete["phone"][-10:],
    }
    for alias, text in searches.items():
        roots[alias] = "searchCustomers"
        fields.append(
            f"{alias}: searchCustomers(text: {json.dumps(text)}, first: 5) {{ {connection} }}"
        )
    roots |= {"accounts": "accounts", "one": "account"}
    fields += [
        f"accounts: accounts(first: 50) {{ edges {{ node {{ {account} }} }} }}",
        f'one: account(id: "{org["salesforce"]}") {{ {account} }}',
    ]
    params = ", ".join(f"$e{i}: String!" for i in range(len(people)))
    document = f"query Walk({params}) {{ {' '.join(fields)} }}"
    return document, Selection(schema, roots), variables


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


@pytest.mark.parametrize(
    ("role", "mfa"), ROLES, ids=[f"{r}{'+mfa' if m else ''}" for r, m in ROLES]
)
def test_no_role_sees_pii_it_may_not_on_any_path(
    role, mfa, gateway_url, gateway_dir, issuer, pii, walk
):
    document, selection, variables = walk
    body, request_id = _post(gateway_url, issuer.mint_token(role, mfa=mfa), document, variables)
    allowed = FULL[(role, mfa)]
    leaks = []
    seen: set[str] = set()
    for path, text in strings({"data": body.get("data"), "errors": body.get("errors")}):
        kinds = pii.kinds(text)
        seen |= kinds
        leaks += [(path, kind) for kind in kinds - allowed]
    assert not leaks, f"{role} (mfa={mfa}) sees PII it may not: {leaks[:10]}"
    # The walk reached what the role may see: the check above cannot pass by
    # showing nothing at all.
    assert allowed <= seen, f"{role} was shown less than it may see: {allowed - seen}"

    # Every PII field shown, in full or masked, is in the request's audit event.
    guarded = {name for name, guard, _ in _pii_fields()}
    shown = {
        name for name, _path, value in selection.values(body["data"] or {})
        if name in guarded and value not in (None, "", [])
    }  # fmt: skip
    audited: dict[str, str] = {}
    for event in _events(gateway_dir, request_id):
        for name, how in event["fields"].items():
            audited[name] = "full" if "full" in (how, audited.get(name)) else how
    assert shown <= set(audited), f"shown but not audited: {shown - set(audited)}"


def _pii_fields():
    from schema.roles import guarded_fields

    return [(n, g, d) for n, g, d in guarded_fields(build_schema()) if g.pii or g.rule_of]


def test_a_token_without_c360_scopes_learns_nothing(gateway_url, issuer, sandbox_url, walk):
    document, _, variables = walk
    token = issuer.mint_token("integration", extra_claims={"roles": [], "scope": "openid profile"})
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    body, _ = _post(gateway_url, token, document, variables)
    calls = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["total"]
    data = body["data"]
    assert all(value is None for value in data.values()), data
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes == {"FORBIDDEN"}
    assert calls == 0  # refused before any vendor was asked
