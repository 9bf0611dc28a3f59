"""No event, no PII: reads are recorded before the response leaves, or the PII is withheld."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import strawberry
from graphql import GraphQLError

from connectors.sdk import Person, SourceRef
from gateway.audit import AuditSinkError
from gateway.auth import Principal
from gateway.identity import CustomerIds
from gateway.policy import DEFAULT_POLICY
from schema.extensions.audit import AUDIT_UNAVAILABLE, AuditReads
from schema.extensions.pii_egress import PiiEgress
from schema.permissions import Guard, pii_of


@strawberry.type
class Card:
    id: strawberry.ID
    title: str | None
    name: str | None = strawberry.field(directives=[pii_of(Person, "name")], extensions=[Guard()])
    phone: str | None = strawberry.field(directives=[pii_of(Person, "phone")], extensions=[Guard()])
    emails: list[str] = strawberry.field(directives=[pii_of(Person, "email")], extensions=[Guard()])

    def audit_owner(self, ids: CustomerIds) -> str:
        return str(self.id)


def _card(n: int) -> Card:
    return Card(
        id=strawberry.ID(f"c360_{n}"), title="CTO", name=f"Ann {n}", phone="+14155550101",
        emails=[f"ann{n}@example.com"],
    )  # fmt: skip


@strawberry.type
class Query:
    @strawberry.field
    def cards(self) -> list[Card]:
        return [_card(1), _card(2)]


SCHEMA = strawberry.Schema(query=Query, extensions=[AuditReads])
QUERY = "query Cards { cards { id title name phone emails } }"


class Trail:
    def __init__(self, fail: bool = False, on_failure: str = "deny") -> None:
        self.fail = fail
        self.on_failure = on_failure
        self.events: list[dict[str, Any]] = []

    async def record(self, **event: Any) -> Any:
        if self.fail:
            raise AuditSinkError("disk full")
        self.events.append(event)
        return event


@dataclass
class Context:
    audit: Trail
    principal: Principal | None = field(
        default_factory=lambda: Principal(subject="agent-7", roles=frozenset({"support_agent"}))
    )
    policy: Any = DEFAULT_POLICY
    ids: CustomerIds = field(default_factory=lambda: CustomerIds(b"k" * 64))
    request_id: str = "req-1"
    request: Any = None
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
    pii_paths: list[Any] = field(default_factory=list)
    loaders: Any = None


async def test_every_customer_shown_gets_one_event_with_how_each_field_was_shown():
    trail = Trail()
    result = await SCHEMA.execute(QUERY, context_value=Context(trail), operation_name="Cards")
    assert result.errors is None
    assert result.data["cards"][0]["phone"] == "+1-***-***-0101"
    assert sorted(e["customer_id"] for e in trail.events) == ["c360_1", "c360_2"]
    event = trail.events[0]
    assert event["fields"] == {"Card.name": "full", "Card.phone": "masked", "Card.emails": "full"}
    assert (event["subject"], event["operation"], event["request_id"]) == (
        "agent-7", "Cards", "req-1",
    )  # fmt: skip


async def test_a_trail_that_cannot_record_withholds_every_pii_value_and_says_so(caplog):
    with caplog.at_level(logging.ERROR, "c360.audit"):
        result = await SCHEMA.execute(QUERY, context_value=Context(Trail(fail=True)))
    cards = result.data["cards"]
    assert cards == [
        {"id": "c360_1", "title": "CTO", "name": None, "phone": None, "emails": []},
        {"id": "c360_2", "title": "CTO", "name": None, "phone": None, "emails": []},
    ]
    withheld = {tuple(e.path): e.extensions["code"] for e in result.errors}
    assert withheld == {
        ("cards", i, f): AUDIT_UNAVAILABLE for i in (0, 1) for f in ("name", "phone", "emails")
    }
    assert "PII withheld" in caplog.text


async def test_allow_serves_the_pii_and_logs_each_unrecorded_read_loudly(caplog):
    with caplog.at_level(logging.ERROR, "c360.audit"):
        result = await SCHEMA.execute(
            QUERY, context_value=Context(Trail(fail=True, on_failure="allow"))
        )
    assert result.errors is None
    assert result.data["cards"][1]["name"] == "Ann 2"
    assert caplog.text.count("WITHOUT an audit event") == 2


async def test_a_response_without_pii_records_nothing():
    trail = Trail(fail=True)
    result = await SCHEMA.execute("{ cards { id title } }", context_value=Context(trail))
    assert result.errors is None
    assert trail.events == []


async def test_hidden_values_are_not_reads():
    trail = Trail()
    integration = Principal(subject="bot", roles=frozenset({"integration"}))
    result = await SCHEMA.execute(QUERY, context_value=Context(trail, principal=integration))
    assert result.data["cards"][0]["name"] is None
    assert trail.events == []


# -- who, from where -------------------------------------------------------------------------


@dataclass
class _Client:
    host: str


@dataclass
class _Request:
    client: _Client | None


async def test_the_event_says_who_read_from_where():
    trail = Trail()
    principal = Principal(
        subject="agent-7", roles=frozenset({"support_agent"}), client_id="sidebar-widget"
    )
    context = Context(trail, principal=principal, request=_Request(_Client("203.0.113.7")))
    await SCHEMA.execute(QUERY, context_value=context, operation_name="Cards")
    assert [
        (e["subject"], e["client_id"], e["source_ip"], e["request_id"]) for e in trail.events
    ] == [("agent-7", "sidebar-widget", "203.0.113.7", "req-1")] * 2


async def test_a_read_without_a_principal_or_client_is_recorded_as_anonymous():
    # What the PII backstop notes even for a caller the policy gave nothing.
    trail = Trail()
    context = Context(trail, principal=None, request=_Request(None))
    context.pii_reads["c360_9"] = {"Unguarded.note": "masked"}
    await SCHEMA.execute("{ cards { id } }", context_value=context)
    assert trail.events == [
        {
            "subject": "anonymous", "client_id": None, "customer_id": "c360_9",
            "fields": {"Unguarded.note": "masked"}, "operation": None,
            "request_id": "req-1", "source_ip": None,
        }
    ]  # fmt: skip


@dataclass
class _Plain:
    """A context that is not the gateway's: no request id, no request, no principal."""

    audit: Trail
    ids: CustomerIds = field(default_factory=lambda: CustomerIds(b"k" * 64))
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
    pii_paths: list[Any] = field(default_factory=list)


