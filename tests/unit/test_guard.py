"""The Guard on a field: what a caller gets back, and what the audit trail is told.

Every schema here is built inside its test: a guard learns its field when the
schema is built, and that is part of what is under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import strawberry

from connectors.sdk import Person as PersonRecord
from gateway.auth import Principal
from gateway.policy import Decision, PiiKind, PiiRule, Policy, policy_from_mapping
from schema import build_schema
from schema.directives import Auth, Pii, PiiFromRecord
from schema.permissions import FORBIDDEN, Guard, forbidden, pii_of


def who(*roles: str, mfa: bool = False) -> Principal:
    return Principal(subject="s", roles=frozenset(roles), mfa=mfa)


class Ids:
    """Stands in for the gateway's customer ids: the owner an object names."""

    def encode(self, anchor: str) -> str:
        return f"c360_{anchor}"


@dataclass
class Ctx:
    principal: Any
    policy: Any = None
    ids: Ids = field(default_factory=Ids)
    calls: list[str] = field(default_factory=list)
    memo: dict[Any, Any] = field(default_factory=dict)
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
    pii_paths: list[Any] = field(default_factory=list)
    people: Any = None

    def __post_init__(self) -> None:
        self.people = PEOPLE if self.people is None else self.people


def _conflict_rule(value: Any) -> PiiRule | None:
    return value.rule


def build() -> strawberry.Schema:
    """A person with each shape of guarded field, and data-quality conflicts."""
    # Module names, so that strawberry resolves the annotations that name them.
    global Conflict, Person, Orphan

    @strawberry.type
    class Conflict:
        # A plain attribute, as the gateway's ConflictValue.value is: no resolver.
        value: str = strawberry.field(
            directives=[PiiFromRecord()], extensions=[Guard(rule_of=_conflict_rule)]
        )
        rule: strawberry.Private[PiiRule | None]
        owner: strawberry.Private[str]

        @property
        def text(self) -> str:
            return self.value

        @strawberry.field(directives=[PiiFromRecord()], extensions=[Guard(rule_of=_conflict_rule)])
        async def later(self, info: strawberry.Info) -> str | None:
            info.context.calls.append("later")
            return self.text

        def audit_owner(self, ids: Ids) -> str:
            return ids.encode(self.owner)

    @strawberry.type
    class Person:
        key: strawberry.Private[str]
        data: strawberry.Private[dict[str, Any]]

        def _get(self, info: strawberry.Info, name: str) -> Any:
            info.context.calls.append(name)
            return self.data.get(name)

        @strawberry.field(directives=[pii_of(PersonRecord, "email")], extensions=[Guard()])
        def email(self, info: strawberry.Info) -> str | None:
            return self._get(info, "email")

        @strawberry.field(directives=[pii_of(PersonRecord, "phone")], extensions=[Guard()])
        def phones(self, info: strawberry.Info) -> list[str]:
            return self._get(info, "phones")

        @strawberry.field(directives=[pii_of(PersonRecord, "name")], extensions=[Guard()])
        def name(self, info: strawberry.Info) -> str:
            return self._get(info, "name")

        @strawberry.field(directives=[Pii(kind=PiiKind.ID)], extensions=[Guard()])
        def account(self, info: strawberry.Info) -> strawberry.ID:
            return self._get(info, "account")

        @strawberry.field(directives=[pii_of(PersonRecord, "name")], extensions=[Guard()])
        async def greeting(self, info: strawberry.Info, prefix: str) -> str | None:
            name = self._get(info, "name")
            return f"{prefix} {name}" if name else name

        @strawberry.field(directives=[pii_of(PersonRecord, "name")], extensions=[Guard()])
        def initials(self, info: strawberry.Info, upper: bool = False) -> str | None:
            name = self._get(info, "name") or ""
            text = "".join(part[:1] for part in name.split())
            return text.upper() if upper else text.lower()

        @strawberry.field(directives=[Auth(requires=["billing:read"])], extensions=[Guard()])
        async def invoices(self, info: strawberry.Info) -> list[str] | None:
            return self._get(info, "invoices")

        @strawberry.field(
            directives=[Auth(requires=["tickets:read"]), pii_of(PersonRecord, "email")],
            extensions=[Guard()],
        )
        def ticket_email(self, info: strawberry.Info) -> str | None:
            return self._get(info, "email")

        @strawberry.field
        def conflicts(self) -> list[Conflict]:
            return [
                Conflict(value=text, rule=rule, owner=self.key)
                for rule, text in self.data.get("conflicts", [])
            ]

        def audit_owner(self, ids: Ids) -> str:
            return ids.encode(self.key)

    @strawberry.type
    class Orphan:
        """A type that forgot to say whose data it holds."""

        @strawberry.field(directives=[pii_of(PersonRecord, "email")], extensions=[Guard()])
        def email(self) -> str | None:
            return "orphan@example.com"

    @strawberry.type
    class Query:
        @strawberry.field
        def people(self, info: strawberry.Info) -> list[Person]:
            return [Person(key=key, data=dict(data)) for key, data in info.context.people]

        @strawberry.field
        def orphan(self) -> Orphan:
            return Orphan()

    return strawberry.Schema(query=Query)


