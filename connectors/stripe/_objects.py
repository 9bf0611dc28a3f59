"""The sandbox's Stripe objects: the world rendered once as Stripe JSON, with indexes.

Rendering follows the shapes in Stripe's API reference (customer, subscription
with ``items`` of subscription items carrying a ``price``, invoice). What the
world lacks (product ids, cancel times, period starts) is derived from the
world's seed and the object's id, never from the clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from connectors.sdk.world import BillingAccount, World, WorldInvoice, WorldSubscription
from connectors.stripe._search import Clause, Query, QueryError

__all__ = ["JSON", "StripeData"]

JSON = dict[str, Any]
# Stripe's "current" subscriptions (embedded in a customer, listed by default)
# leave these out.
_ENDED = frozenset({"canceled", "incomplete_expired"})
_PERIOD = {"month": timedelta(days=30), "year": timedelta(days=365)}


def _ts(when: datetime) -> int:
    return int(when.timestamp())


def _newest_first(items: Iterable[JSON]) -> list[JSON]:
    return sorted(items, key=lambda o: (o["created"], o["id"]), reverse=True)


def _customer(account: BillingAccount) -> JSON:
    return {
        "id": account.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": _ts(account.created),
        "currency": "usd" if account.subscriptions or account.invoices else None,
        "default_source": None,
        "delinquent": any(inv.status == "open" for inv in account.invoices),
        "description": None,
        "discount": None,
        "email": account.email,
        "invoice_prefix": account.id[4:12].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"salesforce_id": account.crm_id} if account.crm_id else {},
        "name": account.name,
        "next_invoice_sequence": len(account.invoices) + 1,
        "phone": account.phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def _subscription(sub: WorldSubscription, customer_id: str, seed: int) -> JSON:
    rng = random.Random(f"{seed}:{sub.id}")
    period_start = sub.current_period_end - _PERIOD.get(sub.interval, timedelta(days=30))
    canceled_at = None
    if sub.status == "canceled":
        span = max(1, _ts(period_start) - _ts(sub.created))
        canceled_at = _ts(sub.created) + rng.randrange(span)
    price = {
        "id": sub.price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": _ts(sub.created),
        "currency": sub.currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": sub.plan,
        "product": f"prod_{sub.plan.lower()}",
        "recurring": {"interval": sub.interval, "interval_count": 1, "usage_type": "licensed"},
        "type": "recurring",
        "unit_amount": sub.amount,
    }
    item = {
        "id": "si_" + sub.id.removeprefix("sub_"),
        "object": "subscription_item",
        "created": _ts(sub.created),
        "current_period_end": _ts(sub.current_period_end),
        "current_period_start": _ts(period_start),
        "metadata": {},
        "price": price,
        "quantity": 1,
        "subscription": sub.id,
    }
    return {
        "id": sub.id,
        "object": "subscription",
        "cancel_at_period_end": False,
        "canceled_at": canceled_at,
        "created": _ts(sub.created),
        "currency": sub.currency,
        "current_period_end": _ts(sub.current_period_end),
        "current_period_start": _ts(period_start),
        "customer": customer_id,
        "ended_at": canceled_at,
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={sub.id}",
        },
        "livemode": False,
        "metadata": {},
        "start_date": _ts(sub.created),
        "status": sub.status,
    }


def _invoice(inv: WorldInvoice, account: BillingAccount) -> JSON:
    remaining = inv.amount_due - inv.amount_paid if inv.status in ("open", "uncollectible") else 0
    return {
        "id": inv.id,
        "object": "invoice",
        "amount_due": inv.amount_due,
        "amount_paid": inv.amount_paid,
        "amount_remaining": remaining,
        "created": _ts(inv.created),
        "currency": inv.currency,
        "customer": account.id,
        "customer_email": account.email,
        "customer_name": account.name,
        "livemode": False,
        "metadata": {},
        "paid": inv.status == "paid",
        "status": inv.status,
        "subscription": inv.subscription,
    }


def _text(field: str) -> Callable[[JSON], str | None]:
    return lambda obj: obj.get(field)


class StripeData:
    """Every Stripe object of one world, newest first, indexed for the routes."""

    def __init__(self, world: World) -> None:
        customers: list[JSON] = []
        subscriptions: list[JSON] = []
        invoices: list[JSON] = []
        for person in world.people:
            for account in person.billing:
                customers.append(_customer(account))
                subscriptions += [
                    _subscription(s, account.id, world.seed) for s in account.subscriptions
                ]
                invoices += [_invoice(inv, account) for inv in account.invoices]
        self.ordered: dict[str, list[JSON]] = {
            "customers": _newest_first(customers),
            "subscriptions": _newest_first(subscriptions),
            "invoices": _newest_first(invoices),
        }
        self.by_id: dict[str, dict[str, JSON]] = {
            kind: {o["id"]: o for o in objects} for kind, objects in self.ordered.items()
        }
        self.customers_by_email: dict[str, list[JSON]] = {}
        for customer in self.ordered["customers"]:
            key = customer["email"].strip().lower()
            self.customers_by_email.setdefault(key, []).append(customer)
        self.of_customer: dict[str, dict[str, list[JSON]]] = {"subscriptions": {}, "invoices": {}}
        for kind, index in self.of_customer.items():
            for obj in self.ordered[kind]:
                index.setdefault(obj["customer"], []).append(obj)

    def current_subscriptions(self, customer_id: str) -> list[JSON]:
        subs = self.of_customer["subscriptions"].get(customer_id, [])
        return [s for s in subs if s["status"] not in _ENDED]

    def with_subscriptions(self, customer: JSON) -> JSON:
        """``customer`` as ``expand[]=subscriptions`` renders it (a copy)."""
        current = self.current_subscriptions(customer["id"])
        return {
            **customer,
            "subscriptions": {
                "object": "list",
                "data": current,
                "has_more": False,
                "total_count": len(current),
                "url": f"/v1/customers/{customer['id']}/subscriptions",
            },
        }

    # ------------------------------------------------------------- search
    _FIELDS: dict[str, dict[str, Callable[[JSON], str | None]]] = {
        "customers": {"email": _text("email"), "name": _text("name"), "phone": _text("phone")},
        "invoices": {
            "customer": _text("customer"),
            "status": _text("status"),
            "subscription": _text("subscription"),
            "currency": _text("currency"),
        },
        "subscriptions": {"status": _text("status")},
    }
    # Stripe matches these without regard to case.
    _CASELESS = frozenset({"email", "name"})

    def _matching(self, resource: str, clause: Clause) -> set[str]:
        if resource == "customers" and clause.field == "email":
            hits = self.customers_by_email.get(clause.value.strip().lower(), [])
            return {c["id"] for c in hits}
        if resource == "invoices" and clause.field == "customer":
            return {o["id"] for o in self.of_customer[resource].get(clause.value, [])}
        if clause.field == "metadata" and clause.key is not None:
            key = clause.key
            return {
                o["id"] for o in self.ordered[resource] if o["metadata"].get(key) == clause.value
            }
        getter = self._FIELDS[resource].get(clause.field)
        if getter is None:
            raise QueryError(
                f"Invalid query: '{clause.field}' is not a supported search field for {resource}."
            )
        if clause.field in self._CASELESS:
            wanted = clause.value.strip().lower()
            return {
                o["id"]
                for o in self.ordered[resource]
                if (getter(o) or "").strip().lower() == wanted
            }
        return {o["id"] for o in self.ordered[resource] if getter(o) == clause.value}

    def search(self, resource: str, query: Query) -> list[JSON]:
        """Objects of ``resource`` matching ``query``, newest first."""
        sets = [self._matching(resource, clause) for clause in query.clauses]
        ids = set.union(*sets) if query.conjunction == "OR" else set.intersection(*sets)
        return _newest_first(self.by_id[resource][i] for i in ids)