async def test_a_context_with_only_the_trail_and_the_notes_works():
    trail = Trail()
    context = _Plain(trail)
    context.pii_reads["c360_9"] = {"Card.name": "full"}
    result = await SCHEMA.execute("{ cards { id } }", context_value=context)
    assert result.errors is None
    assert [(e["subject"], e["request_id"], e["source_ip"]) for e in trail.events] == [
        ("anonymous", None, None)
    ]


async def test_a_context_without_a_request_id_still_withholds(caplog):
    context = _Plain(Trail(fail=True))
    context.pii_reads["c360_9"] = {"Card.name": "full"}
    context.pii_paths.append((["cards", 0, "title"], None))
    with caplog.at_level(logging.ERROR, "c360.audit"):
        result = await SCHEMA.execute("{ cards { id title } }", context_value=context)
    assert result.data["cards"][0] == {"id": "c360_1", "title": None}
    assert "(request None)" in caplog.text


async def test_a_context_that_keeps_no_audit_notes_is_served():
    @dataclass
    class Bare:
        policy: Any = DEFAULT_POLICY

    result = await SCHEMA.execute("{ cards { id title } }", context_value=Bare())
    assert result.errors is None
    assert result.data["cards"][0] == {"id": "c360_1", "title": "CTO"}


# -- withholding -----------------------------------------------------------------------------


class Picky(Trail):
    """Fails each customer's event with its own message."""

    async def record(self, **event: Any) -> Any:
        raise AuditSinkError(f"disk full for {event['customer_id']}")


async def test_withheld_values_say_why_once_each_and_the_log_names_the_request(caplog):
    with caplog.at_level(logging.ERROR, "c360.audit"):
        result = await SCHEMA.execute(
            "{ cards { name } }", context_value=Context(Picky(), request_id="req-9")
        )
    assert result.data == {"cards": [{"name": None}, {"name": None}]}
    assert [(e.message, e.path, e.extensions) for e in result.errors] == [
        (
            "withheld: the audit trail cannot record this read of personal data",
            ["cards", i, "name"],
            {"code": AUDIT_UNAVAILABLE, "retryable": True},
        )
        for i in (0, 1)
    ]
    [record] = [r for r in caplog.records if r.name == "c360.audit"]
    assert record.getMessage() == (
        "PII withheld: the audit trail could not record 2 event(s) (request req-9): "
        "disk full for c360_1"
    )