EMAIL = PiiRule(PiiKind.EMAIL)
PHONE = PiiRule(PiiKind.PHONE, sensitive=True)
JANE = {
    "email": "jane@example.com",
    "phones": ["+14155550123", "+819012345678"],
    "name": "Jane Roe",
    "account": "4000056655665556",
    "invoices": ["in_1"],
    "conflicts": [(EMAIL, "jane@work.example"), (PHONE, "+14155550199"), (None, "salesforce")],
}
EMPTY = {"email": "", "phones": [], "name": "", "account": "", "invoices": [], "conflicts": []}
NULL = {"email": None, "phones": [], "name": "", "account": "", "invoices": None}
PEOPLE = (("p1", JANE), ("p2", EMPTY), ("p3", NULL))
ALL = """{ people { email phones name account greeting(prefix: "Dear") initials(upper: true)
           invoices ticketEmail conflicts { value later } } }"""


async def run(ctx: Ctx, query: str = ALL) -> Any:
    return await build().execute(query, context_value=ctx)


# -- allowed ---------------------------------------------------------------------------------


async def test_allowed_values_pass_through_and_are_audited_as_full():
    ctx = Ctx(who("admin", mfa=True))
    result = await run(ctx)
    assert result.errors is None
    assert result.data["people"][0] == {
        "email": "jane@example.com",
        "phones": ["+14155550123", "+819012345678"],
        "name": "Jane Roe",
        "account": "4000056655665556",
        "greeting": "Dear Jane Roe",
        "initials": "JR",
        "invoices": ["in_1"],
        "ticketEmail": "jane@example.com",
        "conflicts": [
            {"value": "jane@work.example", "later": "jane@work.example"},
            {"value": "+14155550199", "later": "+14155550199"},
            {"value": "salesforce", "later": "salesforce"},
        ],
    }
    full = {
        f"Person.{f}": "full"
        for f in ("email", "phones", "name", "account", "greeting", "initials", "ticketEmail")
    }
    # Only what held a value is a read: p2's empty strings and lists, p3's nulls
    # and the conflict that is not personal data are not.
    assert ctx.pii_reads == {
        "c360_p1": {**full, "Conflict.value": "full", "Conflict.later": "full"},
    }
    paths = {tuple(path): empty for path, empty in ctx.pii_paths}
    assert paths[("people", 0, "email")] is None
    assert paths[("people", 0, "phones")] == ()
    assert paths[("people", 0, "name")] == ""
    assert paths[("people", 0, "account")] == ""
    assert paths[("people", 0, "conflicts", 1, "value")] == ""
    assert ("people", 0, "conflicts", 2, "value") not in paths
    assert not [p for p in paths if p[1] != 0]


