"""Stripe JSON -> canonical records.

Pure functions over decoded JSON. Stripe sends amounts as integers in the
currency's minor unit (kept as they are) and times as unix seconds (turned into
aware UTC datetimes). Stripe objects carry no "updated" time, so every
:class:`SourceRef` uses ``created`` as ``updated_at``. Missing or ``None``
fields map to ``None``; a body of the wrong shape raises
:class:`UpstreamProtocolError`, never ``KeyError``/``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeGuard

from connectors.sdk import (
    Invoice,
    Person,
    SourceRef,
    Subscription,
    UpstreamProtocolError,
    normalize_email,
)

__all__ = [
    "SOURCE",
    "dashboard_url",
    "invoice_from_stripe",
    "list_data",
    "person_from_customer",
    "subscription_from_stripe",
]

SOURCE = "stripe"
_DASHBOARD = "https://dashboard.stripe.com"


def _protocol(message: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(message, source=SOURCE)


def _is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # A dict is a Mapping; checking its type first skips the slow ABC check.
    return type(value) is dict or isinstance(value, Mapping)


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _protocol(f"stripe sent {type(value).__name__} where {what} was expected")
    return value


def _id(obj: Mapping[str, Any], what: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise _protocol(f"stripe sent {what} without an id")
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _ref(value: Any) -> str | None:
    """An id field that is either the id or, when expanded, the object."""
    if type(value) is str:
        return value or None
    if _is_object(value):
        return _str(value.get("id"))
    return _str(value)


def dashboard_url(kind: str, object_id: str, livemode: Any = True) -> str:
    """Deep link into the Dashboard; test-mode objects live under ``/test``."""
    prefix = "/test" if livemode is False else ""
    return f"{_DASHBOARD}{prefix}/{kind}/{object_id}"


def list_data(body: Any, what: str = "a Stripe list") -> list[Any]:
    """The ``data`` array of a list or search-result object."""
    data = _object(body, what).get("data")
    if not isinstance(data, list):
        raise _protocol(f"stripe sent {what} whose data is not an array")
    return data


def _source(
    obj: Mapping[str, Any], kind: str, object_id: str, created: datetime | None
) -> SourceRef:
    return SourceRef(
        system=SOURCE,
        record_id=object_id,
        updated_at=created,
        url=dashboard_url(kind, object_id, obj.get("livemode")),
    )


def person_from_customer(value: Any) -> Person | None:
    """A customer as a :class:`Person`; ``None`` for a deleted customer.

    ``subscriptions`` is filled when the customer came with
    ``expand[]=subscriptions`` (Stripe embeds the customer's current, i.e.
    not canceled, subscriptions). ``metadata.salesforce_id`` becomes a link.
    """
    obj = _object(value, "a customer object")
    customer_id = _id(obj, "a customer")
    if obj.get("deleted") is True:
        return None
    raw_email = _str(obj.get("email"))
    metadata = obj.get("metadata")
    links: dict[str, str] = {}
    if _is_object(metadata) and (crm_id := _str(metadata.get("salesforce_id"))):
        links["salesforce"] = crm_id
    subscriptions: tuple[Subscription, ...] = ()
    embedded = obj.get("subscriptions")
    if embedded is not None:
        subscriptions = tuple(
            subscription_from_stripe(item)
            for item in list_data(embedded, "a customer's subscriptions list")
        )
    return Person(
        source=_source(obj, "customers", customer_id, _time(obj.get("created"))),
        name=_str(obj.get("name")),
        email=normalize_email(raw_email) or (raw_email.strip() if raw_email else None),
        phone=_str(obj.get("phone")),
        links=links,
        subscriptions=subscriptions,
    )


def subscription_from_stripe(value: Any) -> Subscription:
    """A subscription; plan and price come from its items.

    ``plan`` is the first item's price nickname, else its product's name (when
    the product is expanded), else the price id. ``amount`` sums
    ``unit_amount * quantity`` over the items, which Stripe bills together.
    ``current_period_end`` moved from the subscription to its items in newer
    API versions, so both places are read.
    """
    obj = _object(value, "a subscription object")
    subscription_id = _id(obj, "a subscription")
    items_obj = obj.get("items")
    items = list_data(items_obj, "a subscription's items list") if items_obj is not None else []
    plan: str | None = None
    amount: int | None = None
    currency = _str(obj.get("currency"))
    interval: str | None = None
    period_end = _time(obj.get("current_period_end"))
    for index, raw_item in enumerate(items):
        item = _object(raw_item, "a subscription item")
        price = item.get("price")
        price = price if _is_object(price) else {}
        if index == 0:
            product = price.get("product")
            product_name = _str(product.get("name")) if _is_object(product) else None
            plan = _str(price.get("nickname")) or product_name or _str(price.get("id"))
            recurring = price.get("recurring")
            if _is_object(recurring):
                interval = _str(recurring.get("interval"))
            currency = currency or _str(price.get("currency"))
            period_end = period_end or _time(item.get("current_period_end"))
        unit_amount = _int(price.get("unit_amount"))
        if unit_amount is not None:
            quantity = _int(item.get("quantity"))
            amount = (amount or 0) + unit_amount * (1 if quantity is None else quantity)
    return Subscription(
        source=_source(obj, "subscriptions", subscription_id, _time(obj.get("created"))),
        customer_id=_ref(obj.get("customer")),
        status=_str(obj.get("status")),
        plan=plan,
        amount=amount,
        currency=currency,
        interval=interval,
        current_period_end=period_end,
    )


def invoice_from_stripe(value: Any) -> Invoice:
    obj = _object(value, "an invoice object")
    invoice_id = _id(obj, "an invoice")
    created = _time(obj.get("created"))
    return Invoice(
        source=_source(obj, "invoices", invoice_id, created),
        customer_id=_ref(obj.get("customer")),
        status=_str(obj.get("status")),
        amount_due=_int(obj.get("amount_due")),
        amount_paid=_int(obj.get("amount_paid")),
        currency=_str(obj.get("currency")),
        created_at=created,
    )
