"""Zendesk lookups by phone and by CRM link, against its sandbox on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from connectors.sdk import ConnectorSettings, normalize_phone
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import PLACEHOLDER_PHONES, World, WorldPerson
from connectors.zendesk import ZendeskConnector
from connectors.zendesk.sandbox import create_app

pytestmark = pytest.mark.integration

CREDS = SANDBOX_CREDENTIALS["zendesk"]
SEARCH = "zendesk GET /api/v2/search.json"
SHOW_MANY = "zendesk GET /api/v2/users/show_many.json"


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
async def zd(sandbox: tuple[str, SandboxState]) -> AsyncIterator[ZendeskConnector]:
    connector = ZendeskConnector(ConnectorSettings(base_url=sandbox[0], credentials=CREDS))
    yield connector
    await connector.close()


def in_zendesk(state: SandboxState) -> list[WorldPerson]:
    return [
        p
        for p in state.world.people
        if p.zendesk_id and "conflict:phone:zendesk" not in p.anomalies
    ]


def conflicts(state: SandboxState) -> list[WorldPerson]:
    found = [p for p in state.world.people if "conflict:phone:zendesk" in p.anomalies]
    assert found, "seed 7 seeds phone conflicts in Zendesk"
    return found


async def test_phone_lookup_finds_users_whatever_format_they_store(
    state: SandboxState, zd: ZendeskConnector
) -> None:
    people = in_zendesk(state)[:120]
    stored = {p.zendesk_phone for p in people}
    assert any(s and s.startswith("+") for s in stored)
    assert any(s and not s.startswith("+") for s in stored), "dotted display formats too"
    numbers = {p.zendesk_phone_e164 for p in people if p.zendesk_phone_e164}
    # Every user holding each number: a recycled one is held by two people's users.
    holders: dict[str, dict[str, str | None]] = {}
    for p in state.world.people:
        if p.zendesk_id and p.zendesk_phone_e164 in numbers:
            holders.setdefault(p.zendesk_phone_e164, {})[str(p.zendesk_id)] = p.zendesk_phone
    found = await zd.requesters_by_phone(sorted(numbers))
    assert {number: {u.id for u in users} for number, users in found.items()} == {
        number: set(ids) for number, ids in holders.items()
    }
    for number, users in found.items():
        for user in users:
            assert user.phone == holders[number][user.id]
    assert state.stats[SEARCH] == math.ceil(len(numbers) / ZendeskConnector.phone_batch_size)


async def test_a_conflicting_phone_is_found_only_under_its_own_number(
    state: SandboxState, zd: ZendeskConnector
) -> None:
    people = conflicts(state)
    own = [p.zendesk_phone or "" for p in people]
    found = await zd.requesters_by_phone([p.phone for p in people] + own)
    # The person's CRM number finds nobody here...
    assert not {p.phone for p in people} & set(found)
    # ...and the number Zendesk holds finds that user alone.
    for p, number in zip(people, own, strict=True):
        assert [u.id for u in found[number]] == [str(p.zendesk_id)]


async def test_placeholder_and_non_e164_keys_are_never_sent(
    state: SandboxState, zd: ZendeskConnector
) -> None:
    person = in_zendesk(state)[0]
    display = f"{person.phone[2:5]}.{person.phone[5:8]}.{person.phone[8:]}"
    assert await zd.requesters_by_phone([*PLACEHOLDER_PHONES, display, "", "+1"]) == {}
    assert state.snapshot()["total"] == 0


async def test_unknown_numbers_are_absent(state: SandboxState, zd: ZendeskConnector) -> None:
    known = in_zendesk(state)[0]
    unknown = "+12025550143"
    assert normalize_phone(unknown) == unknown
    found = await zd.requesters_by_phone([unknown, known.phone])
    assert list(found) == [known.phone]
    assert state.stats[SEARCH] == 1


async def test_users_carrying_a_crm_id_are_found_by_it(
    state: SandboxState, zd: ZendeskConnector
) -> None:
    linked = [p for p in state.world.people if p.zendesk_external_id]
    unlinked = [p for p in state.world.people if p.crm_id and not p.zendesk_external_id]
    assert linked and unlinked
    keys = [f"salesforce:{p.crm_id}" for p in linked + unlinked[:5]]
    found = await zd.people_linked_to([*keys, f"stripe:{linked[0].crm_id}", "salesforce:"])
    assert set(found) == {f"salesforce:{p.crm_id}" for p in linked}
    for p in linked:
        [user] = found[f"salesforce:{p.crm_id}"]
        assert user.id == str(p.zendesk_id)
        assert user.links == {"salesforce": p.crm_id}
    assert state.stats[SHOW_MANY] == math.ceil(len(linked + unlinked[:5]) / 100)


async def test_keys_for_other_systems_cost_no_call(
    state: SandboxState, zd: ZendeskConnector
) -> None:
    assert await zd.people_linked_to(["stripe:cus_123", "zendesk:42", "salesforce:"]) == {}
    assert state.snapshot()["total"] == 0


@pytest.mark.parametrize(("wildcard", "hits"), [(True, 1), (False, 0)])
def test_sandbox_phone_search_needs_the_wildcard_across_formats(
    sandbox: tuple[str, SandboxState], wildcard: bool, hits: int
) -> None:
    url, state = sandbox
    person = next(p for p in in_zendesk(state) if p.zendesk_phone == p.phone)  # stored E.164
    term = ("*" if wildcard else "") + person.phone[2:]
    response = httpx.get(
        f"{url}/api/v2/search.json",
        params={"query": f"type:user phone:{term}"},
        auth=(f"{CREDS['email']}/token", CREDS["token"]),
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [person.zendesk_id] * hits
