"""Survivorship rules: deterministic whatever order systems answer in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.survivorship import Candidate, Rule, survive

SYSTEMS = [
    ("salesforce", "crm"),
    ("stripe", "billing"),
    ("zendesk", "ticketing"),
    ("mailchimp", "marketing"),
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)

candidates = st.lists(
    st.builds(
        lambda sys, value, rid, days: Candidate(
            value, sys[0], sys[1], rid, T0 + timedelta(days=days) if days is not None else None
        ),
        st.sampled_from(SYSTEMS),
        st.sampled_from(["", "  ", "Ann Lee", "Ann  Lee", "A. Lee", "+14155550100"]),
        st.text("abc123", min_size=1, max_size=4),
        st.one_of(st.none(), st.integers(0, 400)),
    ),
    max_size=8,
)
rules = st.sampled_from(
    [
        Rule("source_priority"),
        Rule("most_recent"),
        Rule("most_frequent"),
        Rule("source_priority", ("zendesk",)),
    ]
)


@given(candidates, rules, st.randoms())
def test_order_of_sources_does_not_change_the_winner(cands, rule, rnd):
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    assert survive(cands, rule) == survive(shuffled, rule)


@given(candidates, rules)
def test_merge_is_idempotent(cands, rule):
    once, twice = survive(cands, rule), survive(cands + cands, rule)
    assert (once is None) == (twice is None)
    if once is not None:
        assert once.candidate == twice.candidate


@given(candidates, rules)
def test_empty_values_never_win(cands, rule):
    winner = survive(cands, rule)
    if winner is None:
        assert all(not c.value.strip() for c in cands)
    else:
        assert winner.candidate.value.strip()


def test_rules():
    crm = Candidate("Ann Lee", "salesforce", "crm", "003", T0)
    billing_new = Candidate("Ann B. Lee", "stripe", "billing", "cus_1", T0 + timedelta(days=3))
    ticket = Candidate("Ann B. Lee", "zendesk", "ticketing", "7", T0 - timedelta(days=3))
    assert survive([billing_new, crm, ticket], Rule("source_priority")).candidate == crm
    assert survive([crm, billing_new, ticket], Rule("most_recent")).candidate == billing_new
    assert (
        survive([crm, billing_new, ticket], Rule("most_frequent")).candidate.value == "Ann B. Lee"
    )
    winner = survive([crm, billing_new], Rule("source_priority"))
    assert [a.value for a in winner.alternatives] == ["Ann B. Lee"]
    assert survive([Candidate("", "salesforce", "crm", "003")], Rule()) is None
