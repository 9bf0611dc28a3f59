"""Identity resolution rules: who is merged, who is only a possible match, and why.

Fake connectors (tests/unit/identity_fakes.py) behind the gateway's real
loaders; every test states the data, resolves, and checks what a client of
the golden record would see.
"""

from __future__ import annotations

import pytest

from connectors.sdk import (
    Domain,
    MarketingMember,
    PiiKind,
    SourceRef,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from gateway.identity import (
    AMBIGUOUS_CUSTOMER,
    AmbiguousCustomer,
    CustomerUnreachable,
    IdentitySettings,
    PossibleMatch,
    Profile,
    resolve,
)
from tests.unit.identity_fakes import (
    Billing,
    Crm,
    Marketing,
    Ticketing,
    member,
    person,
    resolved,
    world,
)

PA, PB, SWITCHBOARD = "+14155550101", "+14155550102", "+14155550199"


def ann_crm(phone=PA):
    return person("salesforce", "003A", "Ann Lee", email="ann@acme.example", phone=phone)


def bob_crm():
    return person("salesforce", "003B", "Bob Kim", email="bob@acme.example", phone=PB)


def sources(profile):
    return {(link.connector.name, link.record.source.record_id) for link in profile.all()}


def how(profile):
    return {link.record.source.record_id: link.matched_by for link in profile.all()}


async def test_a_clean_person_is_found_in_every_system_from_their_email():
    ctx = world(
        Crm(ann_crm(), bob_crm()),
        Ticketing(person("zendesk", "11", "Ann Lee", email="ANN@acme.example ", phone=PA)),
        Billing(person("stripe", "cus_a", "Ann Lee", email="ann@acme.example", phone=PA)),
        Marketing(member("m_a", "Ann Lee", "ann@acme.example")),
    )
    profile, golden = await resolved(ctx, email="Ann@Acme.example")
    assert sources(profile) == {
        ("salesforce", "003A"), ("zendesk", "11"), ("stripe", "cus_a"), ("mailchimp", "m_a"),
    }  # fmt: skip
    assert golden.get("name") == "Ann Lee"
    assert golden.anchor == "e:ann@acme.example"
    assert golden.quality.possible_matches == ()
    assert golden.quality.score == 1.0


async def test_defect_1_a_phone_never_brings_in_a_record_of_someone_else():
    # Ann's Stripe customer was given Bob's phone; asking for Bob must not show Ann.
    ann_billing = person("stripe", "cus_a", "Ann Lee", email="ann@acme.example", phone=PB,
                         links={"salesforce": "003A"})  # fmt: skip
    crm = Crm(ann_crm(), bob_crm())
    ctx = world(crm, Billing(ann_billing))
    profile, golden = await resolved(ctx, email="bob@acme.example")
    assert sources(profile) == {("salesforce", "003B")}
    assert (golden.get("name"), golden.get("email")) == ("Bob Kim", "bob@acme.example")
    assert golden.anchor == "e:bob@acme.example"
    # Its link names Ann's contact, a record of the CRM where Bob has his.
    assert golden.quality.possible_matches == (
        PossibleMatch("stripe", "cus_a", "phone", "link differs"),
    )
    # Its link is never followed: Ann's CRM contact is not even read.
    assert "003A" not in crm.keys_asked("people_by_id")
    # Asked for Ann, the same record is hers.
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert ("stripe", "cus_a") in sources(profile)
    assert golden.get("name") == "Ann Lee"


async def test_a_phone_adds_a_record_that_carries_nothing_of_anyone_else():
    caller = person("zendesk", "33", "Ann Lee", phone=f"({PA[2:5]}) {PA[5:8]}-{PA[8:]}")
    anonymous = person("zendesk", "34", None, phone=PA)
    placeholder = person("stripe", "cus_p", "Ann Lee", email="test@example.com", phone=PA)
    ctx = world(Crm(ann_crm()), Ticketing(caller, anonymous), Billing(placeholder))
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert how(profile) == {"003A": "email", "33": "phone", "34": "phone", "cus_p": "phone"}
    assert golden.quality.possible_matches == ()
    # Two records of Ann in Zendesk: a duplicate, reported.
    assert [(d.system, d.record_ids) for d in golden.quality.duplicates] == [
        ("zendesk", ("33", "34"))
    ]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (person("zendesk", "44", "Ann Lee", email="ann.lee@home.example", phone=PA),
         "email differs"),
        (person("zendesk", "45", "Ann Lee", phone=PA, links={"salesforce": "003Z"}),
         "link differs"),
        (person("salesforce", "003N", "Carl Diaz", phone=PA), "name differs"),
    ],
)  # fmt: skip
async def test_a_phone_match_carrying_a_conflicting_identifier_is_only_possible(record, reason):
    system = record.source.system
    others = Ticketing(record) if system == "zendesk" else Ticketing()
    crm = Crm(ann_crm(), record) if system == "salesforce" else Crm(ann_crm())
    profile, golden = await resolved(world(crm, others), email="ann@acme.example")
    assert sources(profile) == {("salesforce", "003A")}
    [match] = golden.quality.possible_matches
    assert match == PossibleMatch(system, record.source.record_id, "phone", reason)
    assert golden.get("name") == "Ann Lee"


