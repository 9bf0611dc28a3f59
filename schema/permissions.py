"""The one field extension that enforces ``@auth`` and ``@pii``.

Put ``Guard()`` next to the directives on a field::

    @strawberry.field(directives=[Auth(requires=["tickets:read"])], extensions=[Guard()])

It asks ``gateway.policy`` once per field per request (memoized in
``Context.memo``) and then, before the resolver runs:

- forbidden -> raises ``FORBIDDEN`` with ``extensions.missing`` (the scopes
  lacking); the resolver never runs, so nothing is fetched for that subtree;
- hidden -> null (an empty list for a list, ``""`` for a non-null string),
  without an error and without running the resolver;
- masked -> runs the resolver and masks the strings it returns;
- allowed -> the resolver's value as it is.

Every field with ``@auth`` must be nullable, so a forbidden subtree costs only
itself; the Guard refuses the schema otherwise. Records come from the shared
cache as canonical data and are guarded here on every request, so a cached
record never reaches a role that may not see it.

The guarded fields, and what the built-in roles get (``full*``: in full only
with an MFA login, masked without; ``mask``: masked; ``-``: hidden; ``F``:
FORBIDDEN)::

    field                              directive               sup   acc   mkt   bil   int   adm
    Customer.name, firstName, lastName @pii(NAME)              full  full  mask  full  -     full
    Customer.email, emails             @pii(EMAIL)             full  full  mask  full  -     full
    Customer.phone, phones             @pii(PHONE, sensitive)  mask  mask  mask  full* -     full*
    ConflictValue.value                @pii(OTHER, sensitive)  mask  mask  mask  full* -     full*
    Contact.name                       @pii(NAME)              full  full  mask  full  -     full
    Contact.email                      @pii(EMAIL)             full  full  mask  full  -     full
    Contact.phone                      @pii(PHONE)             full  full  mask  full  -     full
    Customer.account                   @auth(crm:read)         ok    ok    ok    ok    ok    ok
    Customer.tickets                   @auth(tickets:read)     ok    ok    F     F     ok    ok
    Customer.subscriptions, invoices   @auth(billing:read)     F     ok    F     ok    ok    ok
    Customer.marketing                 @auth(marketing:read)   ok    F     ok    F     ok    ok

(sup support_agent, acc account_manager, mkt marketing, bil billing_admin,
int integration, adm admin.) Personal phones and the raw values behind a data
conflict (which include phones) are sensitive: a support agent sees the
country code and last 4 digits, enough to confirm a caller. A contact's
phone is an account's business line, so it is ordinary PII. Money amounts
are not PII: ``billing:read`` guards them as a whole.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.types import Info
from strawberry.types.base import StrawberryList, StrawberryOptional
from strawberry.types.field import StrawberryField

from gateway.policy import DEFAULT_POLICY, Access, Decision, PiiRule, Policy, mask
from schema.directives import Auth, Pii

__all__ = ["FORBIDDEN", "Guard", "forbidden"]

FORBIDDEN = "FORBIDDEN"
_MEMO = "c360.policy.decisions"


def forbidden(missing: tuple[str, ...]) -> GraphQLError:
    return GraphQLError(
        f"not allowed: needs scope {', '.join(missing)}",
        extensions={"code": FORBIDDEN, "missing": list(missing)},
    )


class Guard(FieldExtension):
    """Enforces the ``@auth``/``@pii`` directives of the field it is on."""

    def __init__(self) -> None:
        self.requires: frozenset[str] = frozenset()
        self.pii: PiiRule | None = None
        self.empty: Any = None
        self.name = "?"

    def apply(self, field: StrawberryField) -> None:
        self.name = field.python_name
        requires: set[str] = set()
        for directive in field.directives:
            if isinstance(directive, Auth):
                requires.update(directive.requires)
            elif isinstance(directive, Pii):
                self.pii = directive.rule
        self.requires = frozenset(requires)
        if not self.requires and self.pii is None:
            raise TypeError(f"Guard on {self.name} without @auth or @pii")
        kind = field.type
        if isinstance(kind, StrawberryOptional):
            self.empty = None
        elif requires:
            raise TypeError(f"@auth field {self.name} must be nullable")
        elif isinstance(kind, StrawberryList):
            self.empty = ()
        elif kind is str:
            self.empty = ""
        else:
            raise TypeError(f"@pii field {self.name}: no hidden value for {kind}")

    def _decide(self, info: Info[Any, Any]) -> Decision:
        context = info.context
        memo = getattr(context, "memo", None)
        decisions: dict[Guard, Decision] | None = None
        if isinstance(memo, dict):
            decisions = memo.get(_MEMO)
            if decisions is None:
                decisions = memo[_MEMO] = {}
            found = decisions.get(self)
            if found is not None:
                return found
        policy: Policy = getattr(context, "policy", None) or DEFAULT_POLICY
        decision = policy.decide(getattr(context, "principal", None), self.requires, self.pii)
        if decisions is not None:
            decisions[self] = decision
        return decision

    def _mask(self, value: Any) -> Any:
        assert self.pii is not None  # only PII is ever masked
        if value is None:
            return None
        if isinstance(value, str):
            return mask(self.pii.kind, value)
        if isinstance(value, list | tuple):
            return [self._mask(v) for v in value]
        # Not a string: nothing to show part of, so show none of it.
        return self.empty

    def resolve(
        self, next_: SyncExtensionResolver, source: Any, info: Info[Any, Any], **kwargs: Any
    ) -> Any:
        decision = self._decide(info)
        if decision.access is Access.ALLOWED:
            self._audit(source, info, decision)
            return next_(source, info, **kwargs)
        if decision.access is Access.FORBIDDEN:
            raise forbidden(decision.missing)
        if decision.access is Access.HIDDEN:
            return self.empty
        self._audit(source, info, decision)
        return self._mask(next_(source, info, **kwargs))

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info[Any, Any], **kwargs: Any
    ) -> Any:
        decision = self._decide(info)
        if decision.access is Access.ALLOWED:
            self._audit(source, info, decision)
            return await next_(source, info, **kwargs)
        if decision.access is Access.FORBIDDEN:
            raise forbidden(decision.missing)
        if decision.access is Access.HIDDEN:
            return self.empty
        self._audit(source, info, decision)
        return self._mask(await next_(source, info, **kwargs))

    def _audit(self, source: Any, info: Info[Any, Any], decision: Decision) -> None:
        """Note a PII field shown (in full or masked) for the request's audit event."""
        if self.pii is None:
            return
        reads = getattr(info.context, "pii_reads", None)
        if not isinstance(reads, dict):
            return
        owner = str(getattr(source, "id", None) or getattr(source, "record_id", None) or "unknown")
        shown = "" if decision.access is Access.ALLOWED else ":masked"
        reads.setdefault(owner, set()).add(f"{info.field_name}{shown}")