async def test_allow_logs_each_failure_with_the_request(caplog):
    with caplog.at_level(logging.ERROR, "c360.audit"):
        await SCHEMA.execute(
            "{ cards { name } }",
            context_value=Context(Picky(on_failure="allow"), request_id="req-9"),
        )
    assert [r.getMessage() for r in caplog.records if r.name == "c360.audit"] == [
        "audit.on_failure=allow: PII served WITHOUT an audit event (request req-9): "
        f"disk full for c360_{i}"
        for i in (1, 2)
    ]


class Silent:
    """A trail that does not say what to do on failure: deny is the default."""

    async def record(self, **event: Any) -> Any:
        raise AuditSinkError("disk full")


async def test_a_trail_that_names_no_failure_mode_denies():
    result = await SCHEMA.execute("{ cards { name } }", context_value=Context(Silent()))
    assert result.data == {"cards": [{"name": None}, {"name": None}]}


@strawberry.type
class Profile:
    name: str | None = strawberry.field(directives=[pii_of(Person, "name")], extensions=[Guard()])

    @strawberry.field
    def title(self) -> str:
        raise ValueError("vendor sent no title")

    def audit_owner(self, ids: CustomerIds) -> str:
        return "c360_7"


@strawberry.type
class Mixed:
    @strawberry.field
    def cards(self) -> list[Card]:
        return [_card(1)]

    @strawberry.field
    def profile(self) -> Profile | None:
        return Profile(name="Ann 7")

    @strawberry.field
    def profiles(self) -> list[Profile] | None:
        return [Profile(name="Ann 7")]

    @strawberry.field
    def invoices(self) -> str | None:
        raise GraphQLError("billing is down", extensions={"code": "UPSTREAM_UNAVAILABLE"})


MIXED = strawberry.Schema(query=Mixed, extensions=[AuditReads])


async def test_other_errors_stay_and_values_already_gone_are_not_withheld_again():
    # profile's and profiles' name were read, then a sibling failed and nulled
    # their parent: nothing of them is left to withhold.
    query = "{ cards { name } profile { name title } profiles { name title } invoices }"
    result = await MIXED.execute(query, context_value=Context(Trail(fail=True)))
    assert result.data == {
        "cards": [{"name": None}], "profile": None, "profiles": None, "invoices": None,
    }  # fmt: skip
    codes = sorted((e.path, (e.extensions or {}).get("code")) for e in result.errors)
    assert codes == [
        (["cards", 0, "name"], AUDIT_UNAVAILABLE),
        (["invoices"], "UPSTREAM_UNAVAILABLE"),
        (["profile", "title"], None),
        (["profiles", 0, "title"], None),
    ]


@strawberry.type
class Loose:
    """PII that reaches the response outside a guarded field, after a guarded one."""

    @strawberry.field
    def note(self) -> str:
        return "call 415.555.0101 or write to jane.roe@example.com"

    @strawberry.field
    def name(self) -> str:
        return "Jane Roe"


BACKSTOP = strawberry.Schema(query=Loose, extensions=[AuditReads, PiiEgress])


async def test_values_the_backstop_caught_are_withheld_too_when_the_trail_fails():
    record = Person(
        source=SourceRef(system="salesforce", record_id="003A"),
        name="Jane Roe", email="jane.roe@example.com", phone="(415) 555-0101",
    )  # fmt: skip

    class Loaders:
        def results(self) -> Any:
            return iter([[record]])

    context = Context(
        Trail(fail=True), principal=Principal(subject="m", roles=frozenset({"marketing"}))
    )
    context.loaders = Loaders()
    result = await BACKSTOP.execute("{ note name }", context_value=context)
    # The note held two values (two notes, one path): one error for it.
    assert result.data == {"note": "", "name": ""}
    assert sorted(e.path[0] for e in result.errors) == ["name", "note"]
