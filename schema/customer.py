"""The Customer: one person across every connected system, merged with provenance."""

from __future__ import annotations

from datetime import datetime

import strawberry

from connectors.sdk import Domain, MarketingMember, Person, PiiKind, PiiRule, pii_attributes
from gateway.golden import GoldenRecord
from gateway.identity import CustomerIds, Profile
from schema._loading import Ctx, gather_loads, load, newest_first
from schema.account import Account
from schema.directives import Auth, PiiFromRecord
from schema.errors import upstream_error
from schema.permissions import Guard, pii_of
from schema.types import Invoice, MarketingProfile, Source, Subscription, Ticket

__all__ = [
    "ConflictValue",
    "Customer",
    "DataQuality",
    "Duplicate",
    "FieldConflict",
    "PossibleMatch",
    "Provenance",
]


@strawberry.type(description="Where a golden attribute's value came from, and by which rule.")
class Provenance:
    field: str
    system: str
    record_id: strawberry.ID
    updated_at: datetime | None
    rule: str


@strawberry.type
class Duplicate:
    system: str
    record_ids: list[strawberry.ID]


def _conflict_rule(value: ConflictValue) -> PiiRule | None:
    return value._rule


@strawberry.type
class ConflictValue:
    system: str
    record_id: strawberry.ID
    # As personal as the attribute in conflict: a phone's is a phone.
    value: str = strawberry.field(
        directives=[PiiFromRecord()], extensions=[Guard(rule_of=_conflict_rule)]
    )
    _rule: strawberry.Private[PiiRule | None] = None
    _owner: strawberry.Private[str] = ""

    def audit_owner(self, ids: CustomerIds) -> str:
        return self._owner


@strawberry.type
class FieldConflict:
    field: str
    values: list[ConflictValue]


def _match_id_rule(match: PossibleMatch) -> PiiRule | None:
    return PiiRule(match._id_pii) if match._id_pii is not None else None


@strawberry.type(
    description="A record a key found that was not merged into this customer, and why. "
    "Values are never shown: ask for the record by ref to see it."
)
class PossibleMatch:
    system: str
    record_id: strawberry.ID = strawberry.field(
        description="Its id in its system; personal data when the system derives it from "
        "some (Mailchimp's subscriber hash is md5 of the email).",
        directives=[PiiFromRecord()],
        extensions=[Guard(rule_of=_match_id_rule)],
    )
    matched_on: str = strawberry.field(description='The key that found it: "email" or "phone".')
    reason: str = strawberry.field(
        description='A stable code: "email differs", "link differs", "name differs" (it '
        'carries someone else\'s identifier), "shared phone", "shared email" (it was found '
        "through a value several people hold)."
    )
    _id_pii: strawberry.Private[PiiKind | None] = None

    def audit_owner(self, ids: CustomerIds) -> str:
        # Someone else's record: the read is theirs, as its customer id names them.
        return ids.encode(f"r:{self.system}:{self.record_id}")


@strawberry.type(description="What resolution found wrong with the data, reported not hidden.")
class DataQuality:
    duplicates: list[Duplicate]
    conflicts: list[FieldConflict]
    missing_in: list[str] = strawberry.field(
        description="Reachable systems that hold no record of the customer."
    )
    possible_matches: list[PossibleMatch] = strawberry.field(
        description="Records found through the customer's keys but not merged."
    )
    unreachable: list[str] = strawberry.field(
        description="Systems a lookup failed for while resolving: what they hold is unknown."
    )
    score: float | None = strawberry.field(
        description="1.0 for a clean record, lower per duplicate, conflict and missing system; "
        "null when a system was unreachable, since completeness was not checked."
    )


_CAMEL = {"first_name": "firstName", "last_name": "lastName"}
# A golden attribute's PII rule is its canonical attribute's.
_PERSON_PII = pii_attributes(Person)


def _raise_failure(profile: Profile, domain: Domain) -> None:
    # A failed lookup only matters when it left the domain with nothing.
    failure = profile.failure(domain)
    if failure is not None and not profile.records(domain):
        raise upstream_error(failure)


