from __future__ import annotations

from connectors.sdk.world import PLACEHOLDER_EMAIL, World


def test_world_is_deterministic_and_messy():
    a, b = World(400, seed=3), World(400, seed=3)
    assert [a.answer_key(p) for p in a.people] == [b.answer_key(p) for p in b.people]
    assert [p.email for p in World(400, seed=4).people] != [p.email for p in a.people]
    kinds = {x.rsplit(":", 1)[0] for p in a.people for x in p.anomalies}
    assert {"missing", "email_case", "duplicate", "conflict:phone", "placeholder:phone"} <= kinds
    assert sum(p.in_all for p in a.people) > 300
    assert any(o.parent is not None for o in a.orgs)
    assert len({p.email for p in a.people}) == 400


def test_stored_emails_normalize_to_the_canonical_one_unless_placeholder():
    world = World(600, seed=9)
    placeholders = 0
    for p in world.people:
        stored = [p.crm_email, p.zendesk_email, p.mailchimp_email, *(b.email for b in p.billing)]
        for value in stored:
            if value == PLACEHOLDER_EMAIL:
                placeholders += 1
                assert "placeholder:email:stripe" in p.anomalies
            elif value is not None:
                assert value.strip().lower() == p.email
    assert placeholders


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
