"""The one field extension that enforces ``@auth`` and ``@pii``.

Put ``Guard()`` next to the directives on a field::

    @strawberry.field(directives=[Auth(requires=["tickets:read"])], extensions=[Guard()])
    @strawberry.field(directives=[pii_of(Person, "phone")], extensions=[Guard()])

A field's PII rule is never written by hand: :func:`pii_of` reads it from the
canonical model attribute the value comes from (``connectors.sdk.models``),
so every field showing a person's phone -- ``Customer.phone``,
``Contact.phone`` -- has the one rule of ``Person.phone``. A field whose kind
depends on the record (a data-quality conflict's value, a record id derived
from an email) carries ``@piiFromRecord`` and a ``Guard(rule_of=…)`` that
reads the rule off the object.

The guard asks ``gateway.policy`` once per field (and rule) per request
(memoized in ``Context.memo``) and then, before the resolver runs:

- forbidden -> raises ``FORBIDDEN`` with ``extensions.missing`` (the scopes
  lacking); the resolver never runs, so nothing is fetched for that subtree;
- hidden -> null (an empty list for a list, ``""`` for a non-null string),
  without an error and without running the resolver;
- masked -> runs the resolver and masks the strings it returns;
- allowed -> the resolver's value as it is.

Every PII value shown, in full or masked, is noted for the request's audit
event (``Context.pii_reads``: customer id -> ``{"Customer.email": "full"}``)
with where it went (``Context.pii_paths``), so the response can withhold it
when the audit trail cannot take the event. The customer a value belongs to
is its object's ``audit_owner(ids)``.

Every field with ``@auth`` must be nullable, so a forbidden subtree costs only
itself; the Guard refuses the schema otherwise. Records come from the shared
cache as canonical data and are guarded here on every request, so a cached
record never reaches a role that may not see it. ``c360 roles`` prints what
each built-in role gets on every guarded field (and the README carries it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.types import Info
from strawberry.types.base import StrawberryList, StrawberryOptional
from strawberry.types.field import StrawberryField

from connectors.sdk import PiiRule, pii_attributes
from gateway.policy import DEFAULT_POLICY, Access, Decision, Policy, mask
from schema.directives import Auth, Pii, PiiFromRecord

__all__ = ["FORBIDDEN", "Guard", "forbidden", "pii_of"]

FORBIDDEN = "FORBIDDEN"
_MEMO = "c360.policy.decisions"
_SHOWN = {Access.ALLOWED: "full", Access.MASKED: "masked"}

RuleOf = Callable[[Any], PiiRule | None]


def pii_of(model: type, attribute: str) -> Pii:
    """The ``@pii`` directive of a field that shows ``model.attribute``."""
    rule = pii_attributes(model).get(attribute)
    if rule is None:
        raise TypeError(f"{model.__name__}.{attribute} is not classified as PII")
    return Pii(kind=rule.kind, sensitive=rule.sensitive)


def forbidden(missing: tuple[str, ...], message: str | None = None) -> GraphQLError:
    return GraphQLError(
        message or f"not allowed: needs scope {', '.join(missing)}",
        extensions={"code": FORBIDDEN, "missing": list(missing)},
    )


class Guard(FieldExtension):
    """Enforces the ``@auth``/``@pii`` directives of the field it is on."""

    def __init__(self, *, rule_of: RuleOf | None = None) -> None:
        self.requires: frozenset[str] = frozenset()
        self.pii: PiiRule | None = None
        self.rule_of = rule_of
        self.empty: Any = None
        self.name = "?"

    def apply(self, field: StrawberryField) -> None:
        self.name = field.python_name
        requires: set[str] = set()
        dynamic = False
        for directive in field.directives:
            if isinstance(directive, Auth):
                requires.update(directive.requires)
            elif isinstance(directive, Pii):
                self.pii = directive.rule
            elif isinstance(directive, PiiFromRecord):
                dynamic = True
        if dynamic != (self.rule_of is not None):
            raise TypeError(f"{self.name}: @piiFromRecord and Guard(rule_of=…) go together")
        self.requires = frozenset(requires)
        if not self.requires and self.pii is None and self.rule_of is None:
            raise TypeError(f"Guard on {self.name} without @auth or @pii")
        kind = field.type
        if isinstance(kind, StrawberryOptional):
            self.empty = None
        elif requires:
            raise TypeError(f"@auth field {self.name} must be nullable")
        elif isinstance(kind, StrawberryList):
            self.empty = ()
        elif kind is str or kind is strawberry.ID:
            self.empty = ""
        else:
            raise TypeError(f"@pii field {self.name}: no hidden value for {kind}")

    def _decide(self, info: Info[Any, Any], rule: PiiRule | None) -> Decision:
        context = info.context
        memo = getattr(context, "memo", None)
        decisions: dict[tuple[Guard, PiiRule | None], Decision] | None = None
        if isinstance(memo, dict):
            decisions = memo.get(_MEMO)
            if decisions is None:
                decisions = memo[_MEMO] = {}
            found = decisions.get((self, rule))
            if found is not None:
                return found
        policy: Policy = getattr(context, "policy", None) or DEFAULT_POLICY
        decision = policy.decide(getattr(context, "principal", None), self.requires, rule)
        if decisions is not None:
            decisions[(self, rule)] = decision
        return decision

    def _rule(self, source: Any) -> PiiRule | None:
        return self.rule_of(source) if self.rule_of is not None else self.pii

    @staticmethod
    def _mask(rule: PiiRule, value: Any, empty: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            return mask(rule.kind, value)
        if isinstance(value, list | tuple):
            return [Guard._mask(rule, v, "") for v in value]
        # Not a string: nothing to show part of, so show none of it.
        return empty

    def _before(self, source: Any, info: Info[Any, Any]) -> tuple[Decision, PiiRule | None]:
        rule = self._rule(source)
        decision = self._decide(info, rule)
        if decision.access is Access.FORBIDDEN:
            raise forbidden(decision.missing)
        return decision, rule

    def _after(self, value: Any, source: Any, info: Info[Any, Any], d: Decision, rule: Any) -> Any:
        if rule is None or value is None or (isinstance(value, str | list | tuple) and not value):
            return value  # not PII here, or nothing shown: nothing to audit
        if d.access is Access.MASKED:
            value = self._mask(rule, value, self.empty)
        _note(source, info, _SHOWN[d.access], self.empty)
        return value

    def resolve(
        self, next_: SyncExtensionResolver, source: Any, info: Info[Any, Any], **kwargs: Any
    ) -> Any:
        decision, rule = self._before(source, info)
        if decision.access is Access.HIDDEN:
            return self.empty
        return self._after(next_(source, info, **kwargs), source, info, decision, rule)

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info[Any, Any], **kwargs: Any
    ) -> Any:
        decision, rule = self._before(source, info)
        if decision.access is Access.HIDDEN:
            return self.empty
        value = await next_(source, info, **kwargs)
        return self._after(value, source, info, decision, rule)


def _note(source: Any, info: Info[Any, Any], how: str, empty: Any) -> None:
    """Note a PII value shown (in full or masked) for the request's audit event."""
    context = info.context
    reads = getattr(context, "pii_reads", None)
    if not isinstance(reads, dict):
        return
    owner_of = getattr(source, "audit_owner", None)
    owner = owner_of(context.ids) if callable(owner_of) else None
    if not owner:
        # Every type with a PII field says whose data it holds; one that does
        # not is a schema bug, and the read is still recorded, never dropped.
        owner = "unattributed"
    fields = reads.setdefault(owner, {})
    name = f"{info._raw_info.parent_type.name}.{info.field_name}"
    if fields.get(name) != "full":  # one read in full makes the field a full read
        fields[name] = how
    paths = getattr(context, "pii_paths", None)
    if isinstance(paths, list):
        paths.append((info.path.as_list(), empty))
