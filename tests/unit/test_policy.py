"""Field access policy: decisions per role and principal, and its config section.

The maskers are in test_masks.py, the Guard that applies decisions to fields
in test_guard.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.auth import DEFAULT_ROLE_SCOPES, Principal
from gateway.config import ConfigError
from gateway.policy import (
    BUILTIN_ROLE_SCOPES,
    DEFAULT_POLICY,
    Access,
    Decision,
    PiiKind,
    PiiRule,
    Policy,
    policy_from_mapping,
)


@dataclass(frozen=True)
class Who:
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    mfa: bool = False


def who(*roles: str, scopes: tuple[str, ...] = (), mfa: bool = False) -> Who:
    return Who(frozenset(roles), frozenset(scopes), mfa)


EMAIL = PiiRule(PiiKind.EMAIL)
NAME = PiiRule(PiiKind.NAME)
PHONE_SENSITIVE = PiiRule(PiiKind.PHONE, sensitive=True)

# -- decisions -----------------------------------------------------------------------------

ALLOWED = Decision(Access.ALLOWED)
MASKED = Decision(Access.MASKED)
HIDDEN = Decision(Access.HIDDEN)


def forbidden(*missing: str) -> Decision:
    return Decision(Access.FORBIDDEN, missing)


@pytest.mark.parametrize(
    ("role", "email", "phone", "phone_mfa", "tickets", "billing", "marketing"),
    [
        ("support_agent", ALLOWED, MASKED, MASKED, ALLOWED,
         forbidden("billing:read"), ALLOWED),
        ("account_manager", ALLOWED, MASKED, MASKED, ALLOWED, ALLOWED,
         forbidden("marketing:read")),
        ("marketing", MASKED, MASKED, MASKED, forbidden("tickets:read"),
         forbidden("billing:read"), ALLOWED),
        ("billing_admin", ALLOWED, Decision(Access.MASKED, mfa_required=True), ALLOWED,
         forbidden("tickets:read"), ALLOWED, forbidden("marketing:read")),
        ("integration", HIDDEN, HIDDEN, HIDDEN, ALLOWED, ALLOWED, ALLOWED),
        ("admin", ALLOWED, Decision(Access.MASKED, mfa_required=True), ALLOWED,
         ALLOWED, ALLOWED, ALLOWED),
    ],
)  # fmt: skip
def test_builtin_roles(role, email, phone, phone_mfa, tickets, billing, marketing):
    policy = DEFAULT_POLICY
    assert policy.decide(who(role), pii=EMAIL) == email
    assert policy.decide(who(role), pii=PHONE_SENSITIVE) == phone
    assert policy.decide(who(role, mfa=True), pii=PHONE_SENSITIVE) == phone_mfa
    assert policy.decide(who(role), ["tickets:read"]) == tickets
    assert policy.decide(who(role), ["billing:read"]) == billing
    assert policy.decide(who(role), ["marketing:read"]) == marketing


def test_no_principal_gets_no_access():
    assert DEFAULT_POLICY.decide(None, ["crm:read"]) == forbidden("crm:read")
    assert DEFAULT_POLICY.decide(None, pii=EMAIL) == HIDDEN
    assert DEFAULT_POLICY.decide(None) == ALLOWED  # an unguarded field


def test_all_missing_scopes_are_named():
    assert DEFAULT_POLICY.decide(
        who("marketing"), ["tickets:read", "billing:read", "crm:read"]
    ) == (forbidden("billing:read", "tickets:read"))


def test_scopes_only_principal():
    # A client-credentials token: scopes, no role the policy knows.
    with_pii = who("robot", scopes=("crm:read", "pii:read"))
    assert DEFAULT_POLICY.decide(with_pii, ["crm:read"], EMAIL) == ALLOWED
    assert DEFAULT_POLICY.decide(who("robot", scopes=("crm:read",)), pii=EMAIL) == HIDDEN


def test_most_permissive_role_wins():
    assert DEFAULT_POLICY.decide(who("integration", "marketing"), pii=EMAIL) == MASKED
    assert DEFAULT_POLICY.decide(who("integration", "support_agent"), pii=EMAIL) == ALLOWED
    assert DEFAULT_POLICY.decide(who("marketing", "support_agent"), pii=EMAIL) == ALLOWED


def test_marketing_sees_pii_masked_even_with_pii_read():
    # The built-in treatment, not the scopes, keeps marketing's view masked.
    policy = policy_from_mapping(None, role_scopes={"marketing": ["crm:read", "pii:read"]})
    assert policy.decide(who("marketing"), pii=EMAIL) == MASKED
    assert policy.decide(who("marketing"), pii=NAME) == MASKED


def test_full_needs_pii_read():
    policy = policy_from_mapping({"roles": {"viewer": {"scopes": ["crm:read"], "pii": "full"}}})
    assert policy.decide(who("viewer"), pii=EMAIL) == MASKED


def test_mfa_requirement_can_be_turned_off():
    policy = policy_from_mapping({"mfa_for_sensitive": False})
    assert policy.decide(who("billing_admin"), pii=PHONE_SENSITIVE) == ALLOWED
    assert policy.decide(who("support_agent"), pii=PHONE_SENSITIVE) == MASKED


def test_auth_principal_fits():
    principal = Principal(subject="s", roles=frozenset({"marketing"}), mfa=True)
    assert DEFAULT_POLICY.decide(principal, ["marketing:read"], EMAIL) == MASKED


@dataclass(frozen=True)
class SetPrincipal:
    # Another auth backend's principal: any set will do, not only frozensets.
    roles: frozenset[str]
    scopes: set[str]
    mfa: bool = False

    __hash__ = None  # type: ignore[assignment]


def test_a_principal_with_plain_sets_is_decided_too():
    for _ in range(2):
        principal = SetPrincipal(frozenset({"robot"}), {"crm:read", "pii:read"})
        assert DEFAULT_POLICY.decide(principal, frozenset({"crm:read"}), EMAIL) == ALLOWED
        principal = SetPrincipal(frozenset({"marketing"}), set())
        assert DEFAULT_POLICY.decide(principal, frozenset({"billing:read"})) == (
            forbidden("billing:read")
        )


def test_remembered_decisions_never_cross_principals():
    # Principal objects are what the gateway passes, and the ones the policy remembers.
    def principal(role: str, *, mfa: bool = False, scopes: tuple[str, ...] = ()) -> Principal:
        return Principal(subject="s", roles=frozenset({role}), scopes=frozenset(scopes), mfa=mfa)

    policy = policy_from_mapping({})
    billing = frozenset({"billing:read"})
    for _ in range(2):
        assert policy.decide(principal("billing_admin"), frozenset(), PHONE_SENSITIVE) == (
            Decision(Access.MASKED, mfa_required=True)
        )
        assert policy.decide(
            principal("billing_admin", mfa=True), frozenset(), PHONE_SENSITIVE
        ) == (ALLOWED)
        assert policy.decide(principal("support_agent"), billing) == forbidden("billing:read")
        assert policy.decide(principal("support_agent", scopes=("billing:read",)), billing) == (
            ALLOWED
        )
        assert policy.decide(principal("marketing"), frozenset(), EMAIL) == MASKED
        assert policy.decide(None, frozenset(), EMAIL) == HIDDEN


# -- config --------------------------------------------------------------------------------


def test_empty_config_is_the_builtins():
    assert policy_from_mapping(None) == Policy()
    assert policy_from_mapping({}) == Policy()
    assert {n: r.scopes for n, r in Policy().roles.items()} == dict(BUILTIN_ROLE_SCOPES)


def test_builtin_roles_match_the_auth_defaults():
    # Auth maps token roles to scopes with its own copy; the two must not drift.
    assert dict(BUILTIN_ROLE_SCOPES) == dict(DEFAULT_ROLE_SCOPES)


def test_config_overrides_only_what_it_names():
    policy = policy_from_mapping(
        {
            "roles": {
                "marketing": {"pii": {"email": "hidden"}},
                "support_agent": {"scopes": ["crm:read", "pii:read"]},
                "auditor": {"scopes": ["audit:read"], "pii": "masked"},
            }
        }
    )
    assert policy.decide(who("marketing"), pii=EMAIL) == HIDDEN
    assert policy.decide(who("marketing"), pii=PiiRule(PiiKind.NAME)) == MASKED
    assert policy.decide(who("marketing"), ["marketing:read"]) == ALLOWED
    assert policy.decide(who("support_agent"), ["tickets:read"]) == forbidden("tickets:read")
    assert policy.decide(who("support_agent"), pii=EMAIL) == ALLOWED
    assert policy.decide(who("auditor"), ["crm:read"]) == forbidden("crm:read")
    assert policy.decide(who("auditor"), ["audit:read"]) == ALLOWED
    assert policy.decide(who("auditor"), pii=EMAIL) == MASKED


@pytest.mark.parametrize("default_key", ["default", "DEFAULT"])
def test_a_pii_default_applies_to_every_kind_the_role_does_not_name(default_key):
    # The documented form: a role that may read PII in full sees names masked
    # and emails in full, whichever order the keys come in.
    for pii in (
        {default_key: "masked", "email": "full"},
        {"email": "full", default_key: "masked"},
    ):
        policy = policy_from_mapping({"roles": {"support_agent": {"pii": pii}}})
        assert policy.decide(who("support_agent"), pii=NAME) == MASKED, pii
        assert policy.decide(who("support_agent"), pii=PHONE_SENSITIVE) == MASKED, pii
        assert policy.decide(who("support_agent"), pii=EMAIL) == ALLOWED, pii


def test_the_docstring_example_for_marketing():
    policy = policy_from_mapping(
        {"roles": {"marketing": {"pii": {"default": "masked", "email": "hidden"}}}}
    )
    assert policy.decide(who("marketing"), pii=NAME) == MASKED
    assert policy.decide(who("marketing"), pii=EMAIL) == HIDDEN


def test_a_role_given_only_scopes_keeps_its_pii_treatment():
    # integration sees no PII: granting it pii:read does not change that.
    policy = policy_from_mapping(
        {"roles": {"integration": {"scopes": ["customers:read", "crm:read", "pii:read"]}}}
    )
    assert policy.decide(who("integration"), pii=EMAIL) == HIDDEN
    assert policy.decide(who("integration"), ["crm:read"]) == ALLOWED


def test_a_role_with_no_scopes_listed_has_none():
    policy = policy_from_mapping({"roles": {"support_agent": {"scopes": None}}})
    assert policy.decide(who("support_agent"), ["crm:read"]) == forbidden("crm:read")
    # Its PII treatment stays (full), but without pii:read that means masked.
    assert policy.decide(who("support_agent"), pii=EMAIL) == MASKED


def test_a_role_listed_without_settings_is_the_built_in():
    policy = policy_from_mapping({"roles": {"marketing": None, "robot": None}})
    assert policy.decide(who("marketing"), pii=EMAIL) == MASKED
    assert policy.decide(who("marketing"), ["marketing:read"]) == ALLOWED
    assert policy.decide(who("robot"), ["crm:read"]) == forbidden("crm:read")
    assert policy.decide(who("robot"), pii=EMAIL) == HIDDEN


def test_a_new_role_from_the_auth_config_gets_its_scopes():
    policy = policy_from_mapping(None, role_scopes={"robot": ["crm:read", "pii:read"]})
    assert policy.decide(who("robot"), ["crm:read"]) == ALLOWED
    assert policy.decide(who("robot"), pii=EMAIL) == ALLOWED  # no treatment: pii:read decides
    assert policy.decide(who("robot"), ["billing:read"]) == forbidden("billing:read")


def test_role_scopes_from_auth_config_come_first():
    policy = policy_from_mapping(
        {"roles": {"admin": {"scopes": ["crm:read"]}}},
        role_scopes={"support_agent": ["crm:read"], "admin": ["audit:read"]},
    )
    assert policy.decide(who("support_agent"), ["tickets:read"]) == forbidden("tickets:read")
    assert policy.decide(who("support_agent"), pii=EMAIL) == MASKED  # full, but no pii:read
    assert policy.decide(who("admin"), ["audit:read"]) == forbidden("audit:read")


SCOPE_NAMES = (
    "audit:read, billing:read, crm:read, customers:read, marketing:read, pii:read, "
    "pii:sensitive, tickets:read"
)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "policy must be a mapping"),
        ({"role": {}, "mfa": 1}, "policy: unknown setting(s) mfa, role"),
        ({"mfa_for_sensitive": "yes"}, "policy.mfa_for_sensitive must be true or false"),
        ({"roles": ["admin"]}, "policy.roles must be a mapping of role name to settings"),
        ({"roles": {"admin": "full"}}, "policy.roles.admin must be a mapping with 'scopes' and/or 'pii'"),
        ({"roles": {"admin": {"scope": [], "pi": 1}}}, "policy.roles.admin: unknown setting(s) pi, scope"),
        ({"roles": {"x": {"scopes": "crm:read"}}}, "policy.roles.x.scopes must be a list of scope names"),
        ({"roles": {"x": {"scopes": ["crm:read", 1]}}}, "policy.roles.x.scopes must be a list of scope names"),
        (
            {"roles": {"x": {"scopes": ["crm:write", "crm:read", "pii:write"]}}},
            f"policy.roles.x.scopes: unknown scope(s) crm:write, pii:write; known: {SCOPE_NAMES}",
        ),
        ({"roles": {"x": {"pii": "blurred"}}}, "policy.roles.x.pii: 'blurred' is not one of full, masked, hidden"),
        (
            {"roles": {"x": {"pii": {"ssn": "hidden"}}}},
            "policy.roles.x.pii: unknown PII kind 'ssn'; known: default, email, phone, name, id, other",
        ),
        ({"roles": {"x": {"pii": {"email": None}}}}, "policy.roles.x.pii.email: None is not one of full, masked, hidden"),
        (
            {"roles": {"x": {"pii": {"default": "blurred"}}}},
            "policy.roles.x.pii.default: 'blurred' is not one of full, masked, hidden",
        ),
    ],
)  # fmt: skip
def test_config_errors(raw, message):
    with pytest.raises(ConfigError) as caught:
        policy_from_mapping(raw)
    assert str(caught.value) == message
