"""The Connector base class and the four domain protocols.

A connector is one vendor package that subclasses exactly one of
:class:`CrmConnector`, :class:`TicketingConnector`, :class:`BillingConnector`
or :class:`MarketingConnector`. Each domain has **one required method** -- the
email lookup that anchors a person in that system -- and hooks with sensible
defaults (an empty answer) for the rest, so a new connector works after one
method and grows by overriding hooks.

Every read is batch-first, because a DataLoader calls it: a sequence of keys
in, a mapping from key to records out. Keys the vendor does not know are simply
absent from the mapping. Email keys arrive normalized (see
:func:`normalize_email`) and results must be keyed by the normalized form,
whatever case or padding the vendor stored. A connector chunks the keys at its
vendor's batch limit and runs the chunks concurrently.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx
import phonenumbers

from connectors.sdk.errors import ConfigurationError
from connectors.sdk.http import ErrorPolicy, RequestObserver, VendorClient
from connectors.sdk.models import (
    Domain,
    EngagementEvent,
    Invoice,
    MarketingMember,
    Opportunity,
    Organization,
    Page,
    Person,
    PiiKind,
    Ticket,
)

__all__ = [
    "BillingConnector",
    "Connector",
    "ConnectorSettings",
    "CrmConnector",
    "MarketingConnector",
    "TicketingConnector",
    "chunked",
    "gather_chunks",
    "group_by",
    "normalize_email",
    "normalize_phone",
]

K = TypeVar("K")
V = TypeVar("V")


def normalize_phone(value: str | None, region: str = "US") -> str | None:
    """E.164 (``+14155550123``) for a valid number in any common format, else ``None``.

    Placeholders (``n/a``, ``000-000-0000``) and impossible numbers are
    ``None``, so they can never link two people.
    """
    if not value or not value.strip():
        return None
    return _e164(value, region)


# Parsing is ~50 µs a number and every resolution parses the same few phones
# again (each record's, on every request, cache hits included).
@functools.lru_cache(maxsize=8192)
def _e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str | None) -> str | None:
    """Trim and lower-case; ``None`` for anything that is not an address."""
    if value is None:
        return None
    value = value.strip().lower()
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
        return None
    return value


def chunked(items: Sequence[K], size: int) -> list[Sequence[K]]:
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [items[i : i + size] for i in range(0, len(items), size)]


async def gather_chunks(
    keys: Sequence[K],
    size: int,
    fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]],
) -> dict[K, V]:
    """Run ``fetch`` over ``keys`` in chunks of ``size``, concurrently, and merge."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    unique = list(dict.fromkeys(keys))
    if len(unique) <= size:
        # The usual case: one chunk needs no task of its own.
        return dict(await fetch(unique)) if unique else {}
    merged: dict[K, V] = {}
    for part in await asyncio.gather(*(fetch(chunk) for chunk in chunked(unique, size))):
        merged.update(part)
    return merged


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSettings:
    """What the gateway's config gives one connector.

    ``credentials`` hold secrets (tokens, API keys) read from the environment;
    ``options`` hold vendor specifics (Salesforce API version, Mailchimp list
    ids, …) that each connector documents.
    """

    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 10.0

    def credential(self, name: str, connector: str) -> str:
        value = self.credentials.get(name)
        if not value:
            raise ConfigurationError(f"connector {connector!r} needs credential {name!r}")
        return value


