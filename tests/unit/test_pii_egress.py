"""The policy applied to values: PII that reaches a response outside a guarded field.

A schema here exposes a person's data through fields with no guard at all
(the mistake a new field could make); the backstop must still withhold what
the caller may not see in full, in data and in error messages, and record it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
import strawberry
from graphql import GraphQLError

from connectors.sdk import Person, SourceRef
from gateway.auth import Principal
from gateway.identity import CustomerIds
from gateway.policy import DEFAULT_POLICY
from schema.extensions.pii_egress import PiiEgress

PERSON = Person(
    source=SourceRef(system="salesforce", record_id="003A"),
    name="Jane Roe",
    email="Jane.Roe@Example.com",
    phone="(415) 555-0101",
)
HASH = hashlib.md5(b"jane.roe@example.com").hexdigest()


@strawberry.type
class Query:
    @strawberry.field
    def phone(self) -> str:
        return "+14155550101"  # the same number, in another format

    @strawberry.field
    def note(self) -> str:
        return "call 415.555.0101 or write to jane.roe@example.com, re: plan"

    @strawberry.field
    def subscriber(self) -> str:
        return HASH

    @strawberry.field
    def name(self) -> str:
        return "Jane Roe"

    @strawberry.field
    def plan(self) -> str:
        return "Scale 2026-05-01"

    @strawberry.field
    def broken(self) -> str | None:
        raise GraphQLError("no such customer jane.roe@example.com", extensions={"code": "X"})


SCHEMA = strawberry.Schema(query=Query, extensions=[PiiEgress])
QUERY = "{ phone note subscriber name plan broken }"


class _Loaders:
    def __init__(self, *answers: Any) -> None:
        self.answers = answers

    def results(self) -> Any:
        return iter(self.answers)


@dataclass
class _Context:
    principal: Principal | None
    loaders: _Loaders = field(default_factory=lambda: _Loaders([PERSON], None))
    policy: Any = DEFAULT_POLICY
    ids: CustomerIds = field(default_factory=lambda: CustomerIds(b"k" * 64))
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
    pii_paths: list[Any] = field(default_factory=list)


def _principal(role: str, mfa: bool = False) -> Principal:
    return Principal(subject="s", roles=frozenset({role}), mfa=mfa)


async def _run(context: _Context) -> Any:
    return await SCHEMA.execute(QUERY, context_value=context)


async def test_a_support_agent_gets_phones_masked_wherever_they_appear(caplog):
    context = _Context(_principal("support_agent"))
    with caplog.at_level(logging.WARNING, "c360.pii"):
        result = await _run(context)
    assert result.data["phone"] == "+1-***-***-0101"
    # Inside free text too; the email stays (a support agent sees emails in full).
    assert result.data["note"] == "call ***-***-0101 or write to jane.roe@example.com, re: plan"
    assert result.data["name"] == "Jane Roe"
    assert result.data["subscriber"] == HASH
    assert result.data["plan"] == "Scale 2026-05-01"  # dates are not phones
    assert "PII outside a guarded field" in caplog.text
    assert "0101" not in caplog.text  # paths and kinds only, never the values
    owner = context.ids.encode("r:salesforce:003A")
    assert context.pii_reads == {owner: {"Unguarded.phone": "masked", "Unguarded.note": "masked"}}
    assert (["phone"], "") in context.pii_paths


async def test_a_role_that_may_see_no_pii_gets_none_of_it():
    result = await _run(_Context(_principal("integration")))
    assert result.data["phone"] == ""
    assert result.data["note"] == "call *** or write to ***, re: plan"
    assert result.data["subscriber"] == ""  # derived from the email: it is the email
    assert result.data["name"] == ""
    assert result.errors[0].message == "no such customer ***"
    assert result.errors[0].extensions == {"code": "X"}


async def test_marketing_gets_each_kind_masked_by_its_kind():
    result = await _run(_Context(_principal("marketing")))
    assert result.data["name"] == "J***"
    assert result.data["note"] == "call ***-***-0101 or write to j***@example.com, re: plan"


@pytest.mark.parametrize("principal", [_principal("admin", mfa=True)])
async def test_nothing_is_touched_for_a_principal_who_sees_everything(principal, caplog):
    context = _Context(principal)
    with caplog.at_level(logging.WARNING, "c360.pii"):
        result = await _run(context)
    assert result.data["phone"] == "+14155550101"
    assert result.data["note"].startswith("call 415.555.0101")
    assert context.pii_reads == {}
    assert not [r for r in caplog.records if r.name == "c360.pii"]


async def test_values_of_records_the_request_never_read_are_not_its_business():
    context = _Context(_principal("integration"), loaders=_Loaders(None, []))
    result = await _run(context)
    assert result.data["phone"] == "+14155550101"
    assert context.pii_reads == {}
