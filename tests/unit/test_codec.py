"""The cache's JSON codec: canonical records round-trip exactly, nothing else decodes."""

from __future__ import annotations

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
from gateway._codec import CodecError, dumps, loads

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


def test_values_outside_the_models_are_refused():
    with pytest.raises(CodecError, match="NotARecord"):
        dumps([NotARecord()])
    with pytest.raises(CodecError):
        dumps({"when": datetime(2024, 1, 1).time()})


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
