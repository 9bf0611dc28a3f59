"""What a masked value shows: enough to recognise it, never enough to use it.

Each kind has its own masker, and ``mask(kind, value)`` must pick that one:
a name masked like an email (``***``) or an email masked like a name
(``j***``, the domain gone) is a different answer on every masked field.
"""

from __future__ import annotations

import pytest

from gateway.policy import PiiKind, mask, mask_email, mask_last4, mask_name, mask_phone


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("jane.doe@example.com", "j***@example.com"),
        ("J@Example.org", "J***@Example.org"),
        ("  jane@example.com \n", "j***@example.com"),
        ("@example.com", "***@example.com"),
        # The domain is what follows the last "@": a quoted local part with an
        # "@" in it never shows.
        ('"jane@home"@example.com', '"***@example.com'),
        ("jane@", "***"),
        ("not-an-address", "***"),
    ],
)
def test_mask_email_keeps_the_first_letter_and_the_domain(value, masked):
    assert mask_email(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+14155550123", "+1-***-***-0123"),
        ("+81 90-1234-5678", "+81-***-***-5678"),
        ("+442071838750", "+44-***-***-8750"),
        ("(415) 555-0123", "***-***-0123"),
        ("  +1 415 555 0123", "+1-***-***-0123"),
        # Seven digits (a local number) are enough to be a phone; six are not.
        ("555-0123", "***-***-0123"),
        ("55-0123", "***"),
        # A "+" that starts no known country code: no country to show.
        ("+999 1234567", "***-***-4567"),
        ("+1 555", "***"),
        ("12345", "***"),
    ],
)
def test_mask_phone_keeps_country_code_and_last_four(value, masked):
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [("Jane Doe", "J***"), ("  jane", "j***"), ("X", "X***"), ("  ", ""), ("", "")],
)
def test_mask_name_keeps_the_initial(value, masked):
    assert mask_name(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("4242 4242 4242 4242", "***4242"),
        ("cus_NffrFeUfNV2Hib", "***2Hib"),
        # Eight letters and digits are the shortest value that shows its last 4.
        ("ABCD-1234", "***1234"),
        ("ABC-1234", "***"),
        ("1234567", "***"),
    ],
)
def test_mask_last4_shows_the_last_four_of_long_values_only(value, masked):
    assert mask_last4(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("jane@example.com", "j***@example.com"),
        ("+14155550123", "+1-***-***-0123"),
        ("(415) 555-0123", "***-***-0123"),
        ("Jane Doe", "J***"),
        ("X", "X***"),
        # More than half digits: an account number; half or fewer: words.
        ("DE89370400440532013000", "***3000"),
        ("ABC12345", "***2345"),
        ("ABCD1234", "A***"),
        ("Unit 12345", "U***"),
    ],
)
def test_mask_other_goes_by_shape(value, masked):
    assert mask(PiiKind.OTHER, value) == masked


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        (PiiKind.EMAIL, "jane.doe@example.com", "j***@example.com"),
        (PiiKind.PHONE, "+14155550123", "+1-***-***-0123"),
        (PiiKind.NAME, "Jane Doe", "J***"),
        (PiiKind.ID, "4000056655665556", "***5556"),
        (PiiKind.OTHER, "Jane Doe", "J***"),
    ],
)
def test_each_kind_has_its_own_masker(kind, value, masked):
    assert mask(kind, value) == masked


def test_every_kind_can_be_masked():
    for kind in PiiKind:
        assert mask(kind, "Jane Doe 4155550123 jane@example.com")


def test_masked_value_never_contains_the_original():
    for kind, value in [
        (PiiKind.EMAIL, "secret.person@example.com"),
        (PiiKind.PHONE, "+14155550123"),
        (PiiKind.NAME, "Secretperson"),
        (PiiKind.ID, "4000056655665556"),
        (PiiKind.OTHER, "Secret Person"),
    ]:
        assert value not in mask(kind, value)
