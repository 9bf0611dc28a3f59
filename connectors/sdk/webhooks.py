"""Vendor webhooks, the SDK side: is a delivery authentic, and which cached answers did it spoil?

A connector package that can receive its vendor's webhooks adds a ``webhook``
module with a module-level ``handler`` (a :class:`WebhookHandler`); the gateway
finds it by convention next to the connector class (``connectors.stripe`` ->
``connectors.stripe.webhook:handler``) and serves it at
``POST /webhooks/{connector name}``. The handler is pure: :meth:`verify`
checks the delivery against the configured secret, :meth:`invalidations`
names the ``(method, key)`` pairs of the gateway's cache that may now hold an
old copy -- the connector's own batch-method names and the DataLoader keys
they were called with (normalized email, E.164 phone, record id,
``"<system>:<id>"`` for ``people_linked_to``, parent ids for dependent lists).

Signature schemes, with a ``sign_*`` helper each (the sandbox signs with them)::

    Stripe-style   Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
                   several v1 entries allowed (secret rotation); 300 s tolerance
    Zendesk-style  X-Zendesk-Webhook-Signature: base64(HMAC-SHA256(secret, timestamp + body))
                   X-Zendesk-Webhook-Signature-Timestamp: ISO 8601 (or unix seconds)
    shared secret  X-C360-Webhook-Secret: <secret>, or the secret as the last URL
                   segment (POST /webhooks/{connector}/{secret}); the gateway hands a
                   URL secret to the handler in that same header
    c360-signed    X-C360-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
                   the gateway's own scheme, for a relay in front of a vendor that signs
                   nothing (``webhook_signature: c360`` in the connector's config)

Replays: a signed timestamp bounds a replay to :data:`TOLERANCE`; inside it, the
gateway accepts each event once, by the id :meth:`WebhookHandler.event_id`
gives (an optional method: a handler without it is not deduplicated). A shared
secret carries no time, so such deliveries can be replayed for ever by whoever
saw one: require the c360 signature where that matters.

Errors join the SDK's tree (:class:`~connectors.sdk.errors.ConnectorError`)::

    WebhookRejected        not an authentic delivery (``reason``: a short code)   401
    └── WebhookMalformed   authentic, but the payload cannot be read              400

:class:`InvalidMutation` is the sandbox's: a ``POST /_sandbox/mutate`` it cannot apply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from connectors.sdk.base import normalize_email, normalize_phone
from connectors.sdk.errors import ConnectorError
from connectors.sdk.models import Domain

__all__ = [
    "C360_SIGNATURE_HEADER",
    "DEPENDENT_LISTS",
    "LINKED",
    "PERSON_LOOKUPS",
    "SECRET_HEADER",
    "TOLERANCE",
    "C360Signed",
    "InvalidMutation",
    "Invalidation",
    "WebhookHandler",
    "WebhookMalformed",
    "WebhookRejected",
    "check_shared_secret",
    "header",
    "json_body",
    "person_invalidations",
    "sign_c360",
    "sign_stripe",
    "sign_zendesk",
    "signed_event_id",
    "timestamped_event_id",
    "verify_c360",
    "verify_stripe",
    "verify_zendesk",
]

SECRET_HEADER = "X-C360-Webhook-Secret"  # noqa: S105  # a header name
C360_SIGNATURE_HEADER = "X-C360-Signature"
#: Seconds a signed timestamp may be away from our clock (Stripe's default).
TOLERANCE = 300.0

#: The person lookups of each domain: (by email, by id, by phone or None).
PERSON_LOOKUPS: dict[Domain, tuple[str, str, str | None]] = {
    Domain.CRM: ("people_by_email", "people_by_id", "people_by_phone"),
    Domain.TICKETING: ("requesters_by_email", "requesters_by_id", "requesters_by_phone"),
    Domain.BILLING: ("customers_by_email", "customers_by_id", "customers_by_phone"),
    Domain.MARKETING: ("members_by_email", "members_by_id", None),
}
#: Lists keyed by a person's id in that system.
DEPENDENT_LISTS: dict[Domain, str] = {
    Domain.TICKETING: "tickets_of_requesters",
    Domain.BILLING: "invoices_of_customers",
    Domain.MARKETING: "activity_of_members",
}
LINKED = "people_linked_to"


class WebhookRejected(ConnectorError):
    """The request is not an authentic delivery; ``reason`` is a short code
    (``missing_signature``, ``bad_signature``, ``stale_timestamp``, ``bad_secret`` …).

    Messages are fixed texts: they never contain a secret or a signature.
    """

    status = 401

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason.replace("_", " "))
        self.reason = reason


class WebhookMalformed(WebhookRejected):
    """An authentic delivery whose payload cannot be read."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__("malformed_payload", message)