async def test_names_are_compared_in_the_same_system_only_and_by_any_common_token():
    ctx = world(
        Crm(ann_crm(), person("salesforce", "003L", "A. LEE", phone=PA)),
        # Billing names a company: Ann has no Stripe record it could contradict.
        Billing(person("stripe", "cus_c", "Acme Labs Inc", phone=PA)),
    )
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert how(profile) == {"003A": "email", "003L": "phone", "cus_c": "phone"}
    assert golden.get("name") == "Ann Lee"  # the CRM's, ties broken by record id


async def test_a_link_to_the_persons_own_record_is_no_conflict():
    linked = person("zendesk", "46", "Ann Lee", phone=PA, links={"salesforce": "003A"})
    profile, _ = await resolved(world(Crm(ann_crm()), Ticketing(linked)), email="ann@acme.example")
    assert ("zendesk", "46") in sources(profile)


async def test_a_switchboard_identifies_no_one():
    colleague = person("salesforce", "003C", "Cara Diaz", email="cara@acme.example",
                       phone=SWITCHBOARD)  # fmt: skip
    # Nothing of anyone else on it, but found only through a shared number.
    desk = person("zendesk", "66", None, phone=SWITCHBOARD)
    ctx = world(Crm(ann_crm(phone=SWITCHBOARD), colleague), Ticketing(desk))
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert sources(profile) == {("salesforce", "003A")}
    assert golden.quality.possible_matches == (
        PossibleMatch("salesforce", "003C", "phone", "email differs"),
        PossibleMatch("zendesk", "66", "phone", "shared phone"),
    )
    # Without the colleague, the number is Ann's alone and the desk record joins.
    ctx = world(Crm(ann_crm(phone=SWITCHBOARD)), Ticketing(desk))
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert sources(profile) == {("salesforce", "003A"), ("zendesk", "66")}


async def test_a_phone_is_judged_after_the_rounds_links_are_in():
    # The ref's own email is a placeholder: Ann's address becomes known only
    # through the CRM contact its link names, in the same round as the phone.
    ref = person("stripe", "cus_p", "Ann Lee", email="test@example.com", phone=PA,
                 links={"salesforce": "003A"})  # fmt: skip
    billing = Billing(ref)
    ctx = world(
        Crm(ann_crm()),
        Ticketing(person("zendesk", "11", "Ann Lee", email="ann@acme.example", phone=PA)),
        billing,
        settings=IdentitySettings(max_rounds=1),
    )
    profile, golden = await resolved(ctx, ref=(billing, "cus_p"))
    assert how(profile) == {"cus_p": "ref", "003A": "link", "11": "phone"}
    assert golden.quality.possible_matches == ()


