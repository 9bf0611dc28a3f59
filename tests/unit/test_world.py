from __future__ import annotations

from connectors.sdk.world import World


def test_world_is_deterministic_and_messy():
    a, b = World(400, seed=3), World(400, seed=3)
    assert [a.answer_key(p) for p in a.people] == [b.answer_key(p) for p in b.people]
    assert [p.email for p in World(400, seed=4).people] != [p.email for p in a.people]
    kinds = {x.split(":")[0] for p in a.people for x in p.anomalies}
    assert {"missing", "email_case", "duplicate"} <= kinds
    assert sum(p.in_all for p in a.people) > 300
    assert any(o.parent is not None for o in a.orgs)
    assert len({p.email for p in a.people}) == 400


def test_stored_emails_normalize_to_the_canonical_one():
    world = World(300, seed=9)
    for p in world.people:
        for stored in [
            p.crm_email,
            p.zendesk_email,
            p.mailchimp_email,
            *(b.email for b in p.billing),
        ]:
            if stored is not None:
                assert stored.strip().lower() == p.email