class InvalidMutation(ValueError):
    """The sandbox cannot apply this ``POST /_sandbox/mutate`` (the message says why)."""


@dataclass(frozen=True, slots=True, order=True)
class Invalidation:
    """One cached answer that may be stale: ``method`` called with ``key``."""

    method: str
    key: str


@runtime_checkable
class WebhookHandler(Protocol):
    """What ``connectors.<vendor>.webhook:handler`` provides."""

    #: True when the secret may arrive as the last URL segment (vendors that
    #: can neither sign nor set headers, e.g. Mailchimp).
    url_secret: bool

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        """Raise :class:`WebhookRejected` unless the delivery is authentic at ``now``."""

    def invalidations(self, headers: Mapping[str, str], body: bytes) -> list[Invalidation]:
        """Every cached answer the event may have made stale; raises :class:`WebhookMalformed`."""

    # Optional, so handlers written before it still load:
    #
    # def event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
    #     """The delivery's id, read from what the signature covers (never from an
    #     unsigned header: a replay could change it), or None when there is none.
    #     The gateway handles each id once per connector within its window."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name, from any mapping."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookMalformed("the body is not JSON") from exc


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _fresh(timestamp: float, now: float, tolerance: float) -> None:
    if abs(now - timestamp) > tolerance:
        raise WebhookRejected("stale_timestamp", "the signed timestamp is outside the tolerance")


def _sign_timestamped(secret: str, body: bytes, timestamp: int) -> str:
    digest = _hmac(secret, f"{timestamp}.".encode() + body).hex()
    return f"t={timestamp},v1={digest}"


