"""Maskers for PII values: enough left to recognise a value, not to use it.

Re-exported by :mod:`gateway.policy`, which decides when they apply.
"""

from __future__ import annotations

import phonenumbers

from connectors.sdk import PiiKind

__all__ = ["PiiKind", "mask", "mask_email", "mask_last4", "mask_name", "mask_phone"]

_MASK = "***"


def mask_email(value: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not domain:
        return _MASK
    return f"{local[:1]}{_MASK}@{domain}"


def mask_phone(value: str) -> str:
    """Country code and last 4 digits: ``+14155550123`` -> ``+1-***-***-0123``."""
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 7:
        return _MASK
    country: int | None = None
    if value.strip().startswith("+"):
        try:
            country = phonenumbers.parse(value, None).country_code
        except phonenumbers.NumberParseException:
            country = None
    tail = "".join(digits[-4:])
    return f"+{country}-***-***-{tail}" if country else f"***-***-{tail}"


def mask_name(value: str) -> str:
    """``Jane Doe`` -> ``J***``."""
    stripped = value.strip()
    return f"{stripped[:1]}{_MASK}" if stripped else ""


def mask_last4(value: str) -> str:
    """Card-like values and ids: ``4242 4242 4242 4242`` -> ``***4242``; short ones fully."""
    chars = [c for c in value if c.isalnum()]
    return _MASK + "".join(chars[-4:]) if len(chars) >= 8 else _MASK


def _mask_other(value: str) -> str:
    if "@" in value:
        return mask_email(value)
    if all(c.isdigit() or c in "+-(). " for c in value):
        return mask_phone(value)
    if sum(c.isdigit() for c in value) * 2 > len(value):
        return mask_last4(value)
    return mask_name(value)


_MASKERS = {
    PiiKind.EMAIL: mask_email,
    PiiKind.PHONE: mask_phone,
    PiiKind.NAME: mask_name,
    PiiKind.ID: mask_last4,
    PiiKind.OTHER: _mask_other,
}


def mask(kind: PiiKind, value: str) -> str:
    return _MASKERS[kind](value)
