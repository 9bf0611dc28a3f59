"""The root Query: look customers up by gateway id, email, or a system's own id."""

from __future__ import annotations

import asyncio

import strawberry
from strawberry.types import Info

from connectors.sdk import UpstreamError, normalize_email
from gateway.context import Context
from gateway.identity import InvalidCustomerId, Profile, resolve_by_email, resolve_by_ref
from schema.errors import bad_input, upstream_error
from schema.types import Customer

__all__ = ["Query", "SystemRefInput"]

Ctx = Info[Context, None]
_MAX_EMAIL = 254


@strawberry.input(
    description='A record id in one connected system, e.g. {system: "zendesk", id: "123"}.'
)
class SystemRefInput:
    system: str
    id: strawberry.ID


def _email(value: str) -> str:
    email = normalize_email(value) if len(value) <= _MAX_EMAIL else None
    if email is None or any(ch.isspace() for ch in email):
        raise bad_input("email is not a valid address", argument="email")
    return email


def _customer_id_to_email(info: Ctx, value: str) -> str:
    try:
        return info.context.ids.decode(value)
    except InvalidCustomerId:
        raise bad_input("id is not a customer id issued by this gateway", argument="id") from None


def _wrap(info: Ctx, profile: Profile | None) -> Customer | None:
    if profile is None:
        return None
    anchor = profile.email
    customer_id = info.context.ids.encode(anchor) if anchor else ""
    return Customer(id=strawberry.ID(customer_id), _profile=profile)


async def _by_email(info: Ctx, email: str) -> Customer | None:
    try:
        return _wrap(info, await resolve_by_email(info.context, email))
    except UpstreamError as exc:
        raise upstream_error(exc) from exc


@strawberry.type
class Query:
    @strawberry.field(
        description="One customer, by exactly one of: gateway id, email, or a system's id."
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
        if id is not None:
            return await _by_email(info, _customer_id_to_email(info, str(id)))
        if email is not None:
            return await _by_email(info, _email(email))
        assert ref is not None
        connector = info.context.connectors.by_name.get(ref.system)
        if connector is None:
            raise bad_input(
                f"unknown system {ref.system!r}",
                argument="ref.system",
                known=info.context.connectors.names,
            )
        if not str(ref.id).strip() or len(str(ref.id)) > 200:
            raise bad_input("ref.id must be a non-empty id", argument="ref.id")
        try:
            profile = await resolve_by_ref(info.context, connector, str(ref.id).strip())
        except UpstreamError as exc:
            raise upstream_error(exc) from exc
        return _wrap(info, profile)

    @strawberry.field(description="Several customers, in input order; null where unknown.")
    async def customers(
        self,
        info: Ctx,
        ids: list[strawberry.ID] | None = None,
        emails: list[str] | None = None,
    ) -> list[Customer | None]:
        if (ids is None) == (emails is None):
            raise bad_input("give exactly one of ids or emails")
        values = [str(v) for v in (ids if ids is not None else emails or [])]
        if not values:
            raise bad_input("the list is empty")
        limit = info.context.settings.max_customers
        if len(values) > limit:
            raise bad_input(f"at most {limit} customers per query", limit=limit, given=len(values))
        if ids is not None:
            addresses = [_customer_id_to_email(info, v) for v in values]
        else:
            addresses = [_email(v) for v in values]
        # An exception as a list item becomes that item's own error (with its
        # index in the path), so one failing customer does not void the list.
        found = await asyncio.gather(
            *(_by_email(info, a) for a in addresses), return_exceptions=True
        )
        return [_item(r) for r in found]


def _item(result: Customer | BaseException | None) -> Customer | None:
    if isinstance(result, Exception):
        return result  # type: ignore[return-value]  # graphql-core reports it on the item
    if isinstance(result, BaseException):
        raise result
    return result
