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


def _c(value, system, domain, rid, days=None):
    return Candidate(
        value, system, domain, rid, None if days is None else T0 + timedelta(days=days)
    )


def test_rank_is_the_position_of_the_system_or_its_domain():
    rule = Rule("source_priority", ("zendesk", "crm"))
    assert rule.rank(_c("x", "zendesk", "ticketing", "1")) == 0
    assert rule.rank(_c("x", "salesforce", "crm", "1")) == 1
    assert rule.rank(_c("x", "stripe", "billing", "1")) == 2  # unlisted: after every listed one
    winner = survive([_c("CRM", "salesforce", "crm", "1"), _c("ZD", "zendesk", "ticketing", "2")],
                     rule)  # fmt: skip
    assert winner.candidate.value == "ZD"


def test_source_priority_with_no_listed_source_falls_back_to_system_then_record_order():
    rule = Rule("source_priority", ("hubspot",))
    cands = [_c("B", "stripe", "billing", "1"), _c("A2", "salesforce", "crm", "2"),
             _c("A1", "salesforce", "crm", "10")]  # fmt: skip
    # Record ids are compared as the systems' text: "10" before "2".
    assert survive(cands, rule).candidate.value == "A1"
    assert survive(cands[:2], rule).candidate.value == "A2"


def test_most_recent_prefers_any_time_over_none_and_breaks_ties_by_priority():
    rule = Rule("most_recent", ("crm", "billing"))
    undated = _c("Old", "salesforce", "crm", "1")
    dated = _c("New", "zendesk", "ticketing", "2", days=1)
    assert survive([undated, dated], rule).candidate == dated
    tie = [
        _c("Billing", "stripe", "billing", "3", days=5),
        _c("CRM", "salesforce", "crm", "4", days=5),
    ]
    assert survive(tie, rule).candidate.value == "CRM"
    assert survive([undated, _c("Other", "stripe", "billing", "5")], rule).candidate == undated


def test_most_frequent_breaks_ties_by_priority_and_lists_the_other_values():
    rule = Rule("most_frequent", ("billing", "crm"))
    cands = [_c("Ann", "salesforce", "crm", "1"), _c("Annie", "stripe", "billing", "2"),
             _c("Ann", "zendesk", "ticketing", "3"), _c("Annie", "mailchimp", "marketing", "4"),
             _c("A.", "mailchimp", "marketing", "5")]  # fmt: skip
    winner = survive(cands, rule)
    assert winner.candidate == cands[1]  # two each: billing outranks crm
    assert [a.value for a in winner.alternatives] == ["Ann", "A."]
    assert winner.rule == "most_frequent"
    assert survive([*cands, _c("Ann", "x", "x", "6")], rule).candidate.value == "Ann"


def test_blank_values_are_not_candidates():
    rule = Rule("source_priority")
    winner = survive([_c(" \t", "salesforce", "crm", "1"), _c("Ann", "stripe", "billing", "2")],
                     rule)  # fmt: skip
    assert winner.candidate.value == "Ann"
    assert winner.alternatives == ()
    assert survive([], rule) is None


def test_of_one_records_values_the_newest_is_the_one_told():
    older = _c("Ann", "salesforce", "crm", "003A", days=1)
    newer = _c("Ann", "salesforce", "crm", "003A", days=9)
    for rule in (Rule("source_priority"), Rule("most_frequent")):
        assert survive([older, newer], rule).candidate == newer
        assert survive([newer, older], rule).candidate == newer
