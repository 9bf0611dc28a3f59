"""The root Query: customers by gateway id, email or a system's id; search; accounts."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry
from graphql import GraphQLError

from connectors.sdk import (
    Connector,
    CrmConnector,
    Page,
    Person,
    PiiKind,
    UpstreamError,
    normalize_email,
    pii_attributes,
)
from gateway.cursors import InvalidCursor
from gateway.golden import GoldenRecord
from gateway.identity import (
    AmbiguousCustomer,
    CustomerUnreachable,
    InvalidCustomerId,
    Profile,
    resolve,
)
from gateway.policy import CUSTOMERS_READ, DEFAULT_POLICY, Access, Policy
from schema._loading import Ctx
from schema.account import Account
from schema.customer import Customer
from schema.directives import Auth
from schema.errors import bad_input, upstream_error
from schema.permissions import Guard, forbidden
from schema.types import Connection

__all__ = ["MAX_PAGE", "Query", "SystemRefInput"]

_MAX_EMAIL = 254
MAX_PAGE = 50
R = TypeVar("R")


@strawberry.input(
    description='A record id in one connected system, e.g. {system: "zendesk", id: "123"}.'
)
class SystemRefInput:
    system: str
    id: strawberry.ID


def _email(value: str, argument: str = "email") -> str:
    email = normalize_email(value) if len(value) <= _MAX_EMAIL else None
    if email is None or any(ch.isspace() for ch in email):
        raise bad_input("email is not a valid address", argument=argument)
    return email


def _anchor(info: Ctx, value: str, argument: str = "id") -> str:
    try:
        return info.context.ids.decode(value)
    except InvalidCustomerId:
        raise bad_input(
            "id is not a customer id issued by this gateway", argument=argument
        ) from None


def _each(read: Callable[[str], str], values: list[str]) -> list[str | GraphQLError]:
    """Each list item read on its own: a bad one is that item's error, not the list's."""
    read_values: list[str | GraphQLError] = []
    for value in values:
        try:
            read_values.append(read(value))
        except GraphQLError as exc:
            read_values.append(exc)
    return read_values


def _connector(info: Ctx, system: str, argument: str) -> Connector:
    connector = info.context.connectors.by_name.get(system)
    if connector is None:
        raise bad_input(f"unknown system {system!r}", argument=argument,
                        known=info.context.connectors.names)  # fmt: skip
    return connector


Path = list[str | int]


def _wrap(info: Ctx, profile: Profile | None, path: Path) -> Customer | None:
    if profile is None:
        return None
    ctx = info.context
    for failure in profile.failures.values():
        # Said at the customer's path even when no field of that system was
        # asked for: its records are missing from everything else.
        ctx.unreachable.append((path, failure))
    golden = GoldenRecord(profile, ctx.identity, ctx.connectors.names)
    anchor = golden.anchor
    return Customer(id=strawberry.ID(ctx.ids.encode(anchor) if anchor else ""), _profile=profile,
                    _golden=golden)  # fmt: skip


async def _by_anchor(info: Ctx, anchor: str, path: Path) -> Customer | None:
    try:
        if anchor.startswith("e:"):
            return _wrap(info, await resolve(info.context, email=anchor[2:]), path)
        system, _, record_id = anchor[2:].partition(":")
        connector = info.context.connectors.by_name.get(system)
        if connector is None:
            return None
        return _wrap(info, await resolve(info.context, ref=(connector, record_id)), path)
    except CustomerUnreachable as exc:
        # Nothing found and some systems failed: null, with every reason.
        for failure in exc.failures.values():
            info.context.unreachable.append((path, failure))
        return None
    except AmbiguousCustomer as exc:
        raise GraphQLError(str(exc), extensions=exc.extensions) from exc
    except UpstreamError as exc:
        raise upstream_error(exc) from exc


_SEARCHED_AS = {PiiKind.EMAIL: "email", PiiKind.PHONE: "phone", PiiKind.NAME: "name"}
_PERSON_PII = pii_attributes(Person)
_SEARCH_RULES = {
    PiiKind.EMAIL: _PERSON_PII["email"],
    PiiKind.PHONE: _PERSON_PII["phone"],
    PiiKind.NAME: _PERSON_PII["name"],
}


def _search_kind(text: str) -> PiiKind:
    """What a search text is: an email (has an @), a phone (digits, no letters), or a name."""
    if "@" in text:
        return PiiKind.EMAIL
    if not any(ch.isalpha() for ch in text) and sum(ch.isdigit() for ch in text) >= 3:
        return PiiKind.PHONE
    return PiiKind.NAME


def _searchable(info: Ctx, text: str) -> PiiKind:
    """Search only fields whose values the caller may see in full: a match on
    anything else would tell them a value they may not read."""
    kind = _search_kind(text)
    policy: Policy = info.context.policy or DEFAULT_POLICY
    decision = policy.decide(info.context.principal, (), _SEARCH_RULES[kind])
    if decision.access is not Access.ALLOWED:
        what = _SEARCHED_AS[kind]
        error = forbidden(
            (),
            f"searching by {what} needs {what}s shown in full; this caller sees them "
            f"{decision.access.value}" + (" (sign in with MFA)" if decision.mfa_required else ""),
        )
        error.extensions = {**(error.extensions or {}), "searchedBy": what,
                            "mfaRequired": decision.mfa_required}  # fmt: skip
        raise error
    return kind


def _crm(info: Ctx) -> CrmConnector:
    for connector in info.context.connectors.by_name.values():
        if isinstance(connector, CrmConnector):
            return connector
    raise bad_input("no CRM is connected")


def _item(result: Customer | BaseException | None) -> Customer | None:
    if isinstance(result, Exception):
        return result  # type: ignore[return-value]  # graphql-core reports it on the item
    if isinstance(result, BaseException):
        raise result
    return result


@strawberry.type
class Query:
    @strawberry.field(
        description="One customer, by exactly one of: gateway id, email, or a system's id.",
        directives=[Auth(requires=[CUSTOMERS_READ])],
        extensions=[Guard()],
    )
    async def customer(
        self,
        info: Ctx,
        id: strawberry.ID | None = None,
        email: str | None = None,
        ref: SystemRefInput | None = None,
    ) -> Customer | None:
        given = [name for name, v in (("id", id), ("email", email), ("ref", ref)) if v is not None]
        if len(given) != 1:
            raise bad_input("give exactly one of id, email or ref", given=given)
        here = info.path.as_list()
        if id is not None:
            return await _by_anchor(info, _anchor(info, str(id)), here)
        if email is not None:
            return await _by_anchor(info, "e:" + _email(email), here)
        assert ref is not None
        connector = _connector(info, ref.system, "ref.system")
        record_id = str(ref.id).strip()
        if not record_id or len(record_id) > 200:
            raise bad_input("ref.id must be a non-empty id", argument="ref.id")
        return await _by_anchor(info, f"r:{connector.name}:{record_id}", here)

    @strawberry.field(
        description=(
            "Several customers, in input order; null where unknown, or where that id or "
            "email is bad or its lookup failed (an error at that item's index)."
        ),
        directives=[Auth(requires=[CUSTOMERS_READ])],
        extensions=[Guard()],
    )
    async def customers(
        self,
        info: Ctx,
        ids: list[strawberry.ID] | None = None,
        emails: list[str] | None = None,
    ) -> list[Customer | None] | None:
        if (ids is None) == (emails is None):
            raise bad_input("give exactly one of ids or emails")
        values = [str(v) for v in (ids if ids is not None else emails or [])]
        if not values:
            raise bad_input("the list is empty")
        limit = info.context.settings.max_customers
        if len(values) > limit:
            raise bad_input(f"at most {limit} customers per query", limit=limit, given=len(values))
        if ids is not None:
            anchors = _each(lambda v: _anchor(info, v, "ids"), values)
        else:
            anchors = _each(lambda v: "e:" + _email(v, "emails"), values)
        # An exception as a list item becomes that item's own error (with its
        # index in the path), so one bad or failing customer does not void the list.
        here = info.path.as_list()
        found = iter(
            await asyncio.gather(
                *(
                    _by_anchor(info, a, [*here, i])
                    for i, a in enumerate(anchors)
                    if isinstance(a, str)
                ),
                return_exceptions=True,
            )
        )
        return [_item(next(found) if isinstance(a, str) else a) for a in anchors]

    @strawberry.field(
        description=(
            "Search the CRM's people, as customers: by name, by email (text with an @) or by "
            "phone (digits only). Only what the caller may see in full can be searched."
        ),
        directives=[Auth(requires=[CUSTOMERS_READ, "crm:read"])],
        extensions=[Guard()],
    )
    async def search_customers(
        self, info: Ctx, text: str, first: int = 10, after: str | None = None
    ) -> Connection[Customer] | None:
        text = text.strip()
        if not 2 <= len(text) <= 100:
            raise bad_input("text must be 2 to 100 characters", argument="text")
        within = _searchable(info, text)
        scope = "search:" + hashlib.sha256(text.lower().encode()).hexdigest()
        crm = _crm(info)

        async def fetch(limit: int, cursor: str | None) -> Page[Person]:
            return await crm.search_people(text, limit, cursor, within=within)

        window, more = await _vendor_window(info, scope, first, after, fetch)
        here = info.path.as_list()
        found = await asyncio.gather(
            *(_by_anchor(info, f"r:{crm.name}:{p.id}", here) for _, p in window),
            return_exceptions=True,
        )
        edges = [(c, _item(r)) for (c, _), r in zip(window, found, strict=True)]
        return Connection.of(edges, more, None)  # type: ignore[arg-type]

    @strawberry.field(
        description="One CRM account by its CRM id.",
        directives=[Auth(requires=["crm:read"])],
        extensions=[Guard()],
    )
    async def account(self, info: Ctx, id: strawberry.ID) -> Account | None:
        crm = _crm(info)
        try:
            org = await info.context.loaders.load(crm, "organizations_by_id", str(id))
        except UpstreamError as exc:
            raise upstream_error(exc) from exc
        return Account.of(crm, org) if org else None

    @strawberry.field(
        description="All CRM accounts, a page at a time.",
        directives=[Auth(requires=["crm:read"])],
        extensions=[Guard()],
    )
    async def accounts(
        self, info: Ctx, first: int = 20, after: str | None = None
    ) -> Connection[Account] | None:
        crm = _crm(info)
        window, more = await _vendor_window(info, "accounts", first, after, crm.organizations_page)
        return Connection.of([(c, Account.of(crm, o)) for c, o in window], more, None)


async def _vendor_window(
    info: Ctx,
    scope: str,
    first: int,
    after: str | None,
    fetch: Callable[[int, str | None], Awaitable[Page[R]]],
) -> tuple[list[tuple[str, R]], bool]:
    """A Relay window over a vendor's own pagination.

    A cursor is ``{p: vendor cursor where its page started, s: items to skip}``,
    so every edge -- not only the last -- is a valid ``after``: resuming
    re-reads from ``p`` (at most ``s + first`` items, both bounded).
    """
    if not 1 <= first <= MAX_PAGE:
        raise bad_input(f"first must be between 1 and {MAX_PAGE}", argument="first")
    start: str | None = None
    skip = 0
    if after is not None:
        try:
            value = info.context.cursors.decode(scope, after)
            start, skip = value["p"], int(value["s"])
        except (InvalidCursor, KeyError, TypeError, ValueError):
            raise bad_input("after is not a cursor of this list", argument="after") from None
        if not 0 <= skip <= MAX_PAGE or (start is not None and not isinstance(start, str)):
            raise bad_input("after is not a cursor of this list", argument="after")
    try:
        page = await fetch(skip + first, start)
    except UpstreamError as exc:
        raise upstream_error(exc) from exc
    items = list(page.items)[skip : skip + first]
    codec = info.context.cursors
    edges = [
        (codec.encode(scope, {"p": start, "s": skip + i + 1}), item) for i, item in enumerate(items)
    ]
    if edges and page.next_cursor is not None and len(page.items) <= skip + first:
        # The vendor's next cursor sits right after the last edge: resume from
        # it, so skips never pile up page after page.
        edges[-1] = (codec.encode(scope, {"p": page.next_cursor, "s": 0}), edges[-1][1])
    return edges, page.next_cursor is not None
