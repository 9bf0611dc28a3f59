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
from gateway.policy import DEFAULT_POLICY, policy_from_mapping
from schema.extensions.masking import MaskUnexpectedErrors
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


# -- where values hide -----------------------------------------------------------------------


@strawberry.type
class Card:
    label: str


LOCAL = Person(source=SourceRef(system="zendesk", record_id="42"), phone="555 0199")


@strawberry.type
class Wide:
    @strawberry.field
    def tags(self) -> list[str]:
        return ["vip", "Jane.Roe@example.com"]

    @strawberry.field
    def cards(self) -> list[Card]:
        return [Card(label="call (415) 555-0101"), Card(label="renews 2026-05-01")]

    @strawberry.field
    def shouting(self) -> str:
        return "JANE.ROE@EXAMPLE.COM"

    @strawberry.field
    def local(self) -> str:
        return "555-0199"

    @strawberry.field
    def many(self) -> list[str]:
        return ["+1 415 555 0101"] * 25

    @strawberry.field
    def lookup(self) -> str | None:
        raise GraphQLError(
            "no match",
            extensions={"code": "Y", "match-key": "jane.roe@example.com", "n": 1},
        )

    @strawberry.field
    def clean(self) -> str | None:
        raise GraphQLError("no match", extensions={"code": "Z"})


WIDE = strawberry.Schema(query=Wide, extensions=[PiiEgress])


async def _wide(context: Any, query: str) -> Any:
    return await WIDE.execute(query, context_value=context)


async def test_lists_and_the_objects_in_them_are_searched_too():
    context = _Context(_principal("integration"))
    result = await _wide(context, "{ tags cards { label } }")
    assert result.data == {
        "tags": ["vip", ""],
        "cards": [{"label": "call (***"}, {"label": "renews 2026-05-01"}],
    }
    owner = context.ids.encode("r:salesforce:003A")
    assert context.pii_reads == {owner: {"Unguarded.tags": "masked", "Unguarded.label": "masked"}}
    assert context.pii_paths == [(["tags", 1], ""), (["cards", 0, "label"], "")]


async def test_an_email_in_capitals_is_the_same_email():
    result = await _wide(_Context(_principal("integration")), "{ shouting }")
    assert result.data == {"shouting": ""}
    result = await _wide(_Context(_principal("marketing")), "{ shouting }")
    assert result.data == {"shouting": "J***@EXAMPLE.COM"}


async def test_another_number_that_ends_the_same_is_not_this_persons():
    @strawberry.type
    class Switchboard:
        @strawberry.field
        def main(self) -> str:
            return "+1 212 555 0101"  # shares its last seven digits with Jane's

    schema = strawberry.Schema(query=Switchboard, extensions=[PiiEgress])
    context = _Context(_principal("integration"))
    result = await schema.execute("{ main }", context_value=context)
    assert result.data == {"main": "+1 212 555 0101"}
    assert context.pii_reads == {}


async def test_a_seven_digit_local_number_is_a_phone_in_any_format():
    context = _Context(_principal("support_agent"), loaders=_Loaders(LOCAL))
    result = await _wide(context, "{ local }")
    assert result.data == {"local": "***-***-0199"}
    assert context.pii_reads == {context.ids.encode("r:zendesk:42"): {"Unguarded.local": "masked"}}


async def test_pii_in_an_errors_extensions_is_withheld_and_the_error_keeps_its_place():
    context = _Context(_principal("integration"))
    result = await _wide(context, "{ lookup clean }")
    errors = {tuple(e.path): e for e in result.errors}
    lookup = errors[("lookup",)]
    assert lookup.message == "no match"
    assert lookup.extensions == {"code": "Y", "match-key": "", "n": 1}
    assert [(loc.line, loc.column) for loc in lookup.locations] == [(1, 3)]
    assert errors[("clean",)].extensions == {"code": "Z"}
    owner = context.ids.encode("r:salesforce:003A")
    # An extension's key that is no field name is recorded as a value.
    assert context.pii_reads == {owner: {"Unguarded.value": "masked"}}
    # Errors are not data: the audit cannot withhold them later, they are scrubbed now.
    assert context.pii_paths == []


async def test_pii_in_an_error_message_is_recorded_as_shown_in_errors():
    context = _Context(_principal("integration"))
    result = await SCHEMA.execute("{ broken }", context_value=context)
    assert result.errors[0].message == "no such customer ***"
    assert result.errors[0].path == ["broken"]
    owner = context.ids.encode("r:salesforce:003A")
    assert context.pii_reads == {owner: {"Unguarded.errors": "masked"}}
    assert context.pii_paths == []


