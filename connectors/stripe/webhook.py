"""Stripe webhooks: signed events in, stale cache keys out; the sandbox's events too.

Stripe POSTs an event ``{id, object: "event", type, created, data: {object,
previous_attributes?}}`` signed with the endpoint's secret (``whsec_…``) in
``Stripe-Signature`` (see :func:`connectors.sdk.webhooks.verify_stripe`);
deliveries more than 300 s from our clock are refused, as Stripe's libraries do.
Inside that window a replay carries the same event ``id``, which the gateway
handles once (:meth:`StripeWebhook.event_id`); Stripe's own retries of an event
we answered 2xx never come, and it may send an event twice: also handled once.

What each event makes stale (keys as the connector's loaders use them):

* ``customer.created|updated|deleted`` -- the customer by id, by email and by
  phone (old values from ``previous_attributes`` too) and the
  ``people_linked_to`` key of its ``metadata.salesforce_id``; a deleted
  customer's invoice list as well.
* ``customer.subscription.*`` -- the customer by id. Subscriptions are embedded
  in customers found by email or phone too, but a subscription event does not
  carry the customer's email: those copies age out by their TTL.
* ``invoice.*`` -- the invoice list of the invoice's customer.

Anything else is accepted and changes nothing.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from connectors.sdk import Domain
from connectors.sdk.webhooks import (
    Invalidation,
    InvalidMutation,
    WebhookMalformed,
    header,
    json_body,
    person_invalidations,
    sign_stripe,
    timestamped_event_id,
    verify_stripe,
)
from connectors.stripe.connector import DEFAULT_API_VERSION

if TYPE_CHECKING:
    from connectors.stripe._objects import StripeData

__all__ = ["StripeWebhook", "encode", "handler", "sandbox_mutator"]

JSON = dict[str, Any]
_LINK_FIELDS = {"salesforce_id": "salesforce"}  # metadata key -> linked system (see mapping)
_CUSTOMER_FIELDS = frozenset({"email", "name", "phone", "description", "metadata"})
_INVOICE_FIELDS = frozenset({"status", "amount_due", "amount_paid"})
_INVOICE_STATUSES = frozenset({"draft", "open", "paid", "uncollectible", "void"})


def _ref(value: Any) -> str | None:
    """An id field, or the id of an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _links(*metadata: Any) -> list[tuple[str, str | None]]:
    return [
        (system, _text(meta.get(field)))
        for meta in metadata
        if isinstance(meta, Mapping)
        for field, system in _LINK_FIELDS.items()
    ]


class StripeWebhook:
    url_secret = False

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        verify_stripe(header(headers, "Stripe-Signature"), body, secret, now)

    def invalidations(self, headers: Mapping[str, str], body: bytes) -> list[Invalidation]:
        event = json_body(body)
        data = event.get("data") if isinstance(event, Mapping) else None
        obj = data.get("object") if isinstance(data, Mapping) else None
        kind = event.get("type") if isinstance(event, Mapping) else None
        if not isinstance(kind, str) or not isinstance(obj, Mapping):
            raise WebhookMalformed("a Stripe event has a type and a data.object")
        assert isinstance(data, Mapping)
        previous = data.get("previous_attributes")
        previous = previous if isinstance(previous, Mapping) else {}
        if kind.startswith("customer.subscription."):
            customer = _ref(obj.get("customer"))
            return [Invalidation("customers_by_id", customer)] if customer else []
        if kind.startswith("invoice."):
            customer = _ref(obj.get("customer"))
            return [Invalidation("invoices_of_customers", customer)] if customer else []
        if kind.startswith("customer.") and obj.get("object") == "customer":
            return person_invalidations(
                Domain.BILLING,
                ids=[_ref(obj)],
                emails=[_text(obj.get("email")), _text(previous.get("email"))],
                phones=[_text(obj.get("phone")), _text(previous.get("phone"))],
                links=_links(obj.get("metadata"), previous.get("metadata")),
                dependents=kind == "customer.deleted",
            )
        return []

    def event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The event's ``evt_…`` id (signed with the body); a digest of the signed
        content for an event without one."""
        event = json_body(body)
        found = event.get("id") if isinstance(event, Mapping) else None
        if isinstance(found, str) and found:
            return found
        return timestamped_event_id(header(headers, "Stripe-Signature"), body)


handler = StripeWebhook()


def encode(payload: Any, secret: str, now: float) -> tuple[dict[str, str], bytes]:
    """An event as Stripe delivers it: compact JSON, signed at ``now``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": sign_stripe(secret, body, int(now)),
    }, body


