"""Cross-system identity: who a customer is in every connected system.

A customer is anchored on a normalized email. Resolution looks the address up
in every connector concurrently (one DataLoader batch per connector method),
and a system's own id (``ref``) is first read from that system, then resolved
by the email it carries. The gateway's customer id is the anchor encrypted
deterministically (AES-SIV): stable across processes that share
``C360_ID_KEY``, opaque to clients, and reversible without a database.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from connectors.sdk import (
    Connector,
    Domain,
    MarketingMember,
    Person,
    SourceRef,
    UpstreamError,
    normalize_email,
)
from gateway.context import Context

__all__ = [
    "EMAIL_LOOKUP",
    "ID_LOOKUP",
    "CustomerIds",
    "InvalidCustomerId",
    "Linked",
    "Profile",
    "resolve_by_email",
    "resolve_by_ref",
]

#: The method of each domain that finds people by normalized email.
EMAIL_LOOKUP = {
    Domain.CRM: "people_by_email",
    Domain.TICKETING: "requesters_by_email",
    Domain.BILLING: "customers_by_email",
    Domain.MARKETING: "members_by_email",
}
#: The method of each domain that reads a person by that system's own id.
ID_LOOKUP = {
    Domain.CRM: "people_by_id",
    Domain.TICKETING: "requesters_by_id",
    Domain.BILLING: "customers_by_id",
    Domain.MARKETING: "members_by_id",
}
#: Which system's value wins for the golden name/email/phone.
_PRIORITY = (Domain.CRM, Domain.BILLING, Domain.TICKETING, Domain.MARKETING)
_ID_PREFIX = "c360_"


class InvalidCustomerId(ValueError):
    """A customer id that this gateway did not issue."""


class CustomerIds:
    def __init__(self, key: bytes) -> None:
        self._siv = AESSIV(key)

    def encode(self, email: str) -> str:
        token = self._siv.encrypt(b"e:" + email.encode(), None)
        return _ID_PREFIX + base64.urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, customer_id: str) -> str:
        if not customer_id.startswith(_ID_PREFIX) or len(customer_id) > 600:
            raise InvalidCustomerId("not a c360 customer id")
        raw = customer_id.removeprefix(_ID_PREFIX)
        try:
            token = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            plain = self._siv.decrypt(token, None)
        except (ValueError, InvalidTag) as exc:
            raise InvalidCustomerId("not a c360 customer id") from exc
        if not plain.startswith(b"e:"):
            raise InvalidCustomerId("not a c360 customer id")
        return plain[2:].decode()


@dataclass(frozen=True, slots=True)
class Linked:
    """One record of the customer in one system."""

    connector: Connector
    record: Person | MarketingMember


@dataclass
class Profile:
    """Everything resolution found for one customer."""

    email: str | None
    linked: dict[Domain, list[Linked]] = field(default_factory=dict)
    # Systems whose lookup failed: their fields report the error.
    failures: dict[Domain, UpstreamError] = field(default_factory=dict)

    def records(self, domain: Domain) -> list[Linked]:
        return self.linked.get(domain, [])

    @property
    def found(self) -> bool:
        return any(self.linked.values())

    def _first(self, attribute: str) -> Any:
        for domain in _PRIORITY:
            for link in self.records(domain):
                value = getattr(link.record, attribute, None)
                if value:
                    return value
        return None

    @property
    def name(self) -> str | None:
        value: str | None = self._first("name")
        return value

    @property
    def phone(self) -> str | None:
        value: str | None = self._first("phone")
        return value

    @property
    def sources(self) -> list[SourceRef]:
        seen: dict[tuple[str, str], SourceRef] = {}
        for domain in Domain:
            for link in self.records(domain):
                ref = link.record.source
                seen.setdefault((ref.system, ref.record_id), ref)
        return list(seen.values())

    def add(self, domain: Domain, connector: Connector, records: Iterable[Any]) -> None:
        bucket = self.linked.setdefault(domain, [])
        known = {link.record.source.record_id for link in bucket if link.connector is connector}
        for record in records:
            if record.source.record_id not in known:
                known.add(record.source.record_id)
                bucket.append(Linked(connector, record))


def _as_list(found: Any) -> Sequence[Any]:
    if found is None:
        return ()
    if isinstance(found, Sequence):
        return found
    return (found,)


async def resolve_by_email(ctx: Context, email: str, seed: Profile | None = None) -> Profile | None:
    """Look ``email`` (already normalized) up in every connector at once."""
    profile = seed or Profile(email=email)
    pairs = [
        (domain, connector)
        for domain, connectors in ctx.connectors.by_domain.items()
        for connector in connectors
    ]
    results = await asyncio.gather(
        *(ctx.loaders.load(c, EMAIL_LOOKUP[d], email) for d, c in pairs), return_exceptions=True
    )
    for (domain, connector), result in zip(pairs, results, strict=True):
        if isinstance(result, UpstreamError):
            profile.failures.setdefault(domain, result)
        elif isinstance(result, BaseException):
            raise result
        else:
            profile.add(domain, connector, _as_list(result))
    if not profile.found:
        if profile.failures:
            # Nothing found and something failed: we cannot say "no such
            # customer", so report the failure instead of a false null.
            raise next(iter(profile.failures.values()))
        return None
    return profile


async def resolve_by_ref(ctx: Context, connector: Connector, record_id: str) -> Profile | None:
    """Read the record from its own system, then resolve by the email it carries."""
    found = _as_list(await ctx.loaders.load(connector, ID_LOOKUP[connector.domain], record_id))
    if not found:
        return None
    emails = sorted(e for r in found if (e := normalize_email(getattr(r, "email", None))))
    email = emails[0] if emails else None
    seed = Profile(email=email)
    seed.add(connector.domain, connector, found)
    if email is None:
        return seed
    return await resolve_by_email(ctx, email, seed)