def _timestamped(value: str | None, header_name: str) -> tuple[int, list[str]]:
    if not value:
        raise WebhookRejected("missing_signature", f"no {header_name} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in value.split(","):
        name, _, part = item.strip().partition("=")
        if name == "t" and part.isdigit():
            timestamp = int(part)
        elif name == "v1" and part:
            candidates.append(part)
    if timestamp is None or not candidates:
        raise WebhookRejected("malformed_signature", f"{header_name} has no t and v1")
    return timestamp, candidates


def _verify_timestamped(
    value: str | None, header_name: str, body: bytes, secret: str, now: float, tolerance: float
) -> None:
    timestamp, candidates = _timestamped(value, header_name)
    expected = _hmac(secret, f"{timestamp}.".encode() + body).hex()
    # Check every candidate: no early exit that would time which one matched.
    if not sum(_same(expected, candidate) for candidate in candidates):
        raise WebhookRejected("bad_signature", "the signature does not match")
    _fresh(timestamp, now, tolerance)


def sign_stripe(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``body`` signed at ``timestamp``."""
    return _sign_timestamped(secret, body, timestamp)


def verify_stripe(
    value: str | None, body: bytes, secret: str, now: float, tolerance: float = TOLERANCE
) -> None:
    """Check a ``Stripe-Signature`` header: any ``v1`` matches, ``t`` within ``tolerance``."""
    _verify_timestamped(value, "Stripe-Signature", body, secret, now, tolerance)


def sign_c360(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-C360-Signature`` value a relay sends: Stripe's scheme under c360's header."""
    return _sign_timestamped(secret, body, timestamp)


def verify_c360(
    value: str | None, body: bytes, secret: str, now: float, tolerance: float = TOLERANCE
) -> None:
    """Check an ``X-C360-Signature`` header exactly as :func:`verify_stripe` checks Stripe's."""
    _verify_timestamped(value, C360_SIGNATURE_HEADER, body, secret, now, tolerance)


def signed_event_id(timestamp: str, body: bytes) -> str:
    """An id for a delivery with no id of its own: a digest of exactly what its
    signature covers, so a replay has the same id and anything else does not."""
    digest = hashlib.sha256(timestamp.encode() + b"." + body).hexdigest()
    return f"signed:{digest}"


def timestamped_event_id(value: str | None, body: bytes) -> str | None:
    """:func:`signed_event_id` of a ``t=…,v1=…`` header (Stripe's, c360's); None without ``t``."""
    try:
        timestamp, _ = _timestamped(value, "signature")
    except WebhookRejected:
        return None
    return signed_event_id(str(timestamp), body)


class C360Signed:
    """``handler`` with its vendor's check replaced by ``X-C360-Signature``: for a
    relay that receives the vendor's deliveries and signs what it forwards."""

    url_secret = False

    def __init__(self, handler: WebhookHandler) -> None:
        self.handler = handler

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        verify_c360(header(headers, C360_SIGNATURE_HEADER), body, secret, now)

    def invalidations(self, headers: Mapping[str, str], body: bytes) -> list[Invalidation]:
        return self.handler.invalidations(headers, body)

    def event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return timestamped_event_id(header(headers, C360_SIGNATURE_HEADER), body)


def sign_zendesk(secret: str, body: bytes, timestamp: str) -> str:
    """The ``X-Zendesk-Webhook-Signature`` value for ``body`` and that timestamp header."""
    return base64.b64encode(_hmac(secret, timestamp.encode() + body)).decode()


def _zendesk_time(value: str) -> float:
    if value.isdigit():
        return float(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookRejected(
            "malformed_signature", "the signature timestamp is not a time"
        ) from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def verify_zendesk(
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    secret: str,
    now: float,
    tolerance: float = TOLERANCE,
) -> None:
    """Check Zendesk's signature headers; the timestamp also bounds replays."""
    if not signature or not timestamp:
        raise WebhookRejected("missing_signature", "no Zendesk webhook signature headers")
    try:
        base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected("malformed_signature", "the signature is not base64") from exc
    if not _same(sign_zendesk(secret, body, timestamp), signature):
        raise WebhookRejected("bad_signature", "the signature does not match")
    _fresh(_zendesk_time(timestamp), now, tolerance)


def check_shared_secret(presented: str | None, secret: str) -> None:
    """A secret sent as is (``X-C360-Webhook-Secret`` or the URL), compared in constant time."""
    if not presented:
        raise WebhookRejected("missing_secret", "no webhook secret presented")
    if not _same(presented, secret):
        raise WebhookRejected("bad_secret", "the webhook secret does not match")


def person_invalidations(
    domain: Domain,
    *,
    ids: Iterable[str | None] = (),
    emails: Iterable[str | None] = (),
    phones: Iterable[str | None] = (),
    links: Iterable[tuple[str, str | None]] = (),
    dependents: bool = False,
) -> list[Invalidation]:
    """Every cached answer that can hold one person record of ``domain``.

    Pass old and new values alike (an address that changed must stop
    answering, the new one must stop answering "unknown"). Emails are
    normalized and phones made E.164 as the gateway's keys are; values that
    normalize to nothing are skipped. ``links`` are the record's
    ``(system, id)`` links (``people_linked_to`` keys); ``dependents`` adds the
    domain's list keyed by the person's id (tickets, invoices, activity).
    """
    by_email, by_id, by_phone = PERSON_LOOKUPS[domain]
    found: list[Invalidation] = []
    for email in emails:
        if key := normalize_email(email):
            found.append(Invalidation(by_email, key))
    if by_phone is not None:
        for phone in phones:
            if key := normalize_phone(phone):
                found.append(Invalidation(by_phone, key))
    for record_id in ids:
        if record_id:
            found.append(Invalidation(by_id, record_id))
            if dependents and domain in DEPENDENT_LISTS:
                found.append(Invalidation(DEPENDENT_LISTS[domain], record_id))
    for system, target in links:
        if target:
            found.append(Invalidation(LINKED, f"{system}:{target}"))
    return list(dict.fromkeys(found))
