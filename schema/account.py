"""B2B accounts from the CRM: hierarchy, contacts, opportunities.

Children and contacts of every account on a page load through one DataLoader
batch each, so a page of N accounts costs a bounded number of CRM calls.
Walking up the hierarchy (``ancestors``) stops at a repeated account, so a
loop in the CRM's parent links cannot hang a request.
"""

from __future__ import annotations

import strawberry

from connectors.sdk import Connector
from connectors.sdk import models as m
from schema._loading import Ctx, load, page_window
from schema.types import Connection, Contact, Opportunity, Source

__all__ = ["MAX_ANCESTORS", "Account"]

MAX_ANCESTORS = 20


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
            id=strawberry.ID(org.id), name=org.name, industry=org.industry, domain=org.domain,
            source=Source.of(org.source), _connector=connector, _parent_id=org.parent_id,
        )  # fmt: skip

    @strawberry.field(description="The parent account, when this one rolls up into another.")
    async def parent(self, info: Ctx) -> Account | None:
        if not self._parent_id:
            return None
        org = await load(info, self._connector, "organizations_by_id", self._parent_id)
        return Account.of(self._connector, org) if org else None

    @strawberry.field(
        description="Parent, grandparent, … up to the top; stops where the CRM's links loop."
    )
    async def ancestors(self, info: Ctx) -> list[Account]:
        chain: list[Account] = []
        seen = {str(self.id)}
        node: Account | None = self
        while node is not None and node._parent_id and len(chain) < MAX_ANCESTORS:
            if node._parent_id in seen:
                break
            seen.add(node._parent_id)
            node = await node.parent(info)
            if node is not None:
                chain.append(node)
        return chain

    @strawberry.field(description="Accounts whose parent is this one.")
    async def children(
        self, info: Ctx, first: int = 20, after: str | None = None
    ) -> Connection[Account]:
        orgs = await load(info, self._connector, "child_organizations", str(self.id)) or ()
        ordered = sorted(orgs, key=lambda o: o.id)
        edges, more = page_window(info, f"children:{self.id}", ordered, first, after)
        return Connection.of(
            [(c, Account.of(self._connector, o)) for c, o in edges], more, len(ordered)
        )

    @strawberry.field(description="People at this account in the CRM.")
    async def contacts(
        self, info: Ctx, first: int = 20, after: str | None = None
    ) -> Connection[Contact]:
        people = await load(info, self._connector, "contacts_of_organizations", str(self.id)) or ()
        ordered = sorted(people, key=lambda p: p.id)
        edges, more = page_window(info, f"contacts:{self.id}", ordered, first, after)
        return Connection.of([(c, Contact.of(p)) for c, p in edges], more, len(ordered))

    @strawberry.field
    async def opportunities(self, info: Ctx) -> list[Opportunity] | None:
        opps = await load(info, self._connector, "opportunities_of_organizations", str(self.id))
        return [
            Opportunity(id=strawberry.ID(o.id), name=o.name, stage=o.stage, amount=o.amount,
                        close_date=o.close_date)
            for o in opps or ()
        ]  # fmt: skip
