from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConfigError
from gateway.identity import (
    CustomerIds,
    IdentitySettings,
    InvalidCustomerId,
    identity_settings_from_mapping,
)
from gateway.survivorship import DEFAULT_RULES, Rule

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
        ({"match_keys": []}, "match_keys"),
        ({"match_keys": "email"}, "match_keys"),
        ({"match_keys": 5}, "match_keys"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"max_rounds": 6}, "max_rounds"),
        ({"max_rounds": True}, "max_rounds"),
        ({"max_rounds": "3"}, "max_rounds"),
        ({"blocked": ["x"]}, "blocked"),
        ({"blocked": {"emails": "x"}}, "blocked.emails"),
        ({"blocked": {"phones": 5}}, "blocked.phones"),
        ({"blocked": {"emails": [1]}}, "blocked.emails"),
        (
            {"blocked": {"email": ["x@y.example"]}},
            r"identity.blocked: unknown key\(s\) \['email'\]",
        ),
        ({"conflict_fields": "name"}, "conflict_fields"),
        ({"conflict_fields": ["name", "shoe_size"]}, "shoe_size"),
        ({"max_round": 2}, r"identity: unknown key\(s\) \['max_round'\]"),
        ({"survivorship": {"name": {"rule": "loudest"}}}, "rule"),
        ({"survivorship": {"name": {"sources": "crm"}}}, "sources"),
        ({"survivorship": {"name": {"sources": 5}}}, "sources"),
        ({"survivorship": {"name": {"rul": "most_recent"}}}, r"unknown key\(s\) \['rul'\]"),
        ({"survivorship": {"nmae": {"rule": "most_recent"}}}, "survivorship.nmae: unknown"),
        ({"survivorship": {"name": "most_recent"}}, "survivorship.name must be a mapping"),
        ({"survivorship": ["name"]}, "survivorship must be a mapping"),
        ("nope", "mapping"),
    ],
)
def test_identity_config_errors(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        identity_settings_from_mapping(raw)


def test_identity_config_is_read_as_given():
    s = identity_settings_from_mapping(
        {
            "match_keys": ["email", "link", "email"],
            "max_rounds": 5,
            "blocked": {"emails": [" Bot@Spam.example "], "phones": ["(415) 555-0199", "n/a"]},
            "conflict_fields": ["title"],
            "survivorship": {"phone": {"rule": "most_recent", "sources": ["zendesk"]}},
        }
    )
    assert s.match_keys == ("email", "link")
    assert s.max_rounds == 5
    assert s.blocked_emails == ("bot@spam.example",)
    assert s.blocked_phones == ("+14155550199", "n/a")
    assert s.conflict_fields == ("title",)
    assert s.rules["phone"] == Rule("most_recent", ("zendesk",))
    assert s.rules["name"] == DEFAULT_RULES["name"]
    # The default sources stay when only the rule changes.
    only_rule = identity_settings_from_mapping({"survivorship": {"email": {"rule": "most_recent"}}})
    assert only_rule.rules["email"] == Rule("most_recent", DEFAULT_RULES["email"].sources)
    assert identity_settings_from_mapping(None) == IdentitySettings()
    assert identity_settings_from_mapping({}) == IdentitySettings()
    assert identity_settings_from_mapping({"max_rounds": 1}).max_rounds == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nope", "identity must be a mapping"),
        ({"match_keys": ["fax"]}, "identity.match_keys must name some of link, email, phone"),
        ({"max_rounds": 9}, "identity.max_rounds must be an integer from 1 to 5"),
        ({"blocked": "x"}, "identity.blocked must map 'emails' and/or 'phones' to lists"),
        ({"blocked": {"emails": "x"}}, "identity.blocked.emails must be a list of strings"),
        ({"blocked": {"phones": "x"}}, "identity.blocked.phones must be a list of strings"),
        ({"conflict_fields": "x"}, "identity.conflict_fields must be a list of strings"),
        ({"survivorship": 1}, "identity.survivorship must be a mapping of attribute to rule"),
        ({"survivorship": {"name": {"rule": "x"}}},
         "identity.survivorship.name.rule must be one of source_priority, most_recent, "
         "most_frequent"),
        ({"survivorship": {"x": {}}},
         "identity.survivorship.x: unknown attribute; expected one of email, first_name, "
         "last_name, name, phone, title"),
    ],
)  # fmt: skip
def test_identity_config_messages_say_what_is_expected(raw, message):
    with pytest.raises(ConfigError) as caught:
        identity_settings_from_mapping(raw)
    assert str(caught.value) == message