# -- masked ----------------------------------------------------------------------------------


async def test_masked_runs_the_resolver_masks_every_string_and_is_audited_as_masked():
    ctx = Ctx(who("marketing"))
    result = await run(ctx, '{ people { email phones name account greeting(prefix: "Hi") } }')
    assert result.errors is None
    assert result.data["people"][0] == {
        "email": "j***@example.com",
        "phones": ["+1-***-***-0123", "+81-***-***-5678"],
        "name": "J***",
        "account": "***5556",
        "greeting": "H***",
    }
    assert result.data["people"][1] == {
        "email": "", "phones": [], "name": "", "account": "", "greeting": "",
    }  # fmt: skip
    assert ctx.pii_reads == {
        "c360_p1": {
            "Person.email": "masked", "Person.phones": "masked", "Person.name": "masked",
            "Person.account": "masked", "Person.greeting": "masked",
        }
    }  # fmt: skip


async def test_the_rule_of_a_record_dependent_field_is_the_records():
    # A support agent sees emails in full and phones masked (no pii:sensitive),
    # in a conflict's value as anywhere else; a value that is not PII is shown.
    ctx = Ctx(who("support_agent"))
    result = await run(ctx, "{ people { conflicts { value later } } }")
    assert result.errors is None
    assert result.data["people"][0]["conflicts"] == [
        {"value": "jane@work.example", "later": "jane@work.example"},
        {"value": "+1-***-***-0199", "later": "+1-***-***-0199"},
        {"value": "salesforce", "later": "salesforce"},
    ]
    # One read in full makes the field a full read of that customer.
    assert ctx.pii_reads == {"c360_p1": {"Conflict.value": "full", "Conflict.later": "full"}}


async def test_a_field_read_masked_then_in_full_is_a_full_read():
    people = [("p1", {"conflicts": [(PHONE, "+14155550199"), (EMAIL, "jane@work.example")]})]
    ctx = Ctx(who("support_agent"), people=people)
    result = await run(ctx, "{ people { conflicts { value } } }")
    assert result.errors is None
    assert ctx.pii_reads == {"c360_p1": {"Conflict.value": "full"}}


async def test_masking_a_value_that_is_not_a_string_shows_nothing():
    # A vendor that sends numbers where strings belong.
    people = [("p1", {"phones": [4155550123], "name": 42, "email": 7})]
    result = await run(Ctx(who("marketing"), people=people), "{ people { phones name email } }")
    assert result.errors is None
    assert result.data["people"] == [{"phones": [""], "name": "", "email": None}]


# -- hidden and forbidden --------------------------------------------------------------------


async def test_hidden_never_runs_the_resolver_and_is_no_read():
    ctx = Ctx(who("integration"))
    result = await run(ctx, '{ people { email phones name account greeting(prefix: "Hi") } }')
    assert result.errors is None
    assert (
        result.data["people"]
        == [{"email": None, "phones": [], "name": "", "account": "", "greeting": None}] * 3
    )
    assert ctx.calls == []
    assert ctx.pii_reads == {}
    assert ctx.pii_paths == []


async def test_a_hidden_record_dependent_value_is_empty_without_running_the_resolver():
    ctx = Ctx(who("integration"))
    result = await run(ctx, "{ people { conflicts { value later } } }")
    assert result.data["people"][0]["conflicts"] == [
        {"value": "", "later": None},
        {"value": "", "later": None},
        {"value": "salesforce", "later": "salesforce"},
    ]
    assert ctx.calls == ["later"]  # the one that is not PII
    assert ctx.pii_reads == {}


