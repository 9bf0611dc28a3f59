"""The gateway's customer ids: opaque, stable for one key, and refused when forged."""

from __future__ import annotations

import base64

import pytest

from gateway._customer_ids import CustomerIds, InvalidCustomerId

KEY = bytes(range(64))


@pytest.mark.parametrize(
    "anchor", ["e:ann@example.com", "r:zendesk:360000000003", "r:stripe:cus_1", "e:" + "x" * 200]
)
def test_an_id_gives_back_its_anchor_and_hides_it(anchor):
    ids = CustomerIds(KEY)
    encoded = ids.encode(anchor)
    assert encoded.startswith("c360_")
    assert anchor.split(":")[-1] not in encoded
    assert "=" not in encoded  # URL-safe, unpadded
    assert CustomerIds(KEY).decode(encoded) == anchor  # another process, the same key


def test_one_anchor_one_id_and_two_anchors_two_ids():
    ids = CustomerIds(KEY)
    assert ids.encode("e:a@x.io") == CustomerIds(KEY).encode("e:a@x.io")
    assert ids.encode("e:a@x.io") != ids.encode("e:b@x.io")
    assert CustomerIds(bytes(64)).encode("e:a@x.io") != ids.encode("e:a@x.io")


def test_ids_stay_right_past_the_remembered_ones():
    ids = CustomerIds(KEY)
    first = ids.encode("e:first@x.io")
    for i in range(5000):
        ids.encode(f"e:{i}@x.io")
    assert ids.encode("e:first@x.io") == first
    assert ids.decode(ids.encode("e:4999@x.io")) == "e:4999@x.io"


def _forged(anchor: bytes, key: bytes = KEY) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    token = AESSIV(key).encrypt(anchor, None)
    return "c360_" + base64.urlsafe_b64encode(token).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "given",
    [
        "",
        "c360_",
        "c360",
        "cus_123",
        "C360_abc",
        "c360_!!!!",
        "c360_" + "A" * 600,
        "c360_" + "A" * 43,  # the shape of an id, not one
        _forged(b"x:not an anchor"),
        _forged(b"e:a@x.io", key=bytes(64)),  # issued under another key
    ],
)
def test_anything_else_is_not_a_customer_id(given):
    with pytest.raises(InvalidCustomerId, match=r"^not a c360 customer id$"):
        CustomerIds(KEY).decode(given)


def test_an_edited_id_is_refused():
    encoded = CustomerIds(KEY).encode("e:a@x.io")
    flipped = encoded[:-2] + ("A" if encoded[-2] != "A" else "B") + encoded[-1]
    with pytest.raises(InvalidCustomerId):
        CustomerIds(KEY).decode(flipped)
    assert CustomerIds(KEY).decode(encoded) == "e:a@x.io"


def test_an_id_of_the_longest_accepted_length_is_read():
    ids = CustomerIds(KEY)
    anchor = "e:" + "y" * 380
    encoded = ids.encode(anchor)
    assert 500 < len(encoded) <= 600
    assert ids.decode(encoded) == anchor


def test_an_invalid_id_is_a_value_error():
    assert issubclass(InvalidCustomerId, ValueError)


def _anchor_of_id_length(ids: CustomerIds, length: int) -> str | None:
    for size in range(400, 480):
        anchor = "e:" + "z" * size
        if len(ids.encode(anchor)) == length:
            return anchor
    return None


def test_ids_up_to_600_characters_are_read_and_longer_ones_are_not():
    ids = CustomerIds(KEY)
    at_limit = _anchor_of_id_length(ids, 600)
    assert at_limit is not None
    assert ids.decode(ids.encode(at_limit)) == at_limit
    over = _anchor_of_id_length(ids, 601)
    assert over is not None
    with pytest.raises(InvalidCustomerId):
        ids.decode(ids.encode(over))


@pytest.mark.parametrize("junk", [".", " ", "!", "~~~~"])
def test_an_issued_id_with_junk_inserted_is_not_an_id(junk):
    ids = CustomerIds(KEY)
    encoded = ids.encode("e:a@x.io")
    with pytest.raises(InvalidCustomerId):
        ids.decode(encoded[:8] + junk + encoded[8:])
