"""The golden record: survivorship over a profile, data quality, and the customer id's anchor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.sdk import Person, SourceRef, UpstreamTimeout
from gateway.golden import Conflict, DataQuality, Duplicate, GoldenRecord
from gateway.identity import IdentitySettings, PossibleMatch, Profile
from gateway.survivorship import Candidate, Rule
from tests.unit.identity_fakes import Billing, Crm, Marketing, Ticketing, member, person

SYSTEMS = ["mailchimp", "salesforce", "stripe", "zendesk"]
CRM, TICKETING, BILLING, MARKETING = Crm(), Ticketing(), Billing(), Marketing()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def golden(*found, settings=None, identifying=(), failures=(), possible=()):
    profile = Profile()
    for connector, record in found:
        profile.add(connector, [record], "email")
    profile.identifying_emails |= set(identifying)
    for connector in failures:
        profile.fail(connector, UpstreamTimeout("late", source=connector.name))
    for match in possible:
        profile.possible[(match.system, match.record_id)] = match
    return GoldenRecord(profile, settings or IdentitySettings(), SYSTEMS)


def _duplicate() -> Duplicate:
    return Duplicate("stripe", ("cus_1", "cus_2"))


def _conflict() -> Conflict:
    return Conflict("phone", ())


@pytest.mark.parametrize(
    ("duplicates", "conflicts", "missing", "score"),
    [
        (0, 0, 0, 1.0),
        (1, 0, 0, 0.8),
        (0, 1, 0, 0.85),
        (0, 0, 1, 0.9),
        (1, 1, 1, 0.55),
        (0, 0, 3, 0.7),
        (2, 2, 2, 0.1),
        (3, 2, 2, 0.0),  # floored, never negative
    ],
)
def test_score_is_one_minus_a_penalty_per_finding(duplicates, conflicts, missing, score):
    quality = DataQuality(
        duplicates=(_duplicate(),) * duplicates,
        conflicts=(_conflict(),) * conflicts,
        missing_in=("zendesk",) * missing,
    )
    assert quality.score == score


def test_score_is_not_claimed_when_a_system_was_unreachable():
    assert DataQuality((), (), (), unreachable=("salesforce",)).score is None
    assert DataQuality((), (), ()).score == 1.0
    # Someone else's records found through a shared value are not this customer's flaws.
    match = PossibleMatch("salesforce", "003C", "phone", "shared phone")
    assert DataQuality((), (), (), possible_matches=(match,)).score == 1.0


def test_quality_reports_duplicates_conflicts_and_missing_systems():
    record = golden(
        (CRM, person("salesforce", "003A", "Ann Lee", email="ann@acme.example", phone="+14155550101")),
        (TICKETING, person("zendesk", "11", "Ann Lee", email="ann@acme.example", phone="415.555.0102")),
        (BILLING, person("stripe", "cus_2", "Ann Lee", email="ann@acme.example")),
        (BILLING, person("stripe", "cus_1", "Ann  Lee ", email="ANN@acme.example", phone="(415) 555-0101")),
    )  # fmt: skip
    quality = record.quality
    assert quality.duplicates == (Duplicate("stripe", ("cus_1", "cus_2")),)
    [phone] = [c for c in quality.conflicts if c.field == "phone"]
    # Each system's distinct values, in system and record order.
    assert [(c.system, c.record_id, c.value) for c in phone.values] == [
        ("salesforce", "003A", "+14155550101"),
        ("stripe", "cus_1", "+14155550101"),
        ("zendesk", "11", "+14155550102"),
    ]
    [name] = [c for c in quality.conflicts if c.field == "name"]
    assert [(c.record_id, c.value) for c in name.values] == [
        ("003A", "Ann Lee"), ("cus_1", "Ann  Lee"), ("cus_2", "Ann Lee"), ("11", "Ann Lee"),
    ]  # fmt: skip
    assert quality.missing_in == ("mailchimp",)
    assert quality.unreachable == ()
    assert quality.score == pytest.approx(1.0 - 0.2 - 0.15 - 0.15 - 0.1)


def test_only_the_configured_fields_are_compared():
    records = (
        (CRM, person("salesforce", "003A", "Ann Lee", phone="+14155550101")),
        (TICKETING, person("zendesk", "11", "Ann B. Lee", phone="+14155550102")),
    )
    assert {c.field for c in golden(*records).quality.conflicts} == {"name", "phone"}
    settings = IdentitySettings(conflict_fields=("phone",))
    assert [c.field for c in golden(*records, settings=settings).quality.conflicts] == ["phone"]


def test_a_member_of_two_lists_is_no_duplicate_and_an_unreachable_system_not_missing():
    record = golden(
        (MARKETING, member("m_a", "Ann Lee", "ann@acme.example", "L1")),
        (MARKETING, member("m_a", "Ann Lee", "ann@acme.example", "L2")),
        failures=(CRM, BILLING),
        possible=(PossibleMatch("zendesk", "66", "phone", "shared phone"),
                  PossibleMatch("stripe", "cus_9", "email", "link differs")),
    )  # fmt: skip
    quality = record.quality
    assert quality.duplicates == ()
    assert quality.unreachable == ("salesforce", "stripe")
    assert quality.missing_in == ("zendesk",)
    assert quality.score is None
    assert [(m.system, m.record_id) for m in quality.possible_matches] == [
        ("stripe", "cus_9"),
        ("zendesk", "66"),
    ]


def test_values_are_normalized_and_placeholders_never_survive():
    record = golden(
        (CRM, person("salesforce", "003A", "  ", email="test@example.com", phone="n/a")),
        (BILLING, person("stripe", "cus_1", " Ann Lee ", email=" Ann@Acme.example ",
                         phone="(415) 555-0101")),
    )  # fmt: skip
    assert record.get("name") == "Ann Lee"
    assert record.get("email") == "ann@acme.example"
    assert record.get("phone") == "+14155550101"
    assert record.get("title") is None
    assert record.contact_points("email") == ["ann@acme.example"]
    assert record.winners["name"].candidate == Candidate(
        "Ann Lee", "stripe", "billing", "cus_1", None
    )


def test_candidates_carry_where_each_value_came_from():
    crm = Person(
        source=SourceRef(system="salesforce", record_id="003A", updated_at=T0), name="Ann Lee"
    )
    record = golden((CRM, crm))
    assert record.candidates("name") == [Candidate("Ann Lee", "salesforce", "crm", "003A", T0)]
    assert record.winners["name"].rule == "source_priority"
    custom = IdentitySettings(rules={"name": Rule("most_recent")})
    assert golden((CRM, crm), settings=custom).winners["name"].rule == "most_recent"


def test_the_id_anchor_is_an_identifying_email_else_the_best_record():
    ann = person("salesforce", "003B", "Ann Lee", email="ann@acme.example")
    assert golden((CRM, ann), identifying={"ann@acme.example"}).anchor == "e:ann@acme.example"
    # Not found to identify one person (shared, or never looked up): the record.
    assert golden((CRM, ann)).anchor == "r:salesforce:003B"
    assert golden((CRM, ann), identifying={"bob@acme.example"}).anchor == "r:salesforce:003B"
    records = [
        (MARKETING, member("m_a", None, "test@example.com")),
        (TICKETING, person("zendesk", "11")),
        (BILLING, person("stripe", "cus_2")),
        (BILLING, person("stripe", "cus_1")),
        (CRM, person("salesforce", "003Z")),
        (CRM, person("salesforce", "003A")),
    ]
    # CRM first, then billing, ticketing, marketing; the smallest id within.
    for expected in ("salesforce:003A", "stripe:cus_1", "zendesk:11", "mailchimp:m_a"):
        assert golden(*records).anchor == f"r:{expected}"
        system = expected.partition(":")[0]
        records = [(c, r) for c, r in records if c.name != system]
    assert golden().anchor is None