async def test_forbidden_never_runs_the_resolver_and_names_the_missing_scopes():
    ctx = Ctx(who("marketing"))
    result = await run(ctx, "{ people { invoices ticketEmail } }")
    assert result.data["people"] == [{"invoices": None, "ticketEmail": None}] * 3
    assert ctx.calls == []
    errors = sorted(result.errors, key=lambda e: (e.path[1], e.path[2]))
    assert [(e.path, e.message, e.extensions) for e in errors[:2]] == [
        (["people", 0, "invoices"], "not allowed: needs scope billing:read",
         {"code": FORBIDDEN, "missing": ["billing:read"]}),
        (["people", 0, "ticketEmail"], "not allowed: needs scope tickets:read",
         {"code": FORBIDDEN, "missing": ["tickets:read"]}),
    ]  # fmt: skip
    assert len(errors) == 6
    assert ctx.pii_reads == {}


def test_forbidden_names_every_missing_scope_or_says_what_it_is_told():
    error = forbidden(("billing:read", "tickets:read"))
    assert error.message == "not allowed: needs scope billing:read, tickets:read"
    assert error.extensions == {"code": "FORBIDDEN", "missing": ["billing:read", "tickets:read"]}
    error = forbidden((), "searching by email needs emails shown in full")
    assert error.message == "searching by email needs emails shown in full"
    assert error.extensions == {"code": "FORBIDDEN", "missing": []}


async def test_a_context_without_a_principal_or_policy_gets_no_access():
    @dataclass
    class Bare:
        calls: list[str] = field(default_factory=list)
        people: Any = PEOPLE

    ctx = Bare()
    result = await build().execute("{ people { email invoices } }", context_value=ctx)
    assert result.data["people"][0] == {"email": None, "invoices": None}
    assert {e.extensions["code"] for e in result.errors} == {FORBIDDEN}
    assert ctx.calls == []


# -- audit notes -----------------------------------------------------------------------------


async def test_a_type_that_names_no_owner_is_still_recorded():
    ctx = Ctx(who("support_agent"))
    result = await run(ctx, "{ orphan { email } }")
    assert result.data == {"orphan": {"email": "orphan@example.com"}}
    assert ctx.pii_reads == {"unattributed": {"Orphan.email": "full"}}


async def test_a_context_that_keeps_no_audit_notes_still_gets_the_values():
    @dataclass
    class NoNotes:
        principal: Any
        people: Any = PEOPLE
        calls: list[str] = field(default_factory=list)

    result = await build().execute(
        "{ people { email conflicts { value } } }", context_value=NoNotes(who("support_agent"))
    )
    assert result.errors is None
    assert result.data["people"][0]["email"] == "jane@example.com"
    assert result.data["people"][0]["conflicts"][1] == {"value": "+1-***-***-0199"}


async def test_a_context_that_keeps_no_paths_still_gets_its_reads():
    @dataclass
    class ReadsOnly:
        principal: Any
        ids: Ids = field(default_factory=Ids)
        calls: list[str] = field(default_factory=list)
        pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
        people: Any = PEOPLE

    ctx = ReadsOnly(who("support_agent"))
    result = await build().execute("{ people { email } }", context_value=ctx)
    assert result.errors is None
    assert ctx.pii_reads == {"c360_p1": {"Person.email": "full"}}


# -- decisions -------------------------------------------------------------------------------


class CountingPolicy(Policy):
    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "decided", [])

    def decide(self, principal: Any, requires: Any = (), pii: PiiRule | None = None) -> Decision:
        self.decided.append((tuple(requires), pii))  # type: ignore[attr-defined]
        return super().decide(principal, requires, pii)


async def test_one_decision_per_field_and_rule_per_request():
    policy = CountingPolicy()
    ctx = Ctx(who("account_manager"), policy=policy)
    result = await run(ctx, "{ people { email phones invoices conflicts { value } } }")
    assert result.errors is None
    # Three fields for three people, and one per rule among the conflicts.
    assert sorted(policy.decided, key=str) == sorted(
        [((), PiiRule(PiiKind.EMAIL)), ((), PHONE), (("billing:read",), None),
         ((), EMAIL), ((), PHONE), ((), None)],
        key=str,
    )  # fmt: skip
    assert len(ctx.calls) == 3 * 3