class Connector(ABC):
    """Base of every connector: owns one :class:`VendorClient`.

    Hooks: :meth:`auth` (default: bearer token from ``credentials["token"]``),
    :meth:`default_headers`, :attr:`error_policy`, :meth:`close`.
    """

    name: ClassVar[str]
    domain: ClassVar[Domain]
    error_policy: ClassVar[type[ErrorPolicy]] = ErrorPolicy
    #: How many emails one upstream call of the email lookup answers; 1 where
    #: the vendor has no multi-value read (the contract kit checks the bound).
    email_batch_size: ClassVar[int] = 1

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.settings = settings
        self.http = VendorClient(
            source=self.name,
            base_url=settings.base_url,
            auth=self.auth(),
            headers=self.default_headers(),
            policy=self.error_policy(self.name),
            timeout=settings.timeout,
            transport=transport,
            observer=observer,
        )

    def auth(self) -> httpx.Auth | None:
        token = self.settings.credential("token", self.name)
        return _BearerAuth(token)

    async def people_linked_to(self, keys: Sequence[str]) -> Mapping[str, Sequence[Any]]:
        """Records of this system that carry an explicit link to another system's
        record: keys are ``"<system>:<id>"`` (e.g. ``"salesforce:003…"`` for a
        Stripe customer whose metadata names that CRM contact)."""
        return {}

    def default_headers(self) -> Mapping[str, str]:
        return {"Accept": "application/json", "User-Agent": "c360-gateway"}

    async def close(self) -> None:
        await self.http.aclose()


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never print the secret
        return "_BearerAuth(***)"


class CrmConnector(Connector):
    """CRM: people and the organizations they belong to."""

    domain = Domain.CRM

    @abstractmethod
    async def people_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """Contacts whose email matches, keyed by normalized email."""

    async def people_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        return {}

    async def people_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """Contacts whose phone matches, keyed by the E.164 number asked for."""
        return {}

    async def organizations_by_id(self, ids: Sequence[str]) -> Mapping[str, Organization]:
        return {}

    async def child_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Organization]]:
        """Direct children of each organization (its ``parent_id`` is the key)."""
        return {}

    async def contacts_of_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Person]]:
        return {}

    async def organizations_page(self, limit: int, after: str | None) -> Page[Organization]:
        """A page of all organizations in a stable order; ``after`` is the
        connector's own cursor from the previous page."""
        return Page(items=())

    async def search_people(
        self, text: str, limit: int, after: str | None, *, within: PiiKind | None = None
    ) -> Page[Person]:
        """Full-text search over people: every field, or only the fields that
        hold ``within`` (names, emails or phones). The gateway searches only
        what the caller may see, so a connector must not widen ``within``."""
        return Page(items=())

    async def opportunities_of_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Opportunity]]:
        return {}


class TicketingConnector(Connector):
    """Ticketing: requesters and their tickets."""

    domain = Domain.TICKETING

    @abstractmethod
    async def requesters_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """End users whose email matches, keyed by normalized email."""

    async def requesters_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        return {}

    async def requesters_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """End users whose phone matches, keyed by the E.164 number asked for."""
        return {}

    async def tickets_of_requesters(
        self, requester_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Ticket]]:
        return {}


class BillingConnector(Connector):
    """Billing: customers (with their subscriptions) and invoices."""

    domain = Domain.BILLING

    @abstractmethod
    async def customers_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """Billing customers whose email matches, keyed by normalized email.

        Returned people carry their ``subscriptions`` when the vendor can embed
        them in the same call (Stripe ``expand[]``), saving a dependent hop.
        """

    async def customers_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        return {}

    async def customers_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """Billing customers whose phone matches, keyed by the E.164 number asked for."""
        return {}

    async def invoices_of_customers(
        self, customer_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Invoice]]:
        return {}


class MarketingConnector(Connector):
    """Marketing automation: audience memberships, consent and engagement."""

    domain = Domain.MARKETING

    @abstractmethod
    async def members_by_email(
        self, emails: Sequence[str]
    ) -> Mapping[str, Sequence[MarketingMember]]:
        """Memberships (one per list/audience) of each normalized email."""

    async def members_by_id(self, ids: Sequence[str]) -> Mapping[str, Sequence[MarketingMember]]:
        return {}

    async def activity_of_members(
        self, member_ids: Sequence[str]
    ) -> Mapping[str, Sequence[EngagementEvent]]:
        return {}


def group_by(items: Iterable[V], key: Callable[[V], K | None]) -> dict[K, list[V]]:
    out: dict[K, list[V]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            out.setdefault(k, []).append(item)
    return out
