from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.identity import CustomerIds, InvalidCustomerId

KEY = b"k" * 32


@given(st.emails())
def test_customer_id_round_trips_and_is_opaque(email):
    ids = CustomerIds(KEY)
    token = ids.encode(email.lower())
    assert ids.decode(token) == email.lower()
    assert email.lower().split("@")[0] not in token or len(email.split("@")[0]) < 3
    assert token == CustomerIds(KEY).encode(email.lower())  # stable across instances


def test_other_key_or_tampered_id_is_rejected():
    token = CustomerIds(KEY).encode("ann@example.com")
    with pytest.raises(InvalidCustomerId):
        CustomerIds(os.urandom(32)).decode(token)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidCustomerId):
        CustomerIds(KEY).decode(flipped)
    for junk in ["", "c360_", "c360_!!!", "cus_123", "c360_" + "A" * 700]:
        with pytest.raises(InvalidCustomerId):
            CustomerIds(KEY).decode(junk)