async def test_a_later_link_promotes_a_possible_match():
    work = person("zendesk", "77", "Ann Lee", email="ann.lee@work.example", phone=PA)
    # Found in round 2 by its link to Ann's contact; names her Zendesk user.
    billing = person("stripe", "cus_l", "Ann Lee", links={"salesforce": "003A", "zendesk": "77"})
    ctx = world(Crm(ann_crm()), Ticketing(work), Billing(billing))
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert how(profile) == {"003A": "email", "cus_l": "link", "77": "link"}
    assert golden.quality.possible_matches == ()
    # With one round less, the phone's verdict stands.
    ctx = world(Crm(ann_crm()), Ticketing(work), Billing(billing),
                settings=IdentitySettings(max_rounds=2))  # fmt: skip
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert ("zendesk", "77") not in sources(profile)
    assert golden.quality.possible_matches == (
        PossibleMatch("zendesk", "77", "phone", "email differs"),
    )


async def test_a_record_a_phone_found_adds_no_keys():
    # Ann has no CRM record: the phone-found user's link conflicts with nothing.
    stray = person("zendesk", "88", "Ann Lee", phone=PA, links={"salesforce": "003Q"})
    crm = Crm(person("salesforce", "003Q", "Quinn Ortiz", email="quinn@acme.example"))
    billing = Billing(person("stripe", "cus_a", "Ann Lee", email="ann@acme.example", phone=PA))
    ticketing = Ticketing(stray)
    profile, _ = await resolved(world(crm, ticketing, billing), email="ann@acme.example")
    assert how(profile) == {"cus_a": "email", "88": "phone"}
    assert "003Q" not in crm.keys_asked("people_by_id")
    assert "zendesk:88" not in billing.keys_asked("people_linked_to")


async def test_a_shared_inbox_reached_from_a_ref_identifies_no_one():
    ann_pays = person("stripe", "cus_1", "Ann Lee", email="billing@acme.example",
                      links={"salesforce": "003A"})  # fmt: skip
    bob_pays = person("stripe", "cus_2", "Bob Kim", email="billing@acme.example",
                      links={"salesforce": "003B"})  # fmt: skip
    billing = Billing(ann_pays, bob_pays)
    ctx = world(Crm(ann_crm(), bob_crm()), billing)
    expected = PossibleMatch("stripe", "cus_2", "email", "link differs")
    for entry in ({"ref": (billing, "cus_1")}, {"email": "ann@acme.example"}):
        profile, golden = await resolved(ctx, **entry)
        assert sources(profile) == {("salesforce", "003A"), ("stripe", "cus_1")}, entry
        assert golden.quality.possible_matches == (expected,), entry
        assert golden.contact_points("email") == ["ann@acme.example", "billing@acme.example"]
        assert "billing@acme.example" not in profile.identifying_emails
        assert golden.anchor == "e:ann@acme.example", entry


