"""The gateway's customer id: the anchor encrypted deterministically (AES-SIV).

Stable across processes that share ``C360_ID_KEY``, opaque to clients, and
reversible without a database. An anchor is ``e:<email>`` (an address that
identified exactly one person when the id was issued) or
``r:<system>:<record id>``.

Errors::

    ValueError
    └── InvalidCustomerId   an id this gateway did not issue (or another key did)
"""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

__all__ = ["CustomerIds", "InvalidCustomerId"]

_ID_PREFIX = "c360_"
# Ids are deterministic (AES-SIV), so an anchor's id can be remembered.
_ENCODED_IDS = 4096


class InvalidCustomerId(ValueError):
    """A customer id that this gateway did not issue."""


class CustomerIds:
    """Anchors are ``e:<email>`` or ``r:<system>:<record id>``."""

    def __init__(self, key: bytes) -> None:
        self._siv = AESSIV(key)
        self._encoded: dict[str, str] = {}

    def encode(self, anchor: str) -> str:
        known = self._encoded.get(anchor)
        if known is not None:
            return known
        token = self._siv.encrypt(anchor.encode(), None)
        encoded = _ID_PREFIX + base64.urlsafe_b64encode(token).rstrip(b"=").decode()
        if len(self._encoded) >= _ENCODED_IDS:
            self._encoded.clear()
        self._encoded[anchor] = encoded
        return encoded

    def decode(self, customer_id: str) -> str:
        if not customer_id.startswith(_ID_PREFIX) or len(customer_id) > 600:
            raise InvalidCustomerId("not a c360 customer id")
        raw = customer_id.removeprefix(_ID_PREFIX)
        try:
            # validate: an issued id with other characters in it is not that id.
            token = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
            anchor = self._siv.decrypt(token, None).decode()
        except (ValueError, InvalidTag) as exc:
            raise InvalidCustomerId("not a c360 customer id") from exc
        if not anchor.startswith(("e:", "r:")):
            raise InvalidCustomerId("not a c360 customer id")
        return anchor
