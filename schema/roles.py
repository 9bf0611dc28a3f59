"""The role x field matrix: what each role gets on every guarded field.

Generated from the schema (every field with a :class:`~schema.permissions.Guard`)
and a policy, so the documentation can never drift from what is enforced:
``c360 roles`` prints it, and the README carries the built-in policy's copy
(a test keeps the two equal). Cells::

    full    shown as it is
    full*   in full with an MFA login, masked without
    mask    masked (``j***@example.com``, ``+1-***-***-0123``)
    -       hidden: null, without an error
    ok      allowed (a field that needs scopes and holds no PII itself)
    F       FORBIDDEN: the field (and everything under it) is refused
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import strawberry

from connectors.sdk import Person, PiiRule, pii_attributes
from gateway.policy import Access, Policy
from schema.directives import PiiFromRecord
from schema.permissions import Guard

__all__ = ["guarded_fields", "role_matrix"]

_CELL = {Access.ALLOWED: "full", Access.MASKED: "mask", Access.HIDDEN: "-"}


@dataclass(frozen=True, slots=True)
class _Role:
    """A principal holding one role (and nothing else), for the policy to judge."""

    roles: frozenset[str]
    scopes: frozenset[str]
    mfa: bool


def guarded_fields(schema: strawberry.Schema) -> Iterator[tuple[str, Guard, bool]]:
    """``(Type.field, guard, from_record)`` for every guarded field, in SDL order."""
    names = schema.config.name_converter
    for type_ in schema.schema_converter.type_map.values():
        definition: Any = type_.definition
        for field in getattr(definition, "fields", ()):
            for extension in field.extensions:
                if isinstance(extension, Guard):
                    dynamic = any(isinstance(d, PiiFromRecord) for d in field.directives)
                    name = f"{definition.name}.{names.get_graphql_name(field)}"
                    yield name, extension, dynamic


def _cell(policy: Policy, role: str, requires: frozenset[str], rule: PiiRule | None) -> str:
    without = policy.decide(_Role(frozenset({role}), frozenset(), False), requires, rule)
    with_mfa = policy.decide(_Role(frozenset({role}), frozenset(), True), requires, rule)
    if without.access is Access.FORBIDDEN:
        return "F"
    if rule is None:
        return "ok"
    if without.access is not with_mfa.access and with_mfa.access is Access.ALLOWED:
        return "full*"
    return _CELL[without.access]


def _describe(guard: Guard, dynamic: bool) -> str:
    parts = []
    if guard.requires:
        parts.append(f"@auth({', '.join(sorted(guard.requires))})")
    if dynamic:
        parts.append("@piiFromRecord")
    elif guard.pii is not None:
        sensitive = ", sensitive" if guard.pii.sensitive else ""
        parts.append(f"@pii({guard.pii.kind.value}{sensitive})")
    return " ".join(parts)


def role_matrix(schema: strawberry.Schema, policy: Policy, roles: Sequence[str]) -> str:
    """The matrix as a Markdown table, one row per guarded field."""
    header = ["field", "directive", *roles]
    rows = [header, ["---"] * len(header)]
    notes = []
    for name, guard, dynamic in guarded_fields(schema):
        if dynamic:
            notes.append(name)
            continue
        rows.append(
            [f"`{name}`", _describe(guard, dynamic)]
            + [_cell(policy, role, guard.requires, guard.pii) for role in roles]
        )
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    person = pii_attributes(Person)
    email = _cells(policy, roles, person["email"])
    lines += [
        "",
        "`full*`: in full with an MFA login, masked without; `mask`: masked; `-`: hidden "
        "(null, no error); `ok`: allowed; `F`: FORBIDDEN.",
        f"Fields whose kind depends on the record ({', '.join(f'`{n}`' for n in notes)}) "
        "follow the rule of what they hold: a conflict's value that of the attribute in "
        "conflict (a phone's is a phone's), an id derived from an email (Mailchimp's "
        f"subscriber hash) that of an email ({email}).",
    ]
    return "\n".join(lines) + "\n"


def _cells(policy: Policy, roles: Sequence[str], rule: PiiRule) -> str:
    return ", ".join(f"{role} {_cell(policy, role, frozenset(), rule)}" for role in roles)