@pytest.mark.parametrize(
    "records",
    [
        # A team inbox on two people's billing customers, each linking its own contact.
        [person("stripe", "cus_1", "Ann Lee", email="team@acme.example",
                links={"salesforce": "003A"}),
         person("stripe", "cus_2", "Ann Lee", email="team@acme.example",
                links={"salesforce": "003B"})],
        # Two unrelated names in one system.
        [person("stripe", "cus_1", "Ann Lee", email="team@acme.example"),
         person("stripe", "cus_2", "Bob Kim", email="team@acme.example")],
        # A CRM contact, and a billing customer whose link names another contact.
        [person("salesforce", "003T", "Billing Team", email="team@acme.example"),
         person("stripe", "cus_1", "Ann Lee", email="team@acme.example",
                links={"salesforce": "003A"})],
        # The same, the link on the CRM side: records without links are read
        # first, whatever the system, so the link meets the record it contradicts.
        [person("salesforce", "003T", "Team", email="team@acme.example",
                links={"stripe": "cus_X"}),
         person("stripe", "cus_T", "Team", email="team@acme.example")],
    ],
)  # fmt: skip
async def test_an_anchor_email_of_several_people_is_ambiguous(records):
    crm = Crm(*(r for r in records if r.source.system == "salesforce"))
    billing = Billing(*(r for r in records if r.source.system == "stripe"))
    with pytest.raises(AmbiguousCustomer) as caught:
        await resolve(world(crm, billing), email="Team@acme.example")
    error = caught.value
    assert str(error) == (
        "this email belongs to several people; ask for one of the candidates by ref"
    )
    expected = sorted((r.source.system, r.source.record_id) for r in records)
    assert list(error.candidates) == expected
    assert error.extensions == {
        "code": AMBIGUOUS_CUSTOMER,
        "candidates": [{"system": s, "id": i} for s, i in expected],
    }
    # No personal value in what a client is told.
    for text in (str(error), repr(error.extensions)):
        assert "team@" not in text.lower() and "Ann" not in text and "Lee" not in text


async def test_one_persons_duplicates_under_one_email_are_not_ambiguous():
    first = person("stripe", "cus_a", "Ann Lee", email="ann@acme.example",
                   links={"salesforce": "003A"})  # fmt: skip
    second = person("stripe", "cus_a2", "Ann B. Lee", email="ANN@acme.example")
    profile, golden = await resolved(
        world(Crm(ann_crm()), Billing(first, second)), email="ann@acme.example"
    )
    assert sources(profile) == {("salesforce", "003A"), ("stripe", "cus_a"), ("stripe", "cus_a2")}
    assert [(d.system, d.record_ids) for d in golden.quality.duplicates] == [
        ("stripe", ("cus_a", "cus_a2"))
    ]


async def test_an_email_followed_from_a_ref_finding_two_people_merges_neither():
    crm = Crm(ann_crm())
    ctx = world(
        crm,
        Ticketing(
            person("zendesk", "11", "Ann Lee", email="ann@acme.example"),
            person("zendesk", "99", "Zed Zulu", email="ann@acme.example"),
        ),
    )
    profile, golden = await resolved(ctx, ref=(crm, "003A"))
    assert sources(profile) == {("salesforce", "003A")}
    assert golden.quality.possible_matches == (
        PossibleMatch("zendesk", "11", "email", "shared email"),
        PossibleMatch("zendesk", "99", "email", "name differs"),
    )
    # Its golden email was found to be shared: the id is the record, not the address.
    assert golden.anchor == "r:salesforce:003A"
    with pytest.raises(AmbiguousCustomer):
        await resolve(ctx, email="ann@acme.example")


async def test_every_failing_system_is_kept_with_its_first_error():
    billing = Billing(
        person(
            "stripe", "cus_a", "Ann Lee", email="ann@acme.example", links={"salesforce": "003A"}
        ),
        failing=["customers_by_email", "customers_by_phone"],
    )
    ticketing = Ticketing(failing=["requesters_by_email", "requesters_by_phone"])
    ctx = world(Crm(ann_crm()), ticketing, billing, Marketing())
    profile, golden = await resolved(ctx, email="ann@acme.example")
    assert set(profile.failures) == {"stripe", "zendesk"}
    assert profile.unreachable == ("stripe", "zendesk")
    # The first failure each: the email lookup's, not the later phone lookup's.
    assert billing.asked[0][0] == "customers_by_email"
    assert isinstance(profile.failures["stripe"], UpstreamUnavailable)
    assert profile.failure(Domain.BILLING) is profile.failures["stripe"]
    assert profile.failure(Domain.TICKETING) is profile.failures["zendesk"]
    assert profile.failure(Domain.CRM) is None
    # Stripe failed one lookup and answered another: the record is there, and
    # the system still counts as unreachable (what it failed to say is unknown).
    assert ("stripe", "cus_a") in sources(profile)
    quality = golden.quality
    assert quality.unreachable == ("stripe", "zendesk")
    assert quality.missing_in == ("mailchimp",)
    assert quality.score is None