async def test_the_warning_names_paths_and_kinds_and_at_most_twenty(caplog):
    with caplog.at_level(logging.WARNING, "c360.pii"):
        await _wide(_Context(_principal("support_agent")), "{ local many }")
    [record] = [r for r in caplog.records if r.name == "c360.pii"]
    listed = ", ".join(f"['many', {i}] (PHONE)" for i in range(20))
    assert record.getMessage() == f"PII outside a guarded field was withheld at {listed}"


async def test_a_loader_answer_that_is_one_record_counts_too():
    context = _Context(_principal("integration"), loaders=_Loaders(PERSON))
    result = await _run(context)
    assert result.data["phone"] == ""


# -- what the context says -------------------------------------------------------------------


async def test_the_policy_in_the_context_decides():
    policy = policy_from_mapping({"roles": {"support_agent": {"pii": {"email": "hidden"}}}})
    result = await _run(_Context(_principal("support_agent"), policy=policy))
    assert result.data["note"] == "call ***-***-0101 or write to ***, re: plan"


@dataclass
class _Bare:
    """A context with only loaders: no principal, policy, ids or audit notes."""

    loaders: _Loaders = field(default_factory=lambda: _Loaders([PERSON]))


async def test_a_context_with_no_principal_gets_no_pii_and_keeps_no_notes():
    result = await _run(_Bare())
    assert result.data["phone"] == ""
    assert result.data["name"] == ""


@dataclass
class _NoIds:
    principal: Principal | None
    loaders: _Loaders = field(default_factory=lambda: _Loaders([PERSON]))
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)


async def test_a_context_without_customer_ids_still_gets_the_values_withheld():
    context = _NoIds(_principal("integration"))
    result = await _run(context)
    assert result.data["phone"] == ""
    assert context.pii_reads == {}


@dataclass
class _NoPaths:
    principal: Principal | None
    loaders: _Loaders = field(default_factory=lambda: _Loaders([PERSON]))
    ids: CustomerIds = field(default_factory=lambda: CustomerIds(b"k" * 64))
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)


async def test_a_context_that_keeps_no_paths_still_gets_its_reads():
    context = _NoPaths(_principal("integration"))
    result = await _run(context)
    assert result.data["phone"] == ""
    assert context.pii_reads[context.ids.encode("r:salesforce:003A")]["Unguarded.phone"] == "masked"


@dataclass
class _NoLoaders:
    principal: Principal | None


async def test_a_request_that_read_no_sources_is_left_alone():
    for context in (_NoLoaders(_principal("integration")), _Context(None, loaders=None)):
        result = await _run(context)
        assert result.data["phone"] == "+14155550101"


async def test_an_unexpected_errors_cause_still_reaches_the_log(caplog):
    @strawberry.type
    class Buggy:
        @strawberry.field
        def lookup(self) -> str | None:
            raise ValueError("no customer jane.roe@example.com")

    schema = strawberry.Schema(query=Buggy, extensions=[MaskUnexpectedErrors, PiiEgress])
    with caplog.at_level(logging.ERROR, "c360.graphql"):
        result = await schema.execute(
            "{ lookup }", context_value=_Context(_principal("integration"))
        )
    assert result.errors[0].message == "Internal error"
    [record] = [r for r in caplog.records if r.name == "c360.graphql"]
    assert record.exc_info[0] is ValueError


@pytest.mark.parametrize(
    "text",
    ["write to jane.roe@example.com.", "/unsubscribe?email=jane.roe@example.com&list=1"],
)
async def test_an_email_ending_a_sentence_or_inside_a_url_is_found(text):
    @strawberry.type
    class Notes:
        @strawberry.field
        def note(self) -> str:
            return text

    schema = strawberry.Schema(query=Notes, extensions=[PiiEgress])
    result = await schema.execute("{ note }", context_value=_Context(_principal("integration")))
    assert "jane.roe" not in result.data["note"]


TAGGED = Person(
    source=SourceRef(system="stripe", record_id="cus_9"),
    email="Jane.Roe+billing@mail.example.co.uk",
)


async def test_a_tagged_address_on_a_subdomain_is_found_inside_text():
    @strawberry.type
    class Notes:
        @strawberry.field
        def note(self) -> str:
            return "forwarded from jane.roe+billing@mail.example.co.uk, then closed."

    schema = strawberry.Schema(query=Notes, extensions=[PiiEgress])
    context = _Context(_principal("marketing"), loaders=_Loaders([TAGGED]))
    result = await schema.execute("{ note }", context_value=context)
    assert result.data == {"note": "forwarded from j***@mail.example.co.uk, then closed."}
