from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError
from gateway.identity import CustomerIds, InvalidCustomerId, identity_settings_from_mapping

KEY = b"k" * 32


@given(st.emails())
def test_customer_id_round_trips_and_is_opaque(email):
    ids = CustomerIds(KEY)
    anchor = "e:" + email.lower()
    token = ids.encode(anchor)
    assert ids.decode(token) == anchor
    local = email.split("@")[0].lower()
    assert len(local) < 4 or local not in token
    assert token == CustomerIds(KEY).encode(anchor)  # stable across instances


def test_remembered_ids_stay_right_past_the_bound():
    ids, fresh = CustomerIds(KEY), CustomerIds(KEY)
    anchors = [f"e:person{i}@example.com" for i in range(5000)]
    tokens = [ids.encode(a) for a in anchors]
    assert len(set(tokens)) == len(anchors)
    for anchor, token in zip(anchors[::97], tokens[::97], strict=True):
        assert ids.encode(anchor) == token == fresh.encode(anchor)
        assert ids.decode(token) == anchor


def test_other_key_or_tampered_id_is_rejected():
    token = CustomerIds(KEY).encode("e:ann@example.com")
    with pytest.raises(InvalidCustomerId):
        CustomerIds(os.urandom(32)).decode(token)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidCustomerId):
        CustomerIds(KEY).decode(flipped)
    for junk in [
        "",
        "c360_",
        "c360_!!!",
        "cus_123",
        "c360_" + "A" * 700,
        CustomerIds(KEY).encode("x:y"),
    ]:
        with pytest.raises(InvalidCustomerId):
            CustomerIds(KEY).decode(junk)


def test_blocked_values_are_never_keys():
    s = identity_settings_from_mapping(
        {"blocked": {"emails": ["*@spam.example"], "phones": ["+14155550199"]}}
    )
    assert s.email_key(" Ann@Example.com ") == "ann@example.com"
    assert s.email_key("bot@spam.example") is None
    assert s.phone_key("(415) 555-0199") is None
    assert s.phone_key("n/a") is None
    defaults = identity_settings_from_mapping(None)
    assert defaults.email_key("TEST@example.com") is None
    assert defaults.email_key("noreply@shop.example") is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"match_keys": ["email", "fax"]}, "match_keys"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"blocked": ["x"]}, "blocked"),
        ({"blocked": {"emails": "x"}}, "blocked.emails"),
        ({"survivorship": {"name": {"rule": "loudest"}}}, "rule"),
        ({"survivorship": {"name": {"sources": "crm"}}}, "sources"),
        ("nope", "mapping"),
    ],
)
def test_identity_config_errors(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        identity_settings_from_mapping(raw)