# ------------------------------------------------------------------ sandbox side
def _changes(spec: Mapping[str, Any], allowed: frozenset[str]) -> Mapping[str, Any]:
    changes = spec.get("changes")
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidMutation("'changes' must be a non-empty object")
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidMutation(f"cannot change {', '.join(unknown)}; allowed: {sorted(allowed)}")
    return changes


def _found(data: StripeData, resource: str, object_id: Any) -> JSON:
    obj = data.by_id[resource].get(object_id) if isinstance(object_id, str) else None
    if obj is None:
        raise InvalidMutation(f"no such {resource[:-1]}: {object_id!r}")
    return obj


def _change_customer(data: StripeData, customer: JSON, changes: Mapping[str, Any]) -> JSON:
    for name in ("email", "name", "phone", "description"):
        if name in changes and not (changes[name] is None or isinstance(changes[name], str)):
            raise InvalidMutation(f"{name} must be a string or null")
    if "email" in changes and not changes["email"]:
        raise InvalidMutation("the sandbox keeps an email on every customer")
    metadata = changes.get("metadata", {})
    if not isinstance(metadata, Mapping) or not all(
        isinstance(v, str | None) for v in metadata.values()
    ):
        raise InvalidMutation("metadata must map keys to strings (or null to unset)")
    previous = {name: copy.deepcopy(customer.get(name)) for name in changes}
    old_key = customer["email"].strip().lower()
    for name, value in changes.items():
        if name == "metadata":
            merged = {**customer["metadata"], **value}
            # Stripe unsets a metadata key given an empty value.
            customer["metadata"] = {k: v for k, v in merged.items() if v}
        else:
            customer[name] = value
    new_key = customer["email"].strip().lower()
    if new_key != old_key:
        index = data.customers_by_email
        index[old_key] = [c for c in index.get(old_key, []) if c is not customer]
        moved = [*index.get(new_key, []), customer]
        index[new_key] = sorted(moved, key=lambda c: (c["created"], c["id"]), reverse=True)
    return previous


def _change_invoice(invoice: JSON, changes: Mapping[str, Any]) -> JSON:
    status = changes.get("status", invoice["status"])
    if status not in _INVOICE_STATUSES:
        raise InvalidMutation(f"status must be one of {sorted(_INVOICE_STATUSES)}")
    for name in ("amount_due", "amount_paid"):
        value = changes.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidMutation(f"{name} must be a non-negative integer")
    before = copy.deepcopy(invoice)
    invoice.update(changes)
    if status == "paid" and "amount_paid" not in changes:
        invoice["amount_paid"] = invoice["amount_due"]
    invoice["paid"] = status == "paid"
    owed = status in ("open", "uncollectible")
    invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"] if owed else 0
    return {k: v for k, v in before.items() if invoice.get(k) != v}


def sandbox_mutator(data: StripeData) -> Callable[[Mapping[str, Any], float], list[Any]]:
    """The sandbox's ``mutate(spec, now)``: change a customer or an invoice in
    place (every index sees it) and return the ``*.updated`` event Stripe sends.

    ``{"kind": "customer", "id": "cus_…", "changes": {"phone": "+1…"}}`` (email,
    name, phone, description, metadata) or ``{"kind": "invoice", "id": "in_…",
    "changes": {"status": "paid"}}`` (status, amount_due, amount_paid).
    """

    def mutate(spec: Mapping[str, Any], now: float) -> list[Any]:
        kind = spec.get("kind")
        if kind == "customer":
            obj = _found(data, "customers", spec.get("id"))
            previous = _change_customer(data, obj, _changes(spec, _CUSTOMER_FIELDS))
        elif kind == "invoice":
            obj = _found(data, "invoices", spec.get("id"))
            previous = _change_invoice(obj, _changes(spec, _INVOICE_FIELDS))
        else:
            raise InvalidMutation("a stripe mutation changes a 'customer' or an 'invoice'")
        return [
            {
                "id": f"evt_{secrets.token_hex(12)}",
                "object": "event",
                "api_version": DEFAULT_API_VERSION,
                "created": int(now),
                "data": {"object": copy.deepcopy(obj), "previous_attributes": previous},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": f"{kind}.updated",
            }
        ]

    return mutate
