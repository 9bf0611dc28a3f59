"""Roles and scopes -> field access: allowed, masked, hidden or forbidden.

A field may require scopes (``@auth(requires: …)``) and may hold PII
(``@pii(kind: …, sensitive: …)``). :meth:`Policy.decide` answers for one
principal and one field:

1. a required scope the principal lacks -> ``forbidden`` (with the missing scopes);
2. not PII -> ``allowed``;
3. PII -> the most permissive treatment over the principal's roles for that
   kind (``full``, ``masked`` or ``hidden``); a principal none of whose roles
   the policy knows gets ``full`` with the ``pii:read`` scope, else ``hidden``;
4. ``full`` needs ``pii:read`` (else ``masked``); on a ``sensitive`` field it
   also needs ``pii:sensitive`` and, unless ``mfa_for_sensitive: false``, an
   MFA login (``principal.mfa``: ``amr`` or ``acr`` as the auth config says);
   without them the value comes ``masked``.

A request without a principal (``None``) gets no access: every required scope
is missing and every PII value is hidden. Whoever builds the Context decides
whether some requests run as a configured principal instead.

A principal's scopes are its own (``principal.scopes``) plus those of its
roles here. The config section (``Settings.raw["policy"]``)::

    policy:
      mfa_for_sensitive: true
      roles:
        marketing:                  # a built-in: only the keys given replace it
          pii: {default: masked, email: hidden}
        auditor:                    # a new role
          scopes: [crm:read, audit:read]
          pii: hidden               # one treatment for every kind
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from connectors.sdk import PiiKind, PiiRule
from gateway._masks import mask, mask_email, mask_last4, mask_name, mask_phone
from gateway.config import ConfigError

__all__ = [
    "BUILTIN_PII",
    "BUILTIN_ROLE_SCOPES",
    "CUSTOMERS_READ",
    "DEFAULT_POLICY",
    "SCOPES",
    "Access",
    "Decision",
    "PiiKind",
    "PiiRule",
    "Policy",
    "PrincipalLike",
    "RolePolicy",
    "Treatment",
    "mask",
    "mask_email",
    "mask_last4",
    "mask_name",
    "mask_phone",
    "policy_from_mapping",
]

#: Looking customers up at all: who they are, their record ids, provenance and
#: data quality. Without it ``customer``, ``customers`` and ``searchCustomers``
#: are FORBIDDEN before any vendor is asked.
CUSTOMERS_READ = "customers:read"
PII_READ = "pii:read"
PII_SENSITIVE = "pii:sensitive"
SCOPES = frozenset(
    {CUSTOMERS_READ, "crm:read", "tickets:read", "billing:read", "marketing:read", PII_READ,
     PII_SENSITIVE, "audit:read"}
)  # fmt: skip


class PrincipalLike(Protocol):
    """What the policy reads of a caller (``gateway.auth.Principal`` has it)."""

    @property
    def roles(self) -> AbstractSet[str]: ...

    @property
    def scopes(self) -> AbstractSet[str]: ...

    @property
    def mfa(self) -> bool: ...


class Treatment(StrEnum):
    HIDDEN = "hidden"
    MASKED = "masked"
    FULL = "full"


class Access(StrEnum):
    ALLOWED = "allowed"
    MASKED = "masked"
    HIDDEN = "hidden"
    FORBIDDEN = "forbidden"


_RANK = {Treatment.HIDDEN: 0, Treatment.MASKED: 1, Treatment.FULL: 2}
_ACCESS = {Treatment.HIDDEN: Access.HIDDEN, Treatment.MASKED: Access.MASKED,
           Treatment.FULL: Access.ALLOWED}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Decision:
    access: Access
    missing: tuple[str, ...] = ()
    # Masked only for want of an MFA login: signing in again with MFA unmasks it.
    mfa_required: bool = False


@dataclass(frozen=True, slots=True)
class RolePolicy:
    scopes: frozenset[str] = frozenset()
    # Per-kind treatment; ``pii_default`` for the other kinds; ``None`` there
    # means the role says nothing and scopes decide.
    pii: Mapping[PiiKind, Treatment] = field(default_factory=lambda: MappingProxyType({}))
    pii_default: Treatment | None = None

    def treatment(self, kind: PiiKind) -> Treatment | None:
        return self.pii.get(kind, self.pii_default)


BUILTIN_ROLE_SCOPES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "support_agent": frozenset(
            {CUSTOMERS_READ, "crm:read", "tickets:read", "marketing:read", PII_READ}
        ),
        "account_manager": frozenset(
            {CUSTOMERS_READ, "crm:read", "tickets:read", "billing:read", PII_READ}
        ),
        "marketing": frozenset({CUSTOMERS_READ, "crm:read", "marketing:read"}),
        "billing_admin": frozenset(
            {CUSTOMERS_READ, "crm:read", "billing:read", PII_READ, PII_SENSITIVE}
        ),
        "integration": frozenset(
            {CUSTOMERS_READ, "crm:read", "tickets:read", "billing:read", "marketing:read"}
        ),
        "admin": SCOPES,
    }
)
BUILTIN_PII: Mapping[str, Treatment] = MappingProxyType(
    {
        "support_agent": Treatment.FULL,
        "account_manager": Treatment.FULL,
        "marketing": Treatment.MASKED,
        "billing_admin": Treatment.FULL,
        "integration": Treatment.HIDDEN,
        "admin": Treatment.FULL,
    }
)


def _builtin_roles() -> Mapping[str, RolePolicy]:
    return MappingProxyType(
        {name: RolePolicy(scopes, pii_default=BUILTIN_PII[name])
         for name, scopes in BUILTIN_ROLE_SCOPES.items()}
    )  # fmt: skip


_DECIDED = 1024


@dataclass(frozen=True, slots=True)
class Policy:
    roles: Mapping[str, RolePolicy] = field(default_factory=_builtin_roles)
    mfa_for_sensitive: bool = True
    # Decisions by (roles, scopes, mfa, requires, rule): a decision depends on
    # nothing else, and every guarded field of every request asks for one.
    _decided: dict[tuple[Any, ...], Decision] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def scopes_of(self, principal: PrincipalLike | None) -> frozenset[str]:
        if principal is None:
            return frozenset()
        scopes = set(principal.scopes)
        for role in principal.roles:
            known = self.roles.get(role)
            if known is not None:
                scopes |= known.scopes
        return frozenset(scopes)

    def decide(
        self,
        principal: PrincipalLike | None,
        requires: Iterable[str] = (),
        pii: PiiRule | None = None,
    ) -> Decision:
        key: tuple[Any, ...] | None = None
        if isinstance(requires, frozenset) and (
            principal is None
            or (isinstance(principal.roles, frozenset) and isinstance(principal.scopes, frozenset))
        ):
            key = (requires, pii) if principal is None else (
                principal.roles, principal.scopes, principal.mfa, requires, pii
            )  # fmt: skip
            known = self._decided.get(key)
            if known is not None:
                return known
        decision = self._decide(principal, requires, pii)
        if key is not None:
            if len(self._decided) >= _DECIDED:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _decide(
        self, principal: PrincipalLike | None, requires: Iterable[str], pii: PiiRule | None
    ) -> Decision:
        scopes = self.scopes_of(principal)
        missing = tuple(sorted(set(requires) - scopes))
        if missing:
            return Decision(Access.FORBIDDEN, missing)
        if pii is None:
            return Decision(Access.ALLOWED)
        if principal is None:
            return Decision(Access.HIDDEN)
        said = [t for r in principal.roles if r in self.roles
                if (t := self.roles[r].treatment(pii.kind)) is not None]  # fmt: skip
        if said:
            treatment = max(said, key=_RANK.__getitem__)
        else:
            treatment = Treatment.FULL if PII_READ in scopes else Treatment.HIDDEN
        if treatment is Treatment.FULL and PII_READ not in scopes:
            treatment = Treatment.MASKED
        if treatment is Treatment.FULL and pii.sensitive:
            if PII_SENSITIVE not in scopes:
                return Decision(Access.MASKED)
            if self.mfa_for_sensitive and not principal.mfa:
                return Decision(Access.MASKED, mfa_required=True)
        return Decision(_ACCESS[treatment])


DEFAULT_POLICY = Policy()


# -- config ----------------------------------------------------------------------------------


def _treatment(value: Any, where: str) -> Treatment:
    try:
        return Treatment(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not one of full, masked, hidden") from None


def _role(name: str, raw: Any, base: RolePolicy) -> RolePolicy:
    where = f"policy.roles.{name}"
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with 'scopes' and/or 'pii'")
    unknown = sorted(map(str, set(raw) - {"scopes", "pii"}))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    scopes = base.scopes
    if "scopes" in raw:
        listed = raw["scopes"] if raw["scopes"] is not None else []
        if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
            raise ConfigError(f"{where}.scopes must be a list of scope names")
        bad = sorted(set(listed) - SCOPES)
        if bad:
            known = ", ".join(sorted(SCOPES))
            raise ConfigError(f"{where}.scopes: unknown scope(s) {', '.join(bad)}; known: {known}")
        scopes = frozenset(listed)
    if "pii" not in raw:
        return RolePolicy(scopes, base.pii, base.pii_default)
    pii = raw["pii"]
    if not isinstance(pii, Mapping):
        return RolePolicy(scopes, pii_default=_treatment(pii, f"{where}.pii"))
    per_kind: dict[PiiKind, Treatment] = {}
    default = base.pii_default
    for key, value in pii.items():
        if str(key).lower() == "default":
            default = _treatment(value, f"{where}.pii.default")
            continue
        try:
            kind = PiiKind(str(key).upper())
        except ValueError:
            kinds = ", ".join(k.value.lower() for k in PiiKind)
            raise ConfigError(
                f"{where}.pii: unknown PII kind {key!r}; known: default, {kinds}"
            ) from None
        per_kind[kind] = _treatment(value, f"{where}.pii.{key}")
    return RolePolicy(scopes, MappingProxyType(per_kind), default)


def policy_from_mapping(
    raw: Any, *, role_scopes: Mapping[str, Iterable[str]] | None = None
) -> Policy:
    """The policy the ``policy:`` section describes (``None``: the built-ins).

    ``role_scopes`` replaces the built-in role -> scopes mapping first (pass
    the auth config's, so one setting grants a role its scopes); the section's
    ``roles.<name>.scopes`` then win over both.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("policy must be a mapping")
    unknown = sorted(map(str, set(raw) - {"roles", "mfa_for_sensitive"}))
    if unknown:
        raise ConfigError(f"policy: unknown setting(s) {', '.join(unknown)}")
    mfa = raw.get("mfa_for_sensitive", True)
    if not isinstance(mfa, bool):
        raise ConfigError("policy.mfa_for_sensitive must be true or false")
    roles = dict(_builtin_roles())
    for name, scopes in (role_scopes or {}).items():
        base = roles.get(name, RolePolicy())
        roles[name] = RolePolicy(frozenset(scopes), base.pii, base.pii_default)
    configured = raw.get("roles") or {}
    if not isinstance(configured, Mapping):
        raise ConfigError("policy.roles must be a mapping of role name to settings")
    for name, section in configured.items():
        roles[str(name)] = _role(str(name), section, roles.get(str(name), RolePolicy()))
    return Policy(MappingProxyType(roles), mfa_for_sensitive=mfa)