async def test_nothing_found_and_a_failure_raises_instead_of_claiming_no_customer():
    ctx = world(Crm(failing=["people_by_email"]), Billing(failing=["customers_by_email"]),
                Ticketing())  # fmt: skip
    with pytest.raises(CustomerUnreachable) as caught:
        await resolve(ctx, email="ann@acme.example")
    error = caught.value
    # Every failing system, and it reports as the first failure would.
    assert set(error.failures) == {"salesforce", "stripe"}
    assert all(isinstance(f, UpstreamUnavailable) for f in error.failures.values())
    first = error.failures["salesforce"]
    assert isinstance(error, UpstreamError)
    assert (error.code, error.source, error.retryable, str(error)) == (
        "UPSTREAM_UNAVAILABLE", "salesforce", True, "salesforce is down",
    )  # fmt: skip
    assert error.__cause__ is first
    limited = CustomerUnreachable(
        {"stripe": UpstreamRateLimited("slow down", source="stripe", status=429, retry_after=2.5)}
    )
    assert (limited.code, limited.status, limited.retry_after) == (
        "UPSTREAM_RATE_LIMITED",
        429,
        2.5,
    )
    assert await resolve(world(Crm(), Billing()), email="ann@acme.example") is None
    assert await resolve(world(Crm(ann_crm())), email="test@example.com") is None
    assert await resolve(world(Crm(ann_crm())), email="not an address") is None
    crm = Crm(ann_crm())
    assert await resolve(world(crm), ref=(crm, "003-nobody")) is None
    assert await resolve(world(crm)) is None


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["email"], {"003A"}),
        (["email", "phone"], {"003A", "33"}),
        (["link", "email"], {"003A", "cus_l"}),
        (["link", "email", "phone"], {"003A", "33", "cus_l"}),
        # The anchor is always looked up, whatever keys are followed.
        (["link"], {"003A", "cus_l"}),
    ],
)
async def test_only_the_configured_match_keys_are_followed(keys, expected):
    ctx = world(
        Crm(ann_crm()),
        Ticketing(person("zendesk", "33", "Ann Lee", phone=PA)),
        Billing(person("stripe", "cus_l", "Ann Lee", links={"salesforce": "003A"})),
        settings=IdentitySettings(match_keys=tuple(keys)),
    )
    profile, _ = await resolved(ctx, email="ann@acme.example")
    assert {rid for _, rid in sources(profile)} == expected


async def test_rounds_are_bounded():
    # ann -> (link) cus_l -> (its email) zendesk 12: two hops after the anchor.
    chain = person("stripe", "cus_l", "Ann Lee", email="a.lee@acme.example",
                   links={"salesforce": "003A"})  # fmt: skip
    far = person("zendesk", "12", "Ann Lee", email="a.lee@acme.example")
    for rounds, expected in ((1, {"003A"}), (2, {"003A", "cus_l"}), (3, {"003A", "cus_l", "12"})):
        ctx = world(Crm(ann_crm()), Billing(chain), Ticketing(far),
                    settings=IdentitySettings(max_rounds=rounds))  # fmt: skip
        profile, _ = await resolved(ctx, email="ann@acme.example")
        assert {rid for _, rid in sources(profile)} == expected, rounds


async def test_a_record_found_by_several_keys_is_linked_once_under_the_strongest():
    both = person("zendesk", "11", "Ann Lee", email="ann@acme.example", phone=PA,
                  links={"salesforce": "003A"})  # fmt: skip
    profile, _ = await resolved(world(Crm(ann_crm()), Ticketing(both)), email="ann@acme.example")
    assert [link.matched_by for link in profile.records(Domain.TICKETING)] == ["email"]
    crm = Crm(ann_crm())
    profile, _ = await resolved(world(crm, Ticketing(both)), ref=(crm, "003A"))
    assert [link.matched_by for link in profile.records(Domain.TICKETING)] == ["link"]


