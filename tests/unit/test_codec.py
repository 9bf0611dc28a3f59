"""The cache's JSON codec: canonical records round-trip exactly, nothing else decodes."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sdk import (
    Consent,
    Domain,
    EngagementEvent,
    Invoice,
    MarketingMember,
    Opportunity,
    Organization,
    Person,
    SourceRef,
    Subscription,
    Ticket,
)
from gateway._codec import CodecError, FrozenDict, FrozenList, dumps, freeze, loads

text = st.text(max_size=12)
maybe_text = st.none() | text
money = st.none() | st.integers(-(10**12), 10**12)
ratio = st.none() | st.floats(allow_nan=False)
zones = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(minutes=330))])
moment = st.none() | st.datetimes(timezones=zones) | st.datetimes()
day = st.none() | st.dates()

source = st.builds(SourceRef, system=text, record_id=text, updated_at=moment, url=maybe_text)
subscription = st.builds(
    Subscription,
    source=source,
    customer_id=maybe_text,
    status=maybe_text,
    plan=maybe_text,
    amount=money,
    currency=maybe_text,
    interval=maybe_text,
    current_period_end=moment,
)
person = st.builds(
    Person,
    source=source,
    name=maybe_text,
    email=maybe_text,
    phone=maybe_text,
    organization_id=maybe_text,
    links=st.dictionaries(text, text, max_size=3),
    subscriptions=st.lists(subscription, max_size=2).map(tuple),
)
member = st.builds(
    MarketingMember,
    source=source,
    email=maybe_text,
    status=maybe_text,
    list_id=maybe_text,
    consents=st.lists(
        st.builds(Consent, channel=text, status=text, updated_at=moment), max_size=3
    ).map(tuple),
    avg_open_rate=ratio,
    avg_click_rate=ratio,
)
record = st.one_of(
    person,
    member,
    subscription,
    st.builds(Organization, source=source, name=maybe_text, parent_id=maybe_text),
    st.builds(Opportunity, source=source, amount=ratio, close_date=day, stage=maybe_text),
    st.builds(Ticket, source=source, subject=maybe_text, created_at=moment),
    st.builds(Invoice, source=source, amount_due=money, created_at=moment),
    st.builds(EngagementEvent, source=source, member_id=text, kind=text, occurred_at=moment),
)
# What a connector method answers for one key: a record, a list or tuple of them, or nothing.
answer = st.none() | record | st.lists(record, max_size=3) | st.lists(record, max_size=3).map(tuple)


@given(answer)
def test_every_canonical_answer_round_trips_exactly(value):
    assert loads(dumps(value)) == value


def _datetimes(value):
    if isinstance(value, datetime):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _datetimes(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _datetimes(getattr(value, name))


@given(st.lists(record, max_size=3))
def test_datetimes_keep_their_offset_and_tuples_stay_tuples(records):
    # Aware datetimes compare equal across offsets: check the offsets themselves.
    after = loads(dumps(records))
    offsets = [d.utcoffset() for d in _datetimes(records)]
    assert [d.utcoffset() for d in _datetimes(after)] == offsets
    for old, new in zip(records, after, strict=True):
        if isinstance(old, Person | MarketingMember):
            assert type(new.subscriptions if isinstance(new, Person) else new.consents) is tuple


def test_mappings_that_look_like_tags_and_non_string_keys_survive():
    value = {"$": "Person", "f": 1, "nested": [{"$": "tuple"}], "when": date(2024, 2, 29)}
    assert loads(dumps(value)) == value
    assert loads(dumps({1: "a", ("x", 2): "b"})) == {1: "a", ("x", 2): "b"}
    assert loads(dumps(Domain.CRM)) is Domain.CRM


def test_the_format_is_plain_json():
    blob = dumps(Person(source=SourceRef(system="crm", record_id="1"), email="ada@example.com"))
    data = json.loads(blob)
    assert data["$"] == "Person"
    assert data["f"]["email"] == "ada@example.com"


class NotARecord:
    pass


@pytest.mark.parametrize("encode", [dumps, freeze])
def test_values_outside_the_models_are_refused(encode):
    with pytest.raises(CodecError, match="NotARecord"):
        encode([NotARecord()])
    with pytest.raises(CodecError):
        encode({"when": datetime(2024, 1, 1).time()})


@pytest.mark.parametrize(
    "blob",
    [
        b"not json",
        b"\xff\xfe",
        b'{"$": "NotARecord", "f": {}}',
        b'{"$": "subprocess.Popen", "f": {"args": "id"}}',
        b'{"$": "Person", "f": {"source": null, "no_such_field": 1}}',
        b'{"$": "datetime", "v": "yesterday"}',
        b'{"$": "tuple"}',
        b'{"$": "Domain", "v": "nonsense"}',
        pickle.dumps({"a": 1}),
    ],
)
def test_anything_else_fails_to_decode_with_a_codec_error(blob):
    with pytest.raises(CodecError):
        loads(blob)


def _shape(value):
    """The container types of a value, all the way down (lists and dicts as such)."""
    if isinstance(value, list):
        return ["list", *(_shape(item) for item in value)]
    if isinstance(value, tuple):
        return ["tuple", *(_shape(item) for item in value)]
    if isinstance(value, dict):
        return ["dict", *((type(k), _shape(v)) for k, v in value.items())]
    if hasattr(value, "__dataclass_fields__"):
        return [type(value), *(_shape(getattr(value, name)) for name in value.__dataclass_fields__)]
    return type(value)


@given(answer)
def test_freezing_gives_what_a_round_trip_through_the_store_gives(value):
    frozen = freeze(value)
    assert frozen == loads(dumps(value)) == value
    assert _shape(frozen) == _shape(loads(dumps(value)))


def test_freezing_normalises_mappings_and_tuples_as_the_json_round_trip_does():
    odd = {Domain.CRM: (1, [2]), "$": "x"}
    assert freeze(odd) == loads(dumps(odd))
    plain = {Domain.CRM: "a"}
    assert type(next(iter(freeze(plain)))) is type(next(iter(loads(dumps(plain))))) is str
    assert freeze({1: "a", ("x", 2): "b"}) == {1: "a", ("x", 2): "b"}
    assert freeze(Domain.CRM) is Domain.CRM


def test_a_frozen_value_cannot_be_changed_in_place_but_copies_can():
    ref = SourceRef(system="crm", record_id="1")
    people = freeze([Person(source=ref, links={"zendesk": "z1"})])
    with pytest.raises(TypeError, match="shared"):
        people.append(people[0])
    with pytest.raises(TypeError, match="shared"):
        people[0].links["stripe"] = "cus_1"
    with pytest.raises(TypeError, match="shared"):
        people += []
    assert people == [Person(source=ref, links={"zendesk": "z1"})]
    for mine in (list(people), people[:], copy.copy(people), copy.deepcopy(people)):
        mine.append(people[0])
        assert len(mine) == 2
    assert type(pickle.loads(pickle.dumps(people))) is list
    links = copy.copy(people[0].links)
    links["stripe"] = "cus_1"
    assert json.loads(json.dumps(people[0].links)) == {"zendesk": "z1"}


def test_freezing_copies_what_could_change_and_keeps_what_cannot():
    ref = SourceRef(system="crm", record_id="1")
    ticket = Ticket(source=ref, subject="Help")
    person = Person(source=ref, links={"zendesk": "z1"})
    answer = [ticket, person]
    frozen = freeze(answer)
    assert frozen[0] is ticket  # immutable all the way down: shared
    assert frozen[1] is not person and frozen[1].links is not person.links
    person.links["stripe"] = "cus_1"  # the caller's own copy stays theirs
    assert frozen[1].links == {"zendesk": "z1"}
    assert isinstance(frozen, FrozenList) and isinstance(frozen[1].links, FrozenDict)
