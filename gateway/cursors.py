"""Opaque, tamper-evident pagination cursors.

A cursor is ``base64url(json) + "." + base64url(hmac)``: it survives a round
trip through any client, says nothing readable, and a forged or edited one
(or one minted for another list or search text) fails verification.

The HMAC key is derived from the gateway's id key (``C360_ID_KEY``), so every
process that shares it accepts the others' cursors, also after a restart;
``c360 serve`` refuses to start without it (:func:`gateway.config.require_id_key`).

Errors::

    ValueError
    └── InvalidCursor   not a cursor this gateway issued for this list
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

__all__ = ["CursorCodec", "InvalidCursor"]


class InvalidCursor(ValueError):
    """A cursor this gateway did not issue for this list."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        """``key``: the gateway's id key; cursors get a key of their own derived from it."""
        self._key = hashlib.sha256(b"c360 cursors\0" + key).digest()

    def _mac(self, scope: str, body: bytes) -> bytes:
        return hmac.new(self._key, scope.encode() + b"\0" + body, hashlib.sha256).digest()[:16]

    def encode(self, scope: str, value: Any) -> str:
        """``scope`` names the list (e.g. ``"search:" + text``) the cursor belongs to."""
        body = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(body)}.{_b64(self._mac(scope, body))}"

    def decode(self, scope: str, cursor: str) -> Any:
        if len(cursor) > 1024 or cursor.count(".") != 1:
            raise InvalidCursor("not a cursor issued by this gateway")
        body_text, mac_text = cursor.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError as exc:
            raise InvalidCursor("not a cursor issued by this gateway") from exc
        if not hmac.compare_digest(mac, self._mac(scope, body)):
            raise InvalidCursor("not a cursor issued by this gateway for this list")
        try:
            return json.loads(body)
        except ValueError as exc:  # pragma: no cover - the MAC already vouched for it
            raise InvalidCursor("not a cursor issued by this gateway") from exc
