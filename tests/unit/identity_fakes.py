"""In-memory connectors for unit tests of identity resolution and the golden record.

Each fake answers the SDK's batch lookups from a list of canonical records,
the way the real connectors key them (normalized email, E.164 phone, record
id, ``"<system>:<id>"`` for links), and can be told to fail a method. They
run behind the gateway's real per-request :class:`~gateway.context.Loaders`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from connectors.sdk import (
    BillingConnector,
    Connector,
    CrmConnector,
    MarketingConnector,
    MarketingMember,
    Person,
    SourceRef,
    TicketingConnector,
    UpstreamUnavailable,
    normalize_email,
    normalize_phone,
)
from gateway.context import Loaders
from gateway.golden import GoldenRecord
from gateway.identity import IdentitySettings, Profile, resolve
from gateway.registry import ConnectorSet

__all__ = ["Billing", "Crm", "Marketing", "Ticketing", "member", "person", "resolved", "world"]


def person(system: str, rid: str, name: str | None = None, *, email: str | None = None,
           phone: str | None = None, links: Mapping[str, str] | None = None) -> Person:  # fmt: skip
    return Person(
        source=SourceRef(system=system, record_id=rid), name=name, email=email, phone=phone,
        links=dict(links or {}),
    )  # fmt: skip


def member(rid: str, name: str | None, email: str, list_id: str = "L1") -> MarketingMember:
    return MarketingMember(
        source=SourceRef(system="mailchimp", record_id=rid), name=name, email=email,
        list_id=list_id,
    )  # fmt: skip


class _Fake:
    name: str
    records: list[Any]
    failing: set[str]
    asked: list[tuple[str, tuple[str, ...]]]

    def _setup(self, records: Sequence[Any], failing: Sequence[str]) -> None:
        self.records = list(records)
        self.failing = set(failing)
        self.asked = []

    def _ask(self, method: str, keys: Sequence[str]) -> None:
        self.asked.append((method, tuple(keys)))
        if method in self.failing:
            raise UpstreamUnavailable(f"{self.name} is down", source=self.name)

    def keys_asked(self, method: str) -> set[str]:
        return {key for name, keys in self.asked if name == method for key in keys}

    def _by_email(self, method: str, keys: Sequence[str]) -> dict[str, list[Any]]:
        self._ask(method, keys)
        return {k: found for k in keys if (found := [r for r in self.records
                                                     if normalize_email(r.email) == k])}  # fmt: skip

    def _by_phone(self, method: str, keys: Sequence[str]) -> dict[str, list[Any]]:
        self._ask(method, keys)
        return {k: found for k in keys if (found := [r for r in self.records
                                                     if normalize_phone(r.phone) == k])}  # fmt: skip

    def _by_id(self, method: str, keys: Sequence[str]) -> dict[str, Any]:
        self._ask(method, keys)
        return {r.source.record_id: r for r in self.records if r.source.record_id in keys}

    def _linked(self, keys: Sequence[str]) -> dict[str, list[Any]]:
        self._ask("people_linked_to", keys)
        out: dict[str, list[Any]] = {}
        for key in keys:
            system, _, target = key.partition(":")
            found = [r for r in self.records if getattr(r, "links", {}).get(system) == target]
            if found:
                out[key] = found
        return out


class Crm(_Fake, CrmConnector):
    name = "salesforce"

    def __init__(self, *records: Person, failing: Sequence[str] = ()) -> None:
        self._setup(records, failing)

    async def people_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        return self._by_email("people_by_email", emails)

    async def people_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        return self._by_id("people_by_id", ids)

    async def people_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        return self._by_phone("people_by_phone", phones)


class Ticketing(_Fake, TicketingConnector):
    name = "zendesk"

    def __init__(self, *records: Person, failing: Sequence[str] = ()) -> None:
        self._setup(records, failing)

    async def requesters_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        return self._by_email("requesters_by_email", emails)

    async def requesters_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        return self._by_id("requesters_by_id", ids)

    async def requesters_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        return self._by_phone("requesters_by_phone", phones)

    async def people_linked_to(self, keys: Sequence[str]) -> Mapping[str, Sequence[Any]]:
        return self._linked(keys)


class Billing(_Fake, BillingConnector):
    name = "stripe"

    def __init__(self, *records: Person, failing: Sequence[str] = ()) -> None:
        self._setup(records, failing)

    async def customers_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        return self._by_email("customers_by_email", emails)

    async def customers_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        return self._by_id("customers_by_id", ids)

    async def customers_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        return self._by_phone("customers_by_phone", phones)

    async def people_linked_to(self, keys: Sequence[str]) -> Mapping[str, Sequence[Any]]:
        return self._linked(keys)


class Marketing(_Fake, MarketingConnector):
    name = "mailchimp"

    def __init__(self, *records: MarketingMember, failing: Sequence[str] = ()) -> None:
        self._setup(records, failing)

    async def members_by_email(
        self, emails: Sequence[str]
    ) -> Mapping[str, Sequence[MarketingMember]]:
        return self._by_email("members_by_email", emails)

    async def members_by_id(self, ids: Sequence[str]) -> Mapping[str, Sequence[MarketingMember]]:
        self._ask("members_by_id", ids)
        out: dict[str, list[MarketingMember]] = {}
        for r in self.records:
            if r.source.record_id in ids:
                out.setdefault(r.source.record_id, []).append(r)
        return out


def world(*connectors: Connector, settings: IdentitySettings | None = None) -> Any:
    """A context resolve() can run in: these connectors behind real loaders."""
    registry = ConnectorSet({c.name: c for c in connectors})
    return SimpleNamespace(
        identity=settings or IdentitySettings(), connectors=registry, loaders=Loaders(registry)
    )


async def resolved(
    ctx: Any, *, email: str | None = None, ref: tuple[Connector, str] | None = None
) -> tuple[Profile, GoldenRecord]:
    profile = await resolve(ctx, email=email, ref=ref)
    assert profile is not None
    return profile, GoldenRecord(profile, ctx.identity, ctx.connectors.names)
