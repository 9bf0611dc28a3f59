from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from connectors.sdk import normalize_email, normalize_phone
from connectors.sdk.world import EPOCH, PLACEHOLDER_EMAIL, World, mailchimp_hash

SHARED_KINDS = ("shared:phone", "shared:email", "recycled:phone", "reassigned:phone")


def test_world_is_deterministic_and_messy():
    a, b = World(400, seed=3), World(400, seed=3)
    assert [a.answer_key(p) for p in a.people] == [b.answer_key(p) for p in b.people]
    assert [p.email for p in World(400, seed=4).people] != [p.email for p in a.people]
    kinds = {x.rsplit(":", 1)[0] for p in a.people for x in p.anomalies}
    assert {"missing", "email_case", "duplicate", "conflict:phone", "placeholder:phone"} <= kinds
    assert set(SHARED_KINDS) <= kinds
    assert sum(p.in_all for p in a.people) > 300
    assert any(o.parent is not None for o in a.orgs)
    assert len({p.email for p in a.people}) == 400


def test_stored_emails_normalize_to_the_canonical_one_unless_placeholder_or_shared():
    world = World(600, seed=9)
    placeholders = shared = 0
    for p in world.people:
        stored = [p.crm_email, p.zendesk_email, p.mailchimp_email, *(b.email for b in p.billing)]
        for value in stored:
            if value == PLACEHOLDER_EMAIL:
                placeholders += 1
                assert "placeholder:email:stripe" in p.anomalies
            elif value is not None and value.strip().lower() != p.email:
                shared += 1
                assert "shared:email:stripe" in p.anomalies
                assert value in (b.email for b in p.billing)
    assert placeholders and shared


@pytest.mark.parametrize(("customers", "seed"), [(200, 2), (200, 11), (300, 2), (1000, 42)])
def test_shared_values_are_seeded_several_times_and_marked(customers, seed):
    world = World(customers, seed=seed)
    marks = Counter(a.rsplit(":", 1)[0] for p in world.people for a in p.anomalies)
    for kind in SHARED_KINDS:
        assert marks[kind] >= 3, (kind, marks)
    # The first five people, in every system for demos and tests, share nothing.
    for p in world.people[:5]:
        assert p.in_all and not any(a.rsplit(":", 1)[0] in SHARED_KINDS for a in p.anomalies)


def _holders(world: World) -> dict[tuple[str, str], set[int]]:
    """Which people's records hold each identifying value, from the answer key."""
    out: dict[tuple[str, str], set[int]] = {}
    for p in world.people:
        for r in world.answer_key(p)["records"]:
            for kind in ("email", "phone"):
                if r[kind]:
                    out.setdefault((kind, r[kind]), set()).add(p.index)
    return out


def test_every_value_shared_by_people_is_marked_on_each_of_them():
    world = World(1000, seed=42)
    holders = _holders(world)
    for (kind, value), people in holders.items():
        if len(people) < 2:
            continue
        for index in people:
            marked = [a for a in world.people[index].anomalies if a.split(":")[1] == kind]
            assert any(a.split(":")[0] in ("shared", "recycled", "reassigned") for a in marked), (
                kind, value, world.people[index].anomalies,
            )  # fmt: skip


def test_switchboards_inboxes_and_recycled_numbers_are_what_they_say():
    world = World(1000, seed=42)
    holders = _holders(world)
    for p in world.people:
        key = world.answer_key(p)
        records = {r["system"]: r for r in key["records"]}
        for anomaly in p.anomalies:
            if anomaly == "shared:phone:salesforce":
                # Colleagues of one organization share the CRM phone.
                number = records["salesforce"]["phone"]
                assert normalize_phone(p.crm_phone) == number != p.phone
                others = holders[("phone", number)] - {p.index}
                assert others and all(world.people[o].org == p.org for o in others)
            elif anomaly == "shared:email:stripe":
                inbox = p.billing[0].email
                assert normalize_email(inbox) == inbox != p.email
                assert p.billing[0].crm_id == p.crm_id  # each links to its own contact
                assert len(holders[("email", inbox)]) == 2
            elif anomaly.startswith("recycled:phone:"):
                system = anomaly.rsplit(":", 1)[1]
                number = records[system]["phone"]
                [owner] = holders[("phone", number)] - {p.index}
                current = world.people[owner]
                assert current.phone == number and current.crm_phone_e164 == number
                assert f"reassigned:phone:{system}" in current.anomalies
                assert records["salesforce"]["phone"] == p.phone  # the holder's own, in the CRM


def test_answer_key_records_are_the_systems_records():
    world = World(300, seed=2)
    for p in world.people:
        key = world.answer_key(p)
        systems: dict[str, list[str]] = {}
        for r in key["records"]:
            systems.setdefault(r["system"], []).append(r["id"])
            assert r["phone"] is None or normalize_phone(r["phone"]) == r["phone"]
        assert systems == {s: ids for s, ids in key["systems"].items() if ids}
        if p.memberships:
            assert systems["mailchimp"] == [mailchimp_hash(p.email)]


def test_hierarchy_has_exactly_one_loop():
    world = World(300, seed=9)
    a, b = world.cycle
    assert world.orgs[a].parent == b
    assert world.orgs[b].parent == a
    for org in world.orgs:
        seen, node = set(), org.index
        while node is not None and node not in seen:
            seen.add(node)
            node = world.orgs[node].parent
        if node is not None:
            assert node in world.cycle


@pytest.mark.parametrize(("customers", "seed"), [(1000, 42), (300, 2), (200, 11)])
def test_invoices_agree_with_their_subscriptions(customers, seed):
    world = World(customers, seed=seed)
    seen = Counter()
    for p in world.people:
        for account in p.billing:
            assert account.invoices == sorted(account.invoices, key=lambda i: i.created)[::-1]
            for sub in account.subscriptions:
                own = [i for i in account.invoices if i.subscription == sub.id]
                statuses = [i.status for i in own]  # newest first
                seen[sub.status, bool(own)] += 1
                assert sub.created < sub.current_period_end and sub.current_period_end > EPOCH
                if sub.status == "trialing":
                    assert own == [] and sub.current_period_end - sub.created <= timedelta(14)
                elif sub.status == "active":
                    assert statuses[:1] == ["paid"] and set(statuses) <= {"paid", "void"}
                elif sub.status == "past_due":
                    assert statuses[:1] == ["open"] and set(statuses[1:]) <= {"paid", "void"}
                else:
                    assert sub.status == "canceled" and "open" not in statuses
                for invoice in own:
                    assert sub.created <= invoice.created <= EPOCH
                    assert invoice.amount_due == sub.amount and invoice.currency == sub.currency
                    paid = invoice.amount_due if invoice.status == "paid" else 0
                    assert invoice.amount_paid == paid
    # Every status occurs, and canceled ones with and without a history.
    assert {s for s, _ in seen} == {"trialing", "active", "past_due", "canceled"}
    assert seen["canceled", True] and seen["canceled", False]


def test_billing_history_is_deterministic_and_invoice_ids_unique():
    a, b = World(300, seed=2), World(300, seed=2)
    history = [
        [(i.id, i.status, i.created) for x in p.billing for i in x.invoices] for p in a.people
    ]
    assert history == [[(i.id, i.status, i.created) for x in p.billing for i in x.invoices]
                       for p in b.people]  # fmt: skip
    ids = [i.id for p in a.people for x in p.billing for i in x.invoices]
    assert len(ids) == len(set(ids)) and all(i.startswith("in_") for i in ids)
