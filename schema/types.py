"""The GraphQL object types of a customer 360.

Types are thin: scalar fields are copied from canonical records, and every
field that needs another upstream read resolves through the request's
DataLoaders (``info.context.loaders``), so a list of customers costs one
batched call per connector method, not one per customer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, TypeVar

import strawberry
from strawberry.types import Info

from connectors.sdk import Connector, Domain, UpstreamError
from connectors.sdk import models as m
from gateway.context import Context
from gateway.identity import Profile
from schema.errors import upstream_error

__all__ = [
    "Account",
    "Consent",
    "Customer",
    "EngagementEvent",
    "Invoice",
    "MarketingList",
    "MarketingProfile",
    "Opportunity",
    "Source",
    "Subscription",
    "Ticket",
]

T = TypeVar("T")
R = TypeVar("R")
Ctx = Info[Context, None]


@strawberry.type(description="Where a record lives: a system and its id there.")
class Source:
    system: str
    id: strawberry.ID
    url: str | None
    updated_at: datetime | None

    @classmethod
    def of(cls, ref: m.SourceRef) -> Source:
        return cls(
            system=ref.system,
            id=strawberry.ID(ref.record_id),
            url=ref.url,
            updated_at=ref.updated_at,
        )


@strawberry.type
class Opportunity:
    id: strawberry.ID
    name: str | None
    stage: str | None
    amount: float | None
    close_date: date | None


@strawberry.type(description="A B2B account (organization) from the CRM.")
class Account:
    id: strawberry.ID
    name: str | None
    industry: str | None
    domain: str | None
    source: Source
    _connector: strawberry.Private[Connector]
    _parent_id: strawberry.Private[str | None]

    @classmethod
    def of(cls, connector: Connector, org: m.Organization) -> Account:
        return cls(
            id=strawberry.ID(org.id),
            name=org.name,
            industry=org.industry,
            domain=org.domain,
            source=Source.of(org.source),
            _connector=connector,
            _parent_id=org.parent_id,
        )

    @strawberry.field(description="The parent account, when this one rolls up into another.")
    async def parent(self, info: Ctx) -> Account | None:
        if not self._parent_id:
            return None
        org = await _load(info, self._connector, "organizations_by_id", self._parent_id)
        return Account.of(self._connector, org) if org else None

    @strawberry.field
    async def opportunities(self, info: Ctx) -> list[Opportunity] | None:
        opps = await _load(info, self._connector, "opportunities_of_organizations", str(self.id))
        return [
            Opportunity(
                id=strawberry.ID(o.id),
                name=o.name,
                stage=o.stage,
                amount=o.amount,
                close_date=o.close_date,
            )
            for o in opps or ()
        ]


@strawberry.type
class Ticket:
    id: strawberry.ID
    subject: str | None
    status: str | None
    priority: str | None
    created_at: datetime | None
    updated_at: datetime | None
    source: Source


@strawberry.type(description="Amounts are integers in the currency's minor unit (cents).")
class Subscription:
    id: strawberry.ID
    status: str | None
    plan: str | None
    amount: int | None
    currency: str | None
    interval: str | None
    current_period_end: datetime | None
    source: Source


@strawberry.type(description="Amounts are integers in the currency's minor unit (cents).")
class Invoice:
    id: strawberry.ID
    status: str | None
    amount_due: int | None
    amount_paid: int | None
    currency: str | None
    created_at: datetime | None
    source: Source


@strawberry.type
class Consent:
    channel: str
    status: str
    updated_at: datetime | None


@strawberry.type(description="One audience/list the customer belongs to.")
class MarketingList:
    id: strawberry.ID
    name: str | None
    status: str | None
    source: Source


@strawberry.type
class EngagementEvent:
    kind: str
    occurred_at: datetime | None
    detail: str | None
    source: Source


_STATUS_RANK = {"subscribed": 0, "pending": 1, "transactional": 2, "unsubscribed": 3, "cleaned": 4}


@strawberry.type(description="The customer in marketing automation, over all lists.")
class MarketingProfile:
    status: str | None = strawberry.field(
        description="The most engaged status over all lists (subscribed > pending > unsubscribed)."
    )
    lists: list[MarketingList]
    consents: list[Consent]
    _links: strawberry.Private[list[tuple[Connector, m.MarketingMember]]]

    @strawberry.field(description="Recent engagement (opens, clicks, …), newest first.")
    async def activity(self, info: Ctx, first: int = 10) -> list[EngagementEvent] | None:
        first = max(0, min(first, 100))
        pairs = {(c.name, mem.id): (c, mem.id) for c, mem in self._links}
        batches = await _gather_loads(
            info, [(c, "activity_of_members", k) for c, k in pairs.values()]
        )
        events = sorted(
            (e for batch in batches for e in batch or ()),
            key=lambda e: _timestamp(e.occurred_at),
            reverse=True,
        )
        return [
            EngagementEvent(
                kind=e.kind, occurred_at=e.occurred_at, detail=e.detail, source=Source.of(e.source)
            )
            for e in events[:first]
        ]


async def _load(info: Ctx, connector: Connector, method: str, key: str) -> Any:
    try:
        return await info.context.loaders.load(connector, method, key)
    except UpstreamError as exc:
        raise upstream_error(exc) from exc


async def _gather_loads(info: Ctx, calls: Iterable[tuple[Connector, str, str]]) -> list[Any]:
    return list(await asyncio.gather(*(_load(info, c, method, key) for c, method, key in calls)))


def _raise_failure(profile: Profile, domain: Domain) -> None:
    failure = profile.failures.get(domain)
    if failure is not None:
        raise upstream_error(failure)


def _timestamp(when: datetime | None) -> float:
    return when.timestamp() if when else 0.0


def _newest_first(items: list[T], key: Callable[[T], datetime | None]) -> list[T]:
    return sorted(items, key=lambda item: _timestamp(key(item)), reverse=True)


@strawberry.type(description="One customer across every connected system.")
class Customer:
    id: strawberry.ID = strawberry.field(
        description="Opaque and stable; pass it back to customer(id:)."
    )
    _profile: strawberry.Private[Profile]

    @strawberry.field
    def name(self) -> str | None:
        return self._profile.name

    @strawberry.field
    def email(self) -> str | None:
        return self._profile.email

    @strawberry.field
    def phone(self) -> str | None:
        return self._profile.phone

    @strawberry.field(description="Every linked record in every system.")
    def sources(self) -> list[Source]:
        return [Source.of(ref) for ref in self._profile.sources]

    @strawberry.field(description="The CRM account (organization) the customer belongs to.")
    async def account(self, info: Ctx) -> Account | None:
        _raise_failure(self._profile, Domain.CRM)
        for link in self._profile.records(Domain.CRM):
            org_id = getattr(link.record, "organization_id", None)
            if org_id:
                org = await _load(info, link.connector, "organizations_by_id", org_id)
                if org is not None:
                    return Account.of(link.connector, org)
        return None

    @strawberry.field(description="Support tickets the customer requested, newest first.")
    async def tickets(self, info: Ctx) -> list[Ticket] | None:
        _raise_failure(self._profile, Domain.TICKETING)
        links = self._profile.records(Domain.TICKETING)
        batches = await _gather_loads(
            info, [(link.connector, "tickets_of_requesters", link.record.id) for link in links]
        )
        tickets = [t for batch in batches for t in batch or ()]
        return [
            Ticket(
                id=strawberry.ID(t.id),
                subject=t.subject,
                status=t.status,
                priority=t.priority,
                created_at=t.created_at,
                updated_at=t.updated_at,
                source=Source.of(t.source),
            )
            for t in _newest_first(tickets, lambda t: t.updated_at or t.created_at)
        ]

    @strawberry.field(
        description="Current (not canceled) subscriptions over every billing account."
    )
    def subscriptions(self) -> list[Subscription] | None:
        _raise_failure(self._profile, Domain.BILLING)
        return [
            Subscription(
                id=strawberry.ID(s.id),
                status=s.status,
                plan=s.plan,
                amount=s.amount,
                currency=s.currency,
                interval=s.interval,
                current_period_end=s.current_period_end,
                source=Source.of(s.source),
            )
            for link in self._profile.records(Domain.BILLING)
            for s in getattr(link.record, "subscriptions", ())
        ]

    @strawberry.field(description="Invoices over every billing account, newest first.")
    async def invoices(self, info: Ctx) -> list[Invoice] | None:
        _raise_failure(self._profile, Domain.BILLING)
        links = self._profile.records(Domain.BILLING)
        batches = await _gather_loads(
            info, [(link.connector, "invoices_of_customers", link.record.id) for link in links]
        )
        invoices = [i for batch in batches for i in batch or ()]
        return [
            Invoice(
                id=strawberry.ID(i.id),
                status=i.status,
                amount_due=i.amount_due,
                amount_paid=i.amount_paid,
                currency=i.currency,
                created_at=i.created_at,
                source=Source.of(i.source),
            )
            for i in _newest_first(invoices, lambda i: i.created_at)
        ]

    @strawberry.field(description="Marketing status, lists and consents; null when not a member.")
    def marketing(self) -> MarketingProfile | None:
        _raise_failure(self._profile, Domain.MARKETING)
        links = [
            (link.connector, link.record)
            for link in self._profile.records(Domain.MARKETING)
            if isinstance(link.record, m.MarketingMember)
        ]
        if not links:
            return None
        statuses = [mem.status for _, mem in links if mem.status]
        consents: dict[str, m.Consent] = {}
        for _, mem in links:
            for c in mem.consents:
                held = consents.get(c.channel)
                if held is None or (
                    c.updated_at and (not held.updated_at or c.updated_at > held.updated_at)
                ):
                    consents[c.channel] = c
        return MarketingProfile(
            status=min(statuses, key=lambda s: _STATUS_RANK.get(s, 9)) if statuses else None,
            lists=[
                MarketingList(
                    id=strawberry.ID(mem.list_id or mem.id),
                    name=mem.list_name,
                    status=mem.status,
                    source=Source.of(mem.source),
                )
                for _, mem in links
            ],
            consents=[
                Consent(channel=c.channel, status=c.status, updated_at=c.updated_at)
                for c in sorted(consents.values(), key=lambda c: c.channel)
            ],
            _links=links,
        )
