"""Stripe lookups by phone and by CRM link (metadata), against its sandbox on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.sdk import ConnectorSettings, normalize_phone
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import PLACEHOLDER_EMAIL, PLACEHOLDER_PHONES, World
from connectors.stripe import StripeConnector
from connectors.stripe.sandbox import create_app

SEARCH = "stripe GET /v1/customers/search"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[str, SandboxState]]:
    state = SandboxState(World(customers=400, seed=7))
    with serve_in_thread(create_app(state)) as url:
        yield url, state


@pytest.fixture
def state(sandbox: tuple[str, SandboxState]) -> SandboxState:
    sandbox[1].stats.clear()
    return sandbox[1]


@pytest.fixture
async def stripe(sandbox: tuple[str, SandboxState]) -> AsyncIterator[StripeConnector]:
    settings = ConnectorSettings(base_url=sandbox[0], credentials=SANDBOX_CREDENTIALS["stripe"])
    connector = StripeConnector(settings)
    yield connector
    await connector.close()


def phones(state: SandboxState) -> dict[str, set[str]]:
    """Every E.164 number Stripe holds, with the customers holding it."""
    out: dict[str, set[str]] = {}
    for p in state.world.people:
        for account in p.billing:
            if account.phone:
                out.setdefault(account.phone, set()).add(account.id)
    return out


async def test_phone_lookup_finds_every_customer_holding_the_number(
    state: SandboxState, stripe: StripeConnector
) -> None:
    expected = dict(list(phones(state).items())[:45])
    assert any(len(ids) > 1 for ids in phones(state).values()), "duplicates share a phone"
    shared = next(k for k, ids in phones(state).items() if len(ids) > 1)
    expected[shared] = phones(state)[shared]
    found = await stripe.customers_by_phone(list(expected))
    assert {key: {c.id for c in customers} for key, customers in found.items()} == expected
    assert state.stats[SEARCH] == math.ceil(len(expected) / StripeConnector.phone_batch_size)


async def test_customers_found_by_phone_carry_their_subscriptions(
    state: SandboxState, stripe: StripeConnector
) -> None:
    owner, account = next(
        (p, a)
        for p in state.world.people
        for a in p.billing
        if a.phone and any(s.status != "canceled" for s in a.subscriptions)
    )
    found = await stripe.customers_by_phone([owner.phone])
    [customer] = [c for c in found[owner.phone] if c.id == account.id]
    current = {s.id for s in account.subscriptions if s.status != "canceled"}
    assert {s.id for s in customer.subscriptions} == current
    assert state.stats[SEARCH] == 1  # embedded, not a second call


async def test_placeholder_non_e164_and_unknown_numbers(
    state: SandboxState, stripe: StripeConnector
) -> None:
    known = next(iter(phones(state)))
    national = f"({known[2:5]}) {known[5:8]}-{known[8:]}"
    assert await stripe.customers_by_phone([*PLACEHOLDER_PHONES, national, ""]) == {}
    assert state.stats[SEARCH] == 0
    unknown = "+12025550143"
    assert normalize_phone(unknown) == unknown
    found = await stripe.customers_by_phone([unknown, known])
    assert list(found) == [known]
    assert state.stats[SEARCH] == 1


async def test_customers_are_found_by_the_crm_id_in_their_metadata(
    state: SandboxState, stripe: StripeConnector
) -> None:
    linked = {a.crm_id: a.id for p in state.world.people for a in p.billing if a.crm_id is not None}
    keys = [f"salesforce:{crm_id}" for crm_id in list(linked)[:25]]
    found = await stripe.people_linked_to([*keys, "zendesk:42", "salesforce:"])
    assert {k: [c.id for c in v] for k, v in found.items()} == {
        k: [linked[k.removeprefix("salesforce:")]] for k in keys
    }
    assert state.stats[SEARCH] == math.ceil(25 / 10)


async def test_a_placeholder_email_customer_is_reachable_only_by_its_link(
    state: SandboxState, stripe: StripeConnector
) -> None:
    owner, account = next(
        (p, a) for p in state.world.people for a in p.billing if a.email == PLACEHOLDER_EMAIL
    )
    assert account.crm_id == owner.crm_id is not None
    by_email = await stripe.customers_by_email([owner.email])
    assert account.id not in {c.id for c in by_email.get(owner.email, ())}
    by_link = await stripe.people_linked_to([f"salesforce:{owner.crm_id}"])
    assert [c.id for c in by_link[f"salesforce:{owner.crm_id}"]] == [account.id]


async def test_keys_for_other_systems_cost_no_call(
    state: SandboxState, stripe: StripeConnector
) -> None:
    assert await stripe.people_linked_to(["zendesk:360000000003", "mailchimp:abc"]) == {}
    assert state.snapshot()["total"] == 0