@strawberry.type(description="One customer across every connected system.")
class Customer:
    id: strawberry.ID = strawberry.field(
        description="Opaque and stable; pass it back to customer(id:)."
    )
    _profile: strawberry.Private[Profile]
    _golden: strawberry.Private[GoldenRecord]

    def audit_owner(self, ids: CustomerIds) -> str:
        return str(self.id)

    @strawberry.field(directives=[pii_of(Person, "name")], extensions=[Guard()])
    def name(self) -> str | None:
        return self._golden.get("name")

    @strawberry.field(directives=[pii_of(Person, "first_name")], extensions=[Guard()])
    def first_name(self) -> str | None:
        return self._golden.get("first_name")

    @strawberry.field(directives=[pii_of(Person, "last_name")], extensions=[Guard()])
    def last_name(self) -> str | None:
        return self._golden.get("last_name")

    @strawberry.field(directives=[pii_of(Person, "email")], extensions=[Guard()])
    def email(self) -> str | None:
        return self._golden.get("email")

    @strawberry.field(directives=[pii_of(Person, "phone")], extensions=[Guard()])
    def phone(self) -> str | None:
        return self._golden.get("phone")

    @strawberry.field
    def title(self) -> str | None:
        return self._golden.get("title")

    @strawberry.field(
        description="Every address any system holds, normalized (not reconciled).",
        directives=[pii_of(Person, "email")],
        extensions=[Guard()],
    )
    def emails(self) -> list[str]:
        return self._golden.contact_points("email")

    @strawberry.field(
        description="Every phone any system holds, in E.164 (not reconciled).",
        directives=[pii_of(Person, "phone")],
        extensions=[Guard()],
    )
    def phones(self) -> list[str]:
        return self._golden.contact_points("phone")

    @strawberry.field(description="Every linked record in every system.")
    def sources(self) -> list[Source]:
        # One entry per record (a marketing member in two lists is one record),
        # in a stable order whatever order the systems answered in.
        refs = {(link.record.source.system, link.record.source.record_id): link.record.source
                for link in self._profile.all()}  # fmt: skip
        return [Source.of(refs[k], str(self.id)) for k in sorted(refs)]

    @strawberry.field(description="Where each golden attribute came from.")
    def provenance(self) -> list[Provenance]:
        return [
            Provenance(
                field=_CAMEL.get(attribute, attribute), system=w.candidate.system,
                record_id=strawberry.ID(w.candidate.record_id),
                updated_at=w.candidate.updated_at, rule=w.rule,
            )
            for attribute, w in self._golden.winners.items()
        ]  # fmt: skip

    @strawberry.field
    def data_quality(self) -> DataQuality:
        q = self._golden.quality
        duplicates = [
            Duplicate(system=d.system, record_ids=[strawberry.ID(i) for i in d.record_ids])
            for d in q.duplicates
        ]
        conflicts = [
            FieldConflict(
                field=_CAMEL.get(c.field, c.field),
                values=[
                    ConflictValue(
                        system=v.system,
                        record_id=strawberry.ID(v.record_id),
                        value=v.value,
                        _rule=_PERSON_PII.get(c.field),
                        _owner=str(self.id),
                    )
                    for v in c.values
                ],
            )
            for c in q.conflicts
        ]
        possible = [
            PossibleMatch(
                system=m.system, record_id=strawberry.ID(m.record_id),
                matched_on=m.matched_on, reason=m.reason, _id_pii=m.id_pii,
            )
            for m in q.possible_matches
        ]  # fmt: skip
        return DataQuality(
            duplicates=duplicates, conflicts=conflicts, missing_in=list(q.missing_in),
            possible_matches=possible, unreachable=list(q.unreachable), score=q.score,
        )  # fmt: skip

    @strawberry.field(
        description="The CRM account (organization) the customer belongs to.",
        directives=[Auth(requires=["crm:read"])],
        extensions=[Guard()],
    )
    async def account(self, info: Ctx) -> Account | None:
        _raise_failure(self._profile, Domain.CRM)
        for link in sorted(
            self._profile.records(Domain.CRM), key=lambda link: link.record.source.record_id
        ):
            org_id = getattr(link.record, "organization_id", None)
            if org_id:
                org = await load(info, link.connector, "organizations_by_id", org_id)
                if org is not None:
                    return Account.of(link.connector, org)
        return None

    @strawberry.field(
        description="Support tickets the customer requested, newest first.",
        directives=[Auth(requires=["tickets:read"])],
        extensions=[Guard()],
    )
    async def tickets(self, info: Ctx) -> list[Ticket] | None:
        _raise_failure(self._profile, Domain.TICKETING)
        links = self._profile.records(Domain.TICKETING)
        batches = await gather_loads(
            info, [(link.connector, "tickets_of_requesters", link.record.id) for link in links]
        )
        tickets = [t for batch in batches for t in batch or ()]
        return [Ticket.of(t) for t in newest_first(tickets, lambda t: t.updated_at or t.created_at)]

    @strawberry.field(
        description="Current (not canceled) subscriptions over every billing account.",
        directives=[Auth(requires=["billing:read"])],
        extensions=[Guard()],
    )
    def subscriptions(self) -> list[Subscription] | None:
        _raise_failure(self._profile, Domain.BILLING)
        return [
            Subscription.of(s)
            for link in self._profile.records(Domain.BILLING)
            if isinstance(link.record, Person)
            for s in link.record.subscriptions
        ]

    @strawberry.field(
        description="Invoices over every billing account, newest first.",
        directives=[Auth(requires=["billing:read"])],
        extensions=[Guard()],
    )
    async def invoices(self, info: Ctx) -> list[Invoice] | None:
        _raise_failure(self._profile, Domain.BILLING)
        links = self._profile.records(Domain.BILLING)
        batches = await gather_loads(
            info, [(link.connector, "invoices_of_customers", link.record.id) for link in links]
        )
        invoices = [i for batch in batches for i in batch or ()]
        return [Invoice.of(i) for i in newest_first(invoices, lambda i: i.created_at)]

    @strawberry.field(
        description="Marketing status, lists and consents; null when not a member.",
        directives=[Auth(requires=["marketing:read"])],
        extensions=[Guard()],
    )
    def marketing(self) -> MarketingProfile | None:
        _raise_failure(self._profile, Domain.MARKETING)
        links = [
            (link.connector, link.record)
            for link in self._profile.records(Domain.MARKETING)
            if isinstance(link.record, MarketingMember)
        ]
        return MarketingProfile.of(links, str(self.id)) if links else None