async def test_a_marketing_member_in_two_lists_is_two_records_of_one_person():
    ctx = world(
        Crm(ann_crm()),
        Marketing(member("m_a", "Ann Lee", "ann@acme.example", "L2"),
                  member("m_a", "Ann Lee", "ann@acme.example", "L1")),
    )  # fmt: skip
    profile, golden = await resolved(ctx, email="ann@acme.example")
    # In list order, whatever order the vendor answered in.
    assert [m.record.list_id for m in profile.records(Domain.MARKETING)] == ["L1", "L2"]
    assert golden.quality.duplicates == ()  # lists of one member, not duplicates


async def test_explicit_links_are_accepted_whatever_else_the_record_says():
    # An accounts-payable customer linked to Ann's contact, under a company name
    # next to her own billing record: the link is the strongest key there is.
    linked = person("stripe", "cus_z", "Zenith Corp", email="ap@zenith.example",
                    links={"salesforce": "003A"})  # fmt: skip
    own = person("stripe", "cus_a", "Ann Lee", email="ann@acme.example")
    profile, golden = await resolved(
        world(Crm(ann_crm()), Billing(own, linked)), email="ann@acme.example"
    )
    assert how(profile) == {"003A": "email", "cus_a": "email", "cus_z": "link"}
    assert golden.get("name") == "Ann Lee"


async def test_a_link_to_a_record_already_found_is_not_read_again():
    crm = Crm(ann_crm())
    billing = Billing(person("stripe", "cus_a", "Ann Lee", email="ann@acme.example",
                             links={"salesforce": "003A"}))  # fmt: skip
    profile, _ = await resolved(world(crm, billing), email="ann@acme.example")
    assert sources(profile) == {("salesforce", "003A"), ("stripe", "cus_a")}
    assert crm.keys_asked("people_by_id") == set()
    # From the billing record, the contact is read once, by its id.
    crm = Crm(ann_crm())
    billing = Billing(*billing.records)
    await resolved(world(crm, billing), ref=(billing, "cus_a"))
    assert [keys for method, keys in crm.asked if method == "people_by_id"] == [("003A",)]


def test_a_profile_links_each_record_once():
    crm = Crm()
    profile = Profile()
    a, b = person("salesforce", "003A"), person("salesforce", "003B")
    assert [link.record for link in profile.add(crm, [a, a, b], "email")] == [a, b]
    assert profile.add(crm, [b], "phone") == []
    assert [link.matched_by for link in profile.records(Domain.CRM)] == ["email", "email"]


async def test_ids_made_of_personal_data_are_marked_and_never_candidates():
    # Mailchimp's member id is the hash of the email: personal data itself.
    team = MarketingMember(
        source=SourceRef(system="mailchimp", record_id="5f1c", id_pii=PiiKind.EMAIL),
        email="team@acme.example", list_id="L1",
    )  # fmt: skip
    ann_pays = person("stripe", "cus_1", "Ann Lee", email="team@acme.example",
                      links={"salesforce": "003A"})  # fmt: skip
    bob_pays = person("stripe", "cus_2", "Bob Kim", email="team@acme.example",
                      links={"salesforce": "003B"})  # fmt: skip
    billing = Billing(ann_pays, bob_pays)
    ctx = world(Crm(ann_crm(), bob_crm()), billing, Marketing(team))
    _, golden = await resolved(ctx, ref=(billing, "cus_1"))
    matches = {m.record_id: m for m in golden.quality.possible_matches}
    assert matches["5f1c"].id_pii is PiiKind.EMAIL
    assert matches["5f1c"].reason == "shared email"
    assert matches["cus_2"].id_pii is None
    with pytest.raises(AmbiguousCustomer) as caught:
        await resolve(ctx, email="team@acme.example")
    assert caught.value.candidates == (("stripe", "cus_1"), ("stripe", "cus_2"))
