"""The conflict rules: when a found record carries someone else's strong identifier."""

from __future__ import annotations

import pytest

from connectors.sdk import Person, SourceRef
from gateway._matching import (
    EMAIL_DIFFERS,
    LINK_DIFFERS,
    NAME_DIFFERS,
    Known,
    name_tokens,
    shared,
)
from tests.unit.identity_fakes import member, person


@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("Ann Lee", {"ann", "lee"}),
        ("  ANN   lee ", {"ann", "lee"}),
        ("A. Lee", {"lee"}),  # initials say nothing
        ("Lee, Ann-Marie", {"lee", "ann", "marie"}),
        ("Zoë O'Brien", {"zoë", "brien"}),  # one letter is an initial too
        ("Room 101", {"room"}),  # digits neither
        ("", set()),
        (None, set()),
    ],
)
def test_name_tokens(name, tokens):
    assert name_tokens(person("zendesk", "1", name)) == tokens


def test_name_tokens_fall_back_to_first_and_last_name_then_to_members():
    split = Person(source=SourceRef(system="stripe", record_id="c"), first_name="Ann",
                   last_name="Lee")  # fmt: skip
    assert name_tokens(split) == {"ann", "lee"}
    only_last = Person(source=SourceRef(system="stripe", record_id="c"), last_name="Lee")
    assert name_tokens(only_last) == {"lee"}
    assert name_tokens(member("m", "Ann Lee", "ann@acme.example")) == {"ann", "lee"}
    assert name_tokens(member("m", None, "ann@acme.example")) == set()


def ann() -> Known:
    known = Known()
    known.add("salesforce", person("salesforce", "003A", "Ann Lee"), "ann@acme.example")
    known.add("stripe", person("stripe", "cus_a", "Acme Labs", links={"zendesk": "11"}), None)
    return known


def test_known_holds_emails_records_link_targets_and_names():
    known = ann()
    assert known.emails == {"ann@acme.example"}
    assert known.records == {"salesforce": {"003A"}, "stripe": {"cus_a"}, "zendesk": {"11"}}
    assert known.names == {"salesforce": [{"ann", "lee"}], "stripe": [{"acme", "labs"}]}
    copy = known.copy()
    assert copy == known
    copy.add("zendesk", person("zendesk", "12", "Ann Lee", links={"salesforce": "003B"}), "a@x.ex")
    # The copy is a trial: the original is untouched.
    assert known.records["zendesk"] == {"11"} and "003B" not in known.records["salesforce"]
    assert known.emails == {"ann@acme.example"} and "zendesk" not in known.names


@pytest.mark.parametrize(
    ("system", "record", "email", "check_email", "reason"),
    [
        # Links: into a system where the person's records are known, naming none.
        ("zendesk", person("zendesk", "9", links={"salesforce": "003B"}), None, False,
         LINK_DIFFERS),
        ("zendesk", person("zendesk", "9", links={"salesforce": "003A"}), None, False, None),
        ("zendesk", person("zendesk", "9", links={"zendesk": "11"}), None, False, None),
        # A link into a system the person has nothing in conflicts with nothing.
        ("stripe", person("stripe", "c9", links={"hubspot": "77"}), None, False, None),
        # Emails: only when asked (a phone found the record).
        ("zendesk", person("zendesk", "9"), "bob@acme.example", True, EMAIL_DIFFERS),
        ("zendesk", person("zendesk", "9"), "bob@acme.example", False, None),
        ("zendesk", person("zendesk", "9"), "ann@acme.example", True, None),
        ("zendesk", person("zendesk", "9"), None, True, None),
        # Names: against the same system's names only.
        ("salesforce", person("salesforce", "003N", "Bob Kim"), None, False, NAME_DIFFERS),
        ("salesforce", person("salesforce", "003N", "ANN Smith"), None, False, None),
        ("salesforce", person("salesforce", "003N", None), None, False, None),
        ("zendesk", person("zendesk", "9", "Bob Kim"), None, False, None),
        ("stripe", person("stripe", "c9", "Bob Kim"), None, False, NAME_DIFFERS),
        # The strongest reason is given: a link before an email before a name.
        ("salesforce", person("salesforce", "003N", "Bob Kim", links={"stripe": "c1"}),
         "bob@acme.example", True, LINK_DIFFERS),
        ("salesforce", person("salesforce", "003N", "Bob Kim"), "bob@acme.example", True,
         EMAIL_DIFFERS),
    ],
)  # fmt: skip
def test_conflict(system, record, email, check_email, reason):
    assert ann().conflict(system, record, email, check_email=check_email) == reason


def test_a_name_compatible_with_any_of_the_systems_names_is_no_conflict():
    known = ann()
    known.add("salesforce", person("salesforce", "003A2", "Annie Smith"), None)
    assert known.conflict("salesforce", person("salesforce", "x", "J. Smith"), None,
                          check_email=False) is None  # fmt: skip
    assert known.conflict("salesforce", person("salesforce", "x", "Bob Kim"), None,
                          check_email=False) == NAME_DIFFERS  # fmt: skip


def test_shared_reasons():
    assert shared("phone") == "shared phone"
    assert shared("email") == "shared email"