async def test_the_policy_in_the_context_decides():
    strict = policy_from_mapping({"roles": {"support_agent": {"pii": "masked"}}})
    result = await run(Ctx(who("support_agent"), policy=strict), "{ people { email } }")
    assert result.data["people"][0] == {"email": "j***@example.com"}


def test_sync_resolvers_stay_sync():
    ctx = Ctx(who("marketing"))
    result = build().execute_sync("{ people { email phones initials } }", context_value=ctx)
    assert result.errors is None
    assert result.data["people"][0] == {
        "email": "j***@example.com",
        "phones": ["+1-***-***-0123", "+81-***-***-5678"],
        "initials": "j***",
    }
    assert ctx.pii_reads["c360_p1"]["Person.initials"] == "masked"


# -- the schema ------------------------------------------------------------------------------


def test_pii_of_reads_the_rule_off_the_canonical_model():
    assert pii_of(PersonRecord, "phone") == Pii(kind=PiiKind.PHONE, sensitive=True)
    assert pii_of(PersonRecord, "email") == Pii(kind=PiiKind.EMAIL, sensitive=False)
    with pytest.raises(TypeError) as caught:
        pii_of(PersonRecord, "source")
    assert str(caught.value) == "Person.source is not classified as PII"


def _refuse(field_type: Any, directives: list[Any], guard: Guard) -> str:
    def item() -> None:
        return None

    item.__annotations__["return"] = field_type
    query = strawberry.type(
        type(
            "Query", (), {"item": strawberry.field(item, directives=directives, extensions=[guard])}
        )
    )
    with pytest.raises(TypeError) as caught:
        strawberry.Schema(query=query)
    return str(caught.value).removeprefix("Query fields cannot be resolved. ")


def test_guard_refuses_fields_it_cannot_enforce():
    auth = Auth(requires=["crm:read"])
    assert _refuse(list[str], [auth], Guard()) == "@auth field item must be nullable"
    assert _refuse(str, [auth], Guard()) == "@auth field item must be nullable"
    assert _refuse(list[str] | None, [], Guard()) == "Guard on item without @auth or @pii"
    assert _refuse(int, [Pii(kind=PiiKind.ID)], Guard()) == (
        "@pii field item: no hidden value for <class 'int'>"
    )
    assert _refuse(str, [PiiFromRecord()], Guard()) == (
        "item: @piiFromRecord and Guard(rule_of=…) go together"
    )
    assert _refuse(str, [], Guard(rule_of=_conflict_rule)) == (
        "item: @piiFromRecord and Guard(rule_of=…) go together"
    )


def _fields(schema: strawberry.Schema) -> list[Any]:
    out = []
    for type_ in schema.schema_converter.type_map.values():
        definition = type_.definition
        for f in getattr(definition, "fields", ()):
            out.append((f"{definition.name}.{f.name}", f))
    return out


def test_every_directive_is_enforced_and_printed():
    schema = build_schema()
    guarded = set()
    for name, f in _fields(schema):
        directives = [d for d in f.directives if isinstance(d, Auth | Pii | PiiFromRecord)]
        guards = [e for e in f.extensions if isinstance(e, Guard)]
        assert len(guards) == (1 if directives else 0), name
        if directives:
            guarded.add(name)
    assert {
        "Customer.email",
        "Customer.tickets",
        "Contact.phone",
        "ConflictValue.value",
        "Source.id",
        "Query.customer",
        "Query.customers",
    } <= guarded
    sdl = schema.as_str()
    assert 'invoices: [Invoice!] @auth(requires: ["billing:read"])' in sdl
    assert "email: String @pii(kind: EMAIL, sensitive: false)" in sdl
    assert "phones: [String!]! @pii(kind: PHONE, sensitive: true)" in sdl
    assert "directive @auth(requires: [String!]!) on FIELD_DEFINITION" in sdl
