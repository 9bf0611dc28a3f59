"""GraphQL types for records of one system: tickets, billing, marketing, contacts.

Types are thin: scalar fields are copied from canonical records. Fields that
need another upstream read resolve through the request's DataLoaders, so a
list of customers costs one batched call per connector method.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Generic, TypeVar

import strawberry

from connectors.sdk import Connector, PiiRule, normalize_phone
from connectors.sdk import models as m
from gateway.identity import CustomerIds
from schema._loading import Ctx, gather_loads, newest_first
from schema.directives import PiiFromRecord
from schema.permissions import Guard, pii_of

__all__ = [
    "Connection",
    "Consent",
    "Contact",
    "Edge",
    "EngagementEvent",
    "Invoice",
    "MarketingList",
    "MarketingProfile",
    "Opportunity",
    "PageInfo",
    "Source",
    "Subscription",
    "Ticket",
]

T = TypeVar("T")


def _id_rule(source: Source) -> PiiRule | None:
    return PiiRule(source._id_pii) if source._id_pii is not None else None


def record_owner(ids: CustomerIds, system: str, record_id: str) -> str:
    """The customer id that names one record's person (``customer(id:)`` resolves it)."""
    return ids.encode(f"r:{system}:{record_id}")


@strawberry.type(description="Where a record lives: a system and its id there.")
class Source:
    system: str
    id: strawberry.ID = strawberry.field(
        description="The record's id in its system; personal data when the system derives "
        "it from one (Mailchimp's subscriber hash is md5 of the email).",
        directives=[PiiFromRecord()],
        extensions=[Guard(rule_of=_id_rule)],
    )
    url: str | None
    updated_at: datetime | None
    _id_pii: strawberry.Private[m.PiiKind | None] = None
    # The customer this record was shown for, when there is one.
    _owner: strawberry.Private[str | None] = None

    @classmethod
    def of(cls, ref: m.SourceRef, owner: str | None = None) -> Source:
        return cls(
            system=ref.system,
            id=strawberry.ID(ref.record_id),
            url=ref.url,
            updated_at=ref.updated_at,
            _id_pii=ref.id_pii,
            _owner=owner,
        )

    def audit_owner(self, ids: CustomerIds) -> str:
        return self._owner or record_owner(ids, self.system, str(self.id))


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A Relay-style page; cursors are opaque and signed.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int | None = None

    @classmethod
    def of(cls, edges: list[tuple[str, T]], has_next: bool, total: int | None) -> Connection[T]:
        return cls(
            edges=[Edge(cursor=c, node=n) for c, n in edges],
            page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1][0] if edges else None),
            total_count=total,
        )


@strawberry.type(description="A person as the CRM knows them (an account's contact).")
class Contact:
    id: strawberry.ID
    # The person's own record: the same rules as the customer's fields.
    name: str | None = strawberry.field(directives=[pii_of(m.Person, "name")], extensions=[Guard()])
    email: str | None = strawberry.field(
        directives=[pii_of(m.Person, "email")], extensions=[Guard()]
    )
    phone: str | None = strawberry.field(
        directives=[pii_of(m.Person, "phone")], extensions=[Guard()]
    )
    title: str | None
    source: Source

    @classmethod
    def of(cls, person: m.Person) -> Contact:
        # E.164 like every phone the gateway serves; a placeholder (n/a) is no number.
        return cls(
            id=strawberry.ID(person.id), name=person.name, email=person.email,
            phone=normalize_phone(person.phone), title=person.title,
            source=Source.of(person.source),
        )  # fmt: skip

    def audit_owner(self, ids: CustomerIds) -> str:
        return record_owner(ids, self.source.system, str(self.id))


@strawberry.type
class Opportunity:
    id: strawberry.ID
    name: str | None
    stage: str | None
    amount: float | None
    close_date: date | None


@strawberry.type
class Ticket:
    id: strawberry.ID
    subject: str | None
    status: str | None
    priority: str | None
    created_at: datetime | None
    updated_at: datetime | None
    source: Source

    @classmethod
    def of(cls, t: m.Ticket) -> Ticket:
        return cls(
            id=strawberry.ID(t.id), subject=t.subject, status=t.status, priority=t.priority,
            created_at=t.created_at, updated_at=t.updated_at, source=Source.of(t.source),
        )  # fmt: skip


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

    @classmethod
    def of(cls, s: m.Subscription) -> Subscription:
        return cls(
            id=strawberry.ID(s.id), status=s.status, plan=s.plan, amount=s.amount,
            currency=s.currency, interval=s.interval, current_period_end=s.current_period_end,
            source=Source.of(s.source),
        )  # fmt: skip


@strawberry.type(description="Amounts are integers in the currency's minor unit (cents).")
class Invoice:
    id: strawberry.ID
    status: str | None
    amount_due: int | None
    amount_paid: int | None
    currency: str | None
    created_at: datetime | None
    source: Source

    @classmethod
    def of(cls, i: m.Invoice) -> Invoice:
        return cls(
            id=strawberry.ID(i.id), status=i.status, amount_due=i.amount_due,
            amount_paid=i.amount_paid, currency=i.currency, created_at=i.created_at,
            source=Source.of(i.source),
        )  # fmt: skip


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
    _owner: strawberry.Private[str | None] = None

    @classmethod
    def of(
        cls, links: list[tuple[Connector, m.MarketingMember]], owner: str | None = None
    ) -> MarketingProfile:
        statuses = [mem.status for _, mem in links if mem.status]
        consents: dict[str, m.Consent] = {}
        for _, mem in links:
            for c in mem.consents:
                held = consents.get(c.channel)
                newer = c.updated_at and (
                    not held or not held.updated_at or c.updated_at > held.updated_at
                )
                if held is None or newer:
                    consents[c.channel] = c
        return cls(
            status=min(statuses, key=lambda s: _STATUS_RANK.get(s, 9)) if statuses else None,
            lists=[
                MarketingList(id=strawberry.ID(mem.list_id or mem.id), name=mem.list_name,
                              status=mem.status, source=Source.of(mem.source, owner))
                for _, mem in links
            ],
            consents=[
                Consent(channel=c.channel, status=c.status, updated_at=c.updated_at)
                for c in sorted(consents.values(), key=lambda c: c.channel)
            ],
            _links=links,
            _owner=owner,
        )  # fmt: skip

    @strawberry.field(description="Recent engagement (opens, clicks, …), newest first.")
    async def activity(self, info: Ctx, first: int = 10) -> list[EngagementEvent] | None:
        first = max(0, min(first, 100))
        pairs = {(c.name, mem.id): (c, mem.id) for c, mem in self._links}
        batches = await gather_loads(
            info, [(c, "activity_of_members", k) for c, k in pairs.values()]
        )
        events = newest_first(
            (e for batch in batches for e in batch or ()), lambda e: e.occurred_at
        )
        return [
            EngagementEvent(kind=e.kind, occurred_at=e.occurred_at, detail=e.detail,
                            source=Source.of(e.source, self._owner))
            for e in events[:first]
        ]  # fmt: skip
