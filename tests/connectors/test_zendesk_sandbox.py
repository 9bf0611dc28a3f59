"""Integration tests: the Zendesk connector against its sandbox on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from connectors.sdk import ConnectorSettings, UpstreamAuthError
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState, create_combined_app
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import EPOCH, SupportTicket, World, WorldPerson
from connectors.zendesk import ZendeskConnector
from connectors.zendesk.sandbox import create_app

pytestmark = pytest.mark.integration

CREDS = SANDBOX_CREDENTIALS["zendesk"]
SEARCH = "/api/v2/search.json"
SHOW_MANY = "/api/v2/users/show_many.json"
REQUESTED = "/api/v2/users/{rid:int}/tickets/requested.json"


def _add_zendesk_email_mess(world: World) -> None:
    """Zendesk lower-cases addresses, so the world never stores them messy
    there; give two people the anomalies anyway so the connector's keying by
    normalized email is exercised end to end."""
    clean = [p for p in world.people if p.zendesk_id and not p.anomalies]
    cased, padded = clean[3], clean[4]
    local, _, host = cased.email.partition("@")
    cased.zendesk_email = f"{local.title()}@{host.upper()}"
    cased.anomalies.append("email_case:zendesk")
    padded.zendesk_email = f"  {padded.email} "
    padded.anomalies.append("email_whitespace:zendesk")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[str, SandboxState]]:
    world = World(customers=200, seed=7)
    _add_zendesk_email_mess(world)
    state = SandboxState(world)
    with serve_in_thread(create_app(state)) as url:
        yield url, state


@pytest.fixture
def url(sandbox: tuple[str, SandboxState]) -> str:
    return sandbox[0]


@pytest.fixture
def state(sandbox: tuple[str, SandboxState]) -> SandboxState:
    sandbox[1].stats.clear()
    return sandbox[1]


def _connector(
    url: str, credentials: dict[str, str] | None = None, **options: Any
) -> ZendeskConnector:
    settings = ConnectorSettings(base_url=url, credentials=credentials or CREDS, options=options)
    return ZendeskConnector(settings)


@pytest.fixture
async def connector(url: str) -> AsyncIterator[ZendeskConnector]:
    connector = _connector(url)
    yield connector
    await connector.close()


@pytest.fixture
async def raw(url: str) -> AsyncIterator[httpx.AsyncClient]:
    auth = (f"{CREDS['email']}/token", CREDS["token"])
    async with httpx.AsyncClient(base_url=url, auth=auth) as client:
        yield client


def calls(state: SandboxState, template: str) -> int:
    """Calls to one route, in either of its ``.json`` / suffix-less forms."""
    return sum(state.stats[f"zendesk GET {t}"] for t in {template, template.removesuffix(".json")})


def in_zendesk(state: SandboxState) -> list[WorldPerson]:
    return [p for p in state.world.people if p.zendesk_id]


# ------------------------------------------------------------ connector methods
async def test_requesters_by_email(
    connector: ZendeskConnector, state: SandboxState, url: str
) -> None:
    present = in_zendesk(state)[:40]
    missing = [p for p in state.world.people if "missing:zendesk" in p.anomalies][:5]
    assert missing, "the world should have people missing from zendesk"
    keys = [p.email for p in present + missing] + ["nobody.at.all@nowhere.example"]
    found = await connector.requesters_by_email(keys)
    assert set(found) == {p.email for p in present}
    for p in present:
        [person] = found[p.email]
        assert person.id == str(p.zendesk_id)
        assert (person.name, person.email, person.phone) == (p.name, p.email, p.zendesk_phone)
        assert person.source.system == "zendesk"
        assert person.source.updated_at == p.zendesk_updated
        assert person.source.url == f"{url}/agent/users/{p.zendesk_id}"


async def test_messy_stored_emails_are_keyed_normalized(
    connector: ZendeskConnector, state: SandboxState
) -> None:
    messy = [
        p
        for p in in_zendesk(state)
        if {"email_case:zendesk", "email_whitespace:zendesk"} & set(p.anomalies)
    ]
    assert {a.split(":")[0] for p in messy for a in p.anomalies if a.endswith(":zendesk")} == {
        "email_case",
        "email_whitespace",
    }
    assert all(p.zendesk_email != p.email for p in messy)
    found = await connector.requesters_by_email([p.email for p in messy])
    assert {k: [x.id for x in v] for k, v in found.items()} == {
        p.email: [str(p.zendesk_id)] for p in messy
    }


async def test_external_id_links_to_the_crm(
    connector: ZendeskConnector, state: SandboxState
) -> None:
    people = [p for p in in_zendesk(state) if p.crm_id][:100]
    found = await connector.requesters_by_email([p.email for p in people])
    linked = [p for p in people if found[p.email][0].links]
    assert 0 < len(linked) < len(people)
    assert all(found[p.email][0].links == {"salesforce": p.crm_id} for p in linked)


async def test_emails_are_batched(connector: ZendeskConnector, state: SandboxState) -> None:
    people = in_zendesk(state)
    await connector.requesters_by_email([p.email for p in people[:50]])
    assert calls(state, SEARCH) == 1  # ceil(50 / 50 emails per search)
    state.stats.clear()
    found = await connector.requesters_by_email([p.email for p in people[:120]])
    assert len(found) == 120
    assert calls(state, SEARCH) == 3


async def test_search_pages_are_followed(url: str, state: SandboxState) -> None:
    people = in_zendesk(state)[:9]
    connector = _connector(url, per_page=2)
    try:
        found = await connector.requesters_by_email([p.email for p in people])
    finally:
        await connector.close()
    assert set(found) == {p.email for p in people}
    assert calls(state, SEARCH) == 5  # ceil(9 users / 2 per page), one query


async def test_requesters_by_id(connector: ZendeskConnector, state: SandboxState, url: str) -> None:
    people = in_zendesk(state)[:150]
    ids = [str(p.zendesk_id) for p in people]
    found = await connector.requesters_by_id([*ids, "999", "not-a-number"])
    assert set(found) == set(ids)
    assert calls(state, SHOW_MANY) == 2  # ceil(150 / 100)
    p = people[7]
    person = found[str(p.zendesk_id)]
    assert (person.name, person.email) == (p.name, p.email)
    assert person.source.url == f"{url}/agent/users/{p.zendesk_id}"


def _world_tickets(p: WorldPerson) -> dict[str, SupportTicket]:
    return {str(t.id): t for t in p.tickets}


async def test_tickets_of_requesters(
    connector: ZendeskConnector, state: SandboxState, url: str
) -> None:
    people = in_zendesk(state)[:50]
    found = await connector.tickets_of_requesters([str(p.zendesk_id) for p in people])
    assert calls(state, SEARCH) == 3  # ceil(50 / 20 requesters per search)
    assert set(found) == {str(p.zendesk_id) for p in people if p.tickets}
    for p in people:
        expected = _world_tickets(p)
        got = {t.id: t for t in found.get(str(p.zendesk_id), [])}
        assert set(got) == set(expected)
        for tid, ticket in got.items():
            world = expected[tid]
            assert ticket.requester_id == str(p.zendesk_id)
            assert (ticket.subject, ticket.status, ticket.priority) == (
                world.subject,
                world.status,
                world.priority,
            )
            assert (ticket.created_at, ticket.updated_at) == (world.created_at, world.updated_at)
            assert ticket.source.url == f"{url}/agent/tickets/{tid}"


async def test_ticket_pages_are_followed(url: str, state: SandboxState) -> None:
    people = [p for p in in_zendesk(state) if len(p.tickets) >= 3][:6]
    connector = _connector(url, per_page=2, requesters_per_search=3)
    try:
        found = await connector.tickets_of_requesters([str(p.zendesk_id) for p in people])
    finally:
        await connector.close()
    for p in people:
        assert {t.id for t in found[str(p.zendesk_id)]} == set(_world_tickets(p))
    chunks = [people[:3], people[3:]]
    assert calls(state, SEARCH) == sum(
        math.ceil(sum(len(p.tickets) for p in c) / 2) for c in chunks
    )


async def test_bad_credentials(url: str) -> None:
    connector = _connector(url, {"email": CREDS["email"], "token": "wrong-token"})
    try:
        with pytest.raises(UpstreamAuthError):
            await connector.requesters_by_email(["someone@example.com"])
        with pytest.raises(UpstreamAuthError):
            await connector.requesters_by_id(["1"])
    finally:
        await connector.close()


async def test_oauth_bearer_token(url: str, state: SandboxState) -> None:
    p = in_zendesk(state)[0]
    connector = _connector(url, {"oauth_token": CREDS["token"]})
    try:
        found = await connector.requesters_by_id([str(p.zendesk_id)])
    finally:
        await connector.close()
    assert found[str(p.zendesk_id)].email == p.email


# ---------------------------------------------- more than search's 1,000 results
@pytest.fixture(scope="module")
def crowded() -> Iterator[tuple[str, SandboxState]]:
    world = World(customers=30, seed=11)
    heavy = next(p for p in world.people if p.zendesk_id)
    for n in range(1050):
        when = EPOCH - timedelta(hours=n + 1)
        heavy.tickets.append(SupportTicket(9_000_000 + n, "Bulk", "open", "low", when, when))
    state = SandboxState(world)
    with serve_in_thread(create_app(state)) as url:
        yield url, state


async def test_requesters_past_the_search_window(crowded: tuple[str, SandboxState]) -> None:
    url, state = crowded
    people = in_zendesk(state)
    connector = _connector(url)
    try:
        found = await connector.tickets_of_requesters([str(p.zendesk_id) for p in people])
    finally:
        await connector.close()
    for p in people:
        assert {t.id for t in found.get(str(p.zendesk_id), [])} == set(_world_tickets(p))
    assert len(found[str(people[0].zendesk_id)]) > 1000
    assert calls(state, REQUESTED) == math.ceil(len(people[0].tickets) / 100)


# ------------------------------------------------- mounted under /zendesk
@pytest.fixture(scope="module")
def mounted() -> Iterator[tuple[str, SandboxState]]:
    state = SandboxState(World(customers=20, seed=3))
    with serve_in_thread(create_combined_app(state, ["zendesk"])) as root:
        yield f"{root}/zendesk", state


async def test_links_keep_the_mount_prefix(mounted: tuple[str, SandboxState]) -> None:
    url, state = mounted
    people = in_zendesk(state)[:5]
    connector = _connector(url, per_page=2)
    try:
        found = await connector.requesters_by_email([p.email for p in people])
    finally:
        await connector.close()
    assert set(found) == {p.email for p in people}
    assert calls(state, SEARCH) == 3  # the absolute next_page links were followed
    auth = (f"{CREDS['email']}/token", CREDS["token"])
    async with httpx.AsyncClient(auth=auth) as raw:
        body = (
            await raw.get(f"{url}{SEARCH}", params={"query": "type:user", "per_page": "1"})
        ).json()
    assert body["next_page"].startswith(f"{url}/api/v2/search.json?")
    assert body["results"][0]["url"] == f"{url}/api/v2/users/{body['results'][0]['id']}.json"


# ------------------------------------------------------------ raw vendor shapes
async def test_json_suffix_is_optional(raw: httpx.AsyncClient, state: SandboxState) -> None:
    p = in_zendesk(state)[0]
    tid = p.tickets[0].id if p.tickets else next(t.id for q in in_zendesk(state) for t in q.tickets)
    for path in (
        f"/api/v2/users/{p.zendesk_id}",
        f"/api/v2/users/{p.zendesk_id}/tickets/requested",
        f"/api/v2/tickets/{tid}",
        f"/api/v2/users/show_many?ids={p.zendesk_id}",
        f"/api/v2/search?query=type:user email:{p.email}",
    ):
        with_suffix = await raw.get(path.replace("?", ".json?") if "?" in path else f"{path}.json")
        without = await raw.get(path)
        assert with_suffix.status_code == without.status_code == 200
        assert with_suffix.json() == without.json()


async def test_authentication_and_rate_limit_headers(url: str, raw: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=url) as anonymous:
        denied = await anonymous.get(SEARCH, params={"query": "type:user"})
        bearer = await anonymous.get(
            SEARCH, params={"query": "x"}, headers={"Authorization": "Bearer nope"}
        )
    assert denied.status_code == bearer.status_code == 401
    assert denied.json() == {"error": "Couldn't authenticate you"}
    assert denied.headers["X-Rate-Limit"] == "700"
    first = await raw.get(SEARCH, params={"query": "type:user"})
    second = await raw.get(SEARCH, params={"query": "type:user"})
    assert first.headers["X-Rate-Limit"] == "700"
    assert int(second.headers["X-Rate-Limit-Remaining"]) == (
        int(first.headers["X-Rate-Limit-Remaining"]) - 1
    )


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"query": ""}, 400, "InvalidValue"),
        ({}, 400, "InvalidValue"),
        ({"query": 'type:user email:"unbalanced'}, 400, "InvalidValue"),
        ({"query": "type:ticket created>2026-01-01"}, 400, "InvalidValue"),
        ({"query": "type:widget"}, 400, "InvalidValue"),
        ({"query": "type:ticket", "page": "11", "per_page": "100"}, 422, None),
    ],
)
async def test_search_errors(
    raw: httpx.AsyncClient, params: dict[str, str], status: int, error: str | None
) -> None:
    response = await raw.get(SEARCH, params=params)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "description"}
    if error:
        assert body["error"] == error


async def test_search_ors_repeated_keywords_and_ands_different_ones(
    raw: httpx.AsyncClient, state: SandboxState
) -> None:
    a, b = [p for p in in_zendesk(state) if len(p.tickets) >= 2][:2]
    query = f"type:ticket requester:{a.zendesk_id} requester:{b.email}"
    body = (await raw.get(SEARCH, params={"query": query})).json()
    assert {r["id"] for r in body["results"]} == {t.id for t in a.tickets + b.tickets}
    assert {r["result_type"] for r in body["results"]} == {"ticket"}
    assert body["count"] == len(a.tickets) + len(b.tickets)
    assert body["facets"] is None
    status = a.tickets[0].status
    narrowed = (await raw.get(SEARCH, params={"query": f"{query} status:{status}"})).json()
    assert {r["id"] for r in narrowed["results"]} == {
        t.id for t in a.tickets + b.tickets if t.status == status
    }
    users = (
        await raw.get(
            SEARCH, params={"query": f"type:user email:{a.email} email:{b.email.upper()}"}
        )
    ).json()
    assert {r["id"] for r in users["results"]} == {a.zendesk_id, b.zendesk_id}
    assert all(r["result_type"] == "user" and r["role"] == "end-user" for r in users["results"])


async def test_search_next_page_is_an_absolute_url(
    raw: httpx.AsyncClient, state: SandboxState, url: str
) -> None:
    a, b, c = in_zendesk(state)[:3]
    query = f"type:user email:{a.email} email:{b.email} email:{c.email}"
    first = (await raw.get(SEARCH, params={"query": query, "per_page": "2"})).json()
    assert first["previous_page"] is None
    assert first["next_page"].startswith(f"{url}/api/v2/search.json?")
    second = (await raw.get(first["next_page"])).json()
    assert second["next_page"] is None
    assert second["previous_page"].startswith(f"{url}/api/v2/search.json?")
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert sorted(ids) == sorted([a.zendesk_id, b.zendesk_id, c.zendesk_id])
    assert first["results"][0]["url"] == f"{url}/api/v2/users/{ids[0]}.json"


async def test_users_search_and_show_many(raw: httpx.AsyncClient, state: SandboxState) -> None:
    people = in_zendesk(state)
    p = people[0]
    by_query = (await raw.get("/api/v2/users/search.json", params={"query": p.email})).json()
    assert [u["id"] for u in by_query["users"]] == [p.zendesk_id]
    assert set(by_query) == {"users", "next_page", "previous_page", "count"}
    ids = ",".join(str(q.zendesk_id) for q in people[:99])
    users = (await raw.get(SHOW_MANY, params={"ids": f"{ids},999"})).json()["users"]
    assert [u["id"] for u in users] == [q.zendesk_id for q in people[:99]]
    linked = next(u for u in users if u["external_id"])
    by_external = await raw.get(
        "/api/v2/users/search.json", params={"external_id": linked["external_id"]}
    )
    assert [u["id"] for u in by_external.json()["users"]] == [linked["id"]]
    many = await raw.get(SHOW_MANY, params={"external_ids": linked["external_id"]})
    assert [u["id"] for u in many.json()["users"]] == [linked["id"]]
    too_many = await raw.get(SHOW_MANY, params={"ids": f"{ids},1,2"})
    assert too_many.status_code == 400
    assert too_many.json()["error"] == "InvalidValue"
    assert (await raw.get("/api/v2/users/search.json")).status_code == 400


async def test_not_found_bodies(raw: httpx.AsyncClient) -> None:
    for path in (
        "/api/v2/users/999.json",
        "/api/v2/tickets/999.json",
        "/api/v2/users/999/tickets/requested.json",
    ):
        response = await raw.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "RecordNotFound", "description": "Not found"}
    unknown = await raw.get("/api/v2/widgets.json")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "InvalidEndpoint", "description": "Not found"}
    assert unknown.headers["X-Rate-Limit"] == "700"


async def test_tickets_show_many_and_show(raw: httpx.AsyncClient, state: SandboxState) -> None:
    tickets = [t for p in in_zendesk(state) for t in p.tickets][:5]
    ids = ",".join(str(t.id) for t in tickets)
    body = (await raw.get("/api/v2/tickets/show_many.json", params={"ids": ids})).json()
    assert [t["id"] for t in body["tickets"]] == [t.id for t in tickets]
    one = (await raw.get(f"/api/v2/tickets/{tickets[0].id}.json")).json()["ticket"]
    assert (one["subject"], one["status"], one["priority"]) == (
        tickets[0].subject,
        tickets[0].status,
        tickets[0].priority,
    )
    bad = await raw.get("/api/v2/tickets/show_many.json", params={"ids": "1,abc"})
    assert bad.status_code == 400


async def test_requested_tickets_cursor_pagination(
    raw: httpx.AsyncClient, state: SandboxState, url: str
) -> None:
    p = next(q for q in in_zendesk(state) if len(q.tickets) >= 3)
    path = f"/api/v2/users/{p.zendesk_id}/tickets/requested.json"
    seen: list[int] = []
    body = (await raw.get(path, params={"page[size]": "1"})).json()
    while True:
        seen += [t["id"] for t in body["tickets"]]
        if not body["meta"]["has_more"]:
            assert body["links"]["next"] is None
            break
        assert body["links"]["next"].startswith(f"{url}{path}?")
        body = (await raw.get(body["links"]["next"])).json()
    assert seen == sorted(t.id for t in p.tickets)
    back = (await raw.get(body["links"]["prev"])).json()
    assert [t["id"] for t in back["tickets"]] == [seen[-2]]
    offset = (await raw.get(path, params={"per_page": "2"})).json()
    assert set(offset) == {"tickets", "next_page", "previous_page", "count"}
    assert offset["count"] == len(p.tickets)
    assert offset["next_page"].startswith(f"{url}{path}?")
    for bad in ({"page[size]": "101"}, {"page[size]": "2", "page[after]": "garbage!"}):
        response = await raw.get(path, params=bad)
        assert response.status_code == 400
        assert response.json()["error"] == "InvalidPaginationParameter"


async def test_stats_route_counts_vendor_calls(
    connector: ZendeskConnector, state: SandboxState, url: str
) -> None:
    await connector.requesters_by_id([str(p.zendesk_id) for p in in_zendesk(state)[:10]])
    async with httpx.AsyncClient(base_url=url) as client:
        stats = (await client.get("/_sandbox/stats")).json()
    assert stats["routes"] == {f"zendesk GET {SHOW_MANY}": 1}
