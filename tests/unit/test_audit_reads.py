"""No event, no PII: reads are recorded before the response leaves, or the PII is withheld."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import strawberry

from connectors.sdk import Person
from gateway.audit import AuditSinkError
from gateway.auth import Principal
from gateway.identity import CustomerIds
from gateway.policy import DEFAULT_POLICY
from schema.extensions.audit import AUDIT_UNAVAILABLE, AuditReads
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
    principal: Principal = field(
        default_factory=lambda: Principal(subject="agent-7", roles=frozenset({"support_agent"}))
    )
    policy: Any = DEFAULT_POLICY
    ids: CustomerIds = field(default_factory=lambda: CustomerIds(b"k" * 64))
    request_id: str = "req-1"
    request: Any = None
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
    pii_paths: list[Any] = field(default_factory=list)


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
