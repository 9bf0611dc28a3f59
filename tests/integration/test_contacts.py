"""An account's contacts: phones in E.164 like every other phone the gateway
serves, placeholders never passed off as numbers."""

from __future__ import annotations

import pytest

from connectors.sdk.world import PLACEHOLDER_PHONES, World
from tests.conftest import SESSION_WORLD

pytestmark = pytest.mark.integration

CONTACTS = """query($id: ID!) { account(id: $id) {
  contacts(first: 50) { edges { node { id phone } } } } }"""


def test_contact_phones_are_e164_whatever_format_the_crm_stores(gql):
    world = World(**SESSION_WORLD)
    by_org: dict[int, list] = {}
    for p in world.people:
        if p.org is not None and p.crm_id:
            by_org.setdefault(p.org, []).append(p)
    checked = placeholders = 0
    largest = sorted(by_org, key=lambda org: -len(by_org[org]))[:10]
    with_placeholders = {
        p.org for p in world.people if "placeholder:phone:salesforce" in p.anomalies
    }
    for org in sorted({*largest, *(with_placeholders - {None})}):
        people = by_org[org]
        body = gql(CONTACTS, id=world.orgs[org].crm_id)
        assert "errors" not in body, body
        served = {e["node"]["id"]: e["node"]["phone"] for e in
                  body["data"]["account"]["contacts"]["edges"]}  # fmt: skip
        for p in people:
            # crm_phone_e164 is None exactly for a placeholder (n/a, 000-000-0000).
            assert served[p.crm_id] == p.crm_phone_e164, (p.crm_phone, served[p.crm_id])
            checked += 1
            placeholders += p.crm_phone in PLACEHOLDER_PHONES
        assert any(p.crm_phone != p.crm_phone_e164 for p in people)  # stored in display form
    assert checked >= 30 and placeholders >= 1
