"""Canonical records: what every connector maps vendor JSON into.

Records are immutable and vendor-neutral. Each carries a :class:`SourceRef`
(system, record id, updated-at, deep link) so the gateway can always say where
a value came from. Attributes that hold personal data say which kind
(:func:`connectors.sdk.pii.pii`), so the gateway's policy follows the value,
not the field that shows it. Money is an integer in the currency's minor unit, as every
billing vendor sends it; times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, TypeVar

from connectors.sdk.pii import PiiKind, PiiRule, pii

__all__ = [
    "Consent",
    "Domain",
    "EngagementEvent",
    "Invoice",
    "MarketingMember",
    "Opportunity",
    "Organization",
    "Page",
    "Person",
    "PiiKind",
    "PiiRule",
    "SourceRef",
    "Subscription",
    "Ticket",
]


class Domain(StrEnum):
    """The four kinds of system a customer 360 reads from."""

    CRM = "crm"
    TICKETING = "ticketing"
    BILLING = "billing"
    MARKETING = "marketing"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRef:
    """Where a record lives: ``system`` is the connector name."""

    system: str
    record_id: str
    updated_at: datetime | None = None
    url: str | None = None
    # Set when the id is computed from personal data (Mailchimp's subscriber
    # hash is md5 of the email): the id is then PII of that kind.
    id_pii: PiiKind | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """A human as one system knows them: CRM contact, requester, billing customer."""

    source: SourceRef
    name: str | None = pii(PiiKind.NAME)
    first_name: str | None = pii(PiiKind.NAME)
    last_name: str | None = pii(PiiKind.NAME)
    email: str | None = pii(PiiKind.EMAIL)
    # A person's number, whichever system holds it: sensitive everywhere.
    phone: str | None = pii(PiiKind.PHONE, sensitive=True)
    title: str | None = None
    organization_id: str | None = None
    # Ids this record carries for other systems, e.g. {"salesforce": "003…"}.
    links: dict[str, str] = field(default_factory=dict)
    # Billing: subscriptions that came embedded with the customer (Stripe expand).
    subscriptions: tuple[Subscription, ...] = ()

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    source: SourceRef
    name: str | None = None
    industry: str | None = None
    domain: str | None = None
    parent_id: str | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Opportunity:
    source: SourceRef
    organization_id: str | None = None
    name: str | None = None
    stage: str | None = None
    amount: float | None = None
    close_date: date | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticket:
    source: SourceRef
    requester_id: str | None = None
    subject: str | None = None
    status: str | None = None
    priority: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    source: SourceRef
    customer_id: str | None = None
    status: str | None = None
    plan: str | None = None
    amount: int | None = None
    currency: str | None = None
    interval: str | None = None
    current_period_end: datetime | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice:
    source: SourceRef
    customer_id: str | None = None
    status: str | None = None
    amount_due: int | None = None
    amount_paid: int | None = None
    currency: str | None = None
    created_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    channel: str
    status: str  # "granted" | "denied"
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingMember:
    """One audience membership; ``list_id`` says which list or audience."""

    source: SourceRef
    email: str | None = pii(PiiKind.EMAIL)
    name: str | None = pii(PiiKind.NAME)
    status: str | None = None
    list_id: str | None = None
    list_name: str | None = None
    consents: tuple[Consent, ...] = ()
    avg_open_rate: float | None = None
    avg_click_rate: float | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


@dataclass(frozen=True, slots=True, kw_only=True)
class EngagementEvent:
    source: SourceRef
    # Mailchimp's member id is the subscriber hash: derived from the email.
    member_id: str = pii(PiiKind.EMAIL, required=True)
    kind: str
    occurred_at: datetime | None = None
    detail: str | None = None

    @property
    def id(self) -> str:
        return self.source.record_id


R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[R]):
    """One page of a list read; ``next_cursor`` is the connector's own cursor
    for the next page, ``None`` on the last page."""

    items: tuple[R, ...]
    next_cursor: str | None = None
    total: int | None = None
