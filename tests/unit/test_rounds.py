"""One identity round: which lookups it makes, and what a late or failing system costs."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping, Sequence

from connectors.sdk import Person, UpstreamTimeout, UpstreamUnavailable
from gateway._rounds import Frontier, round_calls, round_results
from tests.unit.identity_fakes import Billing, Crm, Marketing, Ticketing, person, world


def _calls(calls):
    return [(c.name, method, key, kind) for c, method, key, kind in calls]


def test_a_round_asks_each_key_of_every_system_that_can_answer_it():
    ctx = world(Crm(), Ticketing(), Billing(), Marketing())
    frontier = Frontier(
        emails={"b@x.example", "a@x.example"},
        phones={"+14155550101"},
        targets={"salesforce:003A", "zendesk:11", "hubspot:77"},
        backrefs={"stripe:cus_1"},
    )
    calls = _calls(round_calls(ctx.connectors, frontier, Frontier(), have={"zendesk:11"}))
    assert calls == [
        # Targets from their own system, unless already found or of no known system.
        ("salesforce", "people_by_id", "003A", "link"),
        # Who links to a record: every other system that can tell.
        ("zendesk", "people_linked_to", "stripe:cus_1", "link"),
        ("salesforce", "people_by_email", "a@x.example", "email"),
        ("zendesk", "requesters_by_email", "a@x.example", "email"),
        ("stripe", "customers_by_email", "a@x.example", "email"),
        ("mailchimp", "members_by_email", "a@x.example", "email"),
        ("salesforce", "people_by_email", "b@x.example", "email"),
        ("zendesk", "requesters_by_email", "b@x.example", "email"),
        ("stripe", "customers_by_email", "b@x.example", "email"),
        ("mailchimp", "members_by_email", "b@x.example", "email"),
        # Marketing has no lookup by phone.
        ("salesforce", "people_by_phone", "+14155550101", "phone"),
        ("zendesk", "requesters_by_phone", "+14155550101", "phone"),
        ("stripe", "customers_by_phone", "+14155550101", "phone"),
    ]


def test_ids_with_colons_are_read_from_the_system_before_the_first():
    ctx = world(Crm(), Ticketing(), Billing())
    frontier = Frontier(targets={"salesforce:a:b"}, backrefs={"zendesk:x:y"})
    assert _calls(round_calls(ctx.connectors, frontier, Frontier())) == [
        ("salesforce", "people_by_id", "a:b", "link"),
        ("stripe", "people_linked_to", "zendesk:x:y", "link"),
    ]


def test_keys_asked_once_are_never_asked_again():
    ctx = world(Crm(), Ticketing())
    seen = Frontier()
    first = Frontier({"a@x.example"}, {"+14155550101"}, {"salesforce:003A"}, {"zendesk:11"})
    assert len(round_calls(ctx.connectors, first, seen)) == 5
    second = Frontier({"b@x.example"}, {"+14155550102"}, {"salesforce:003B"}, {"zendesk:12"})
    round_calls(ctx.connectors, second, seen)
    assert seen == Frontier(
        {"a@x.example", "b@x.example"},
        {"+14155550101", "+14155550102"},
        {"salesforce:003A", "salesforce:003B"},
        {"zendesk:11", "zendesk:12"},
    )
    third = Frontier(
        {"a@x.example", "c@x.example"}, {"+14155550101"}, {"salesforce:003A"}, {"zendesk:11"}
    )
    third.minus(seen)
    assert third == Frontier({"c@x.example"}, set(), set(), set())
    assert _calls(round_calls(ctx.connectors, third, seen)) == [
        ("salesforce", "people_by_email", "c@x.example", "email"),
        ("zendesk", "requesters_by_email", "c@x.example", "email"),
    ]


class _Hanging(Ticketing):
    """Answers only when released, then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def requesters_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        await self.release.wait()
        raise UpstreamUnavailable("zendesk is down", source="zendesk")


async def test_a_system_late_past_its_share_of_the_deadline_counts_as_timed_out(caplog):
    hanging = _Hanging()
    ctx = world(Crm(person("salesforce", "003A", email="a@x.example")), hanging)
    loop = asyncio.get_running_loop()
    ctx.loaders.scope.deadline = loop.time() + 0.4
    calls = round_calls(ctx.connectors, Frontier(emails={"a@x.example"}), Frontier())
    started = loop.time()
    found, late = await round_results(ctx, calls)
    waited = loop.time() - started
    # Half of what was left: a hung system cannot eat every later round's time.
    assert 0.15 <= waited < 0.35
    assert [r.source.record_id for r in found] == ["003A"]
    assert isinstance(late, UpstreamTimeout)
    assert (late.source, str(late)) == ("zendesk", "zendesk did not answer in time")
    # Its failure, when it comes, is taken in: nothing is left unretrieved
    # when the request's loaders are gone.
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        hanging.release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        del ctx, calls
        gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_a_round_past_the_deadline_waits_for_nothing():
    hanging = _Hanging()
    ctx = world(hanging)
    loop = asyncio.get_running_loop()
    ctx.loaders.scope.deadline = loop.time() - 1
    calls = round_calls(ctx.connectors, Frontier(emails={"a@x.example"}), Frontier())
    [late] = await round_results(ctx, calls)
    assert isinstance(late, UpstreamTimeout)
    hanging.release.set()


async def test_answers_and_failures_come_back_in_call_order():
    ctx = world(Crm(person("salesforce", "003A", email="a@x.example")),
                Billing(failing=["customers_by_email"]))  # fmt: skip
    calls = round_calls(ctx.connectors, Frontier(emails={"a@x.example"}), Frontier())
    crm, billing = await round_results(ctx, calls)
    assert [r.source.record_id for r in crm] == ["003A"]
    assert isinstance(billing, UpstreamUnavailable) and billing.source == "stripe"
