"""Integration tests: the real Mailchimp connector against its sandbox on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from connectors.mailchimp import MailchimpConnector
from connectors.mailchimp.sandbox import create_app
from connectors.sdk import ConnectorSettings, UpstreamAuthError
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import World, WorldPerson, mailchimp_hash

KEY = SANDBOX_CREDENTIALS["mailchimp"]["token"]
SEARCH = "mailchimp GET /3.0/search-members"
LISTS = "mailchimp GET /3.0/lists"
MEMBER = "mailchimp GET /3.0/lists/{list_id}/members/{subscriber_hash}"
FEED = "mailchimp GET /3.0/lists/{list_id}/members/{subscriber_hash}/activity-feed"


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    app: Starlette

    @property
    def world(self) -> World:
        return self.state.world

    def people(self, predicate: Any) -> list[WorldPerson]:
        return [p for p in self.world.people if predicate(p)]

    def world_lists(self) -> list[str]:
        return list(dict.fromkeys(ms.list_id for p in self.world.people for ms in p.memberships))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState(World(customers=200, seed=7))
    app = create_app(state)
    with serve_in_thread(app) as url:
        yield Sandbox(url, state, app)


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    sandbox.state.stats.clear()
    sandbox.state.latency_ms = 0.0
    return sandbox


def connector(box: Sandbox, **options: Any) -> MailchimpConnector:
    return MailchimpConnector(
        ConnectorSettings(base_url=box.url, credentials={"token": KEY}, options=options)
    )


def raw(box: Sandbox, key: str = KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=box.url, auth=("anystring", key))


def in_mailchimp(p: WorldPerson) -> bool:
    return bool(p.memberships)


# -------------------------------------------------------------- by email
async def test_members_by_email_returns_every_membership(box: Sandbox) -> None:
    people = box.people(in_mailchimp)[:20]
    assert any(len(p.memberships) == 2 for p in people)
    c = connector(box)
    try:
        found = await c.members_by_email([p.email for p in people])
    finally:
        await c.close()
    assert set(found) == {p.email for p in people}
    for p in people:
        members = found[p.email]
        assert [(m.list_id, m.list_name, m.status) for m in members] == [
            (ms.list_id, ms.list_name, ms.status) for ms in p.memberships
        ]
        for m, ms in zip(members, p.memberships, strict=True):
            assert m.id == mailchimp_hash(p.email)
            assert m.email == p.email
            assert m.name == p.name
            assert m.source.updated_at == ms.last_changed
            assert m.source.url is not None
            assert m.source.url.startswith("https://us1.admin.mailchimp.com/lists/members/view?id=")
            assert {k.channel: k.status == "granted" for k in m.consents} == ms.consents
            assert (m.avg_open_rate, m.avg_click_rate) == (ms.avg_open_rate, ms.avg_click_rate)


@pytest.mark.parametrize("anomaly", ["email_case:mailchimp", "email_whitespace:mailchimp"])
async def test_messy_stored_addresses_are_keyed_by_normalized_email(
    box: Sandbox, anomaly: str
) -> None:
    people = box.people(lambda p: anomaly in p.anomalies)
    assert people, f"seed 7 should have {anomaly}"
    assert all(p.mailchimp_email != p.email for p in people)
    c = connector(box)
    try:
        found = await c.members_by_email([p.email for p in people])
    finally:
        await c.close()
    assert set(found) == {p.email for p in people}
    assert all(m.email == key for key, members in found.items() for m in members)


async def test_missing_people_and_unknown_emails_are_absent(box: Sandbox) -> None:
    missing = box.people(lambda p: "missing:mailchimp" in p.anomalies)
    assert missing
    present = box.people(in_mailchimp)[0]
    # A partial match must not count: only exact address matches do.
    prefix = present.email.split("@")[0] + "@"
    keys = [p.email for p in missing] + ["nobody@nowhere.example", prefix + "other.example"]
    c = connector(box)
    try:
        found = await c.members_by_email([*keys, present.email, "not-an-email"])
    finally:
        await c.close()
    assert set(found) == {present.email}
    # An address that cannot be one is never sent.
    assert box.state.stats[SEARCH] == len(keys) + 1


async def test_empty_batches_make_no_calls(box: Sandbox) -> None:
    c = connector(box)
    try:
        assert await c.members_by_email([]) == {}
        assert await c.members_by_id([]) == {}
        assert await c.activity_of_members([]) == {}
    finally:
        await c.close()
    assert box.state.snapshot()["total"] == 0


async def test_fifty_emails_cost_one_search_each_and_one_discovery(box: Sandbox) -> None:
    people = box.people(in_mailchimp)[:50]
    emails = [p.email for p in people]
    c = connector(box)
    try:
        found = await c.members_by_email(emails + emails[:10])  # repeats cost nothing
    finally:
        await c.close()
    assert len(found) == 50
    # Mailchimp has no multi-email read: the floor is one search per email.
    assert box.state.stats[SEARCH] == 50
    assert box.state.stats[LISTS] == 1
    assert box.state.snapshot()["by_vendor"] == {"mailchimp": 51}


async def test_concurrent_first_calls_discover_the_lists_once(box: Sandbox) -> None:
    people = box.people(in_mailchimp)[:6]
    c = connector(box)
    try:
        results = await asyncio.gather(
            *(c.members_by_email([p.email]) for p in people),
            c.members_by_id([mailchimp_hash(people[0].email)]),
        )
    finally:
        await c.close()
    assert all(results)
    assert box.state.stats[LISTS] == 1


async def test_concurrency_stays_under_mailchimps_limit(box: Sandbox) -> None:
    gate = box.app.state.mailchimp_gate
    gate.peak, throttled = 0, gate.throttled
    box.state.latency_ms = 20.0
    people = box.people(in_mailchimp)[:40]
    c = connector(box)
    try:
        found = await c.members_by_email([p.email for p in people])
    finally:
        await c.close()
    assert len(found) == 40
    assert gate.throttled == throttled
    assert 1 < gate.peak <= 10


# ----------------------------------------------------------------- by id
async def test_members_by_id_reads_each_audience(box: Sandbox) -> None:
    people = box.people(in_mailchimp)[:10]
    ids = [mailchimp_hash(p.email) for p in people]
    unknown = "0" * 32
    c = connector(box)
    try:
        found = await c.members_by_id([*ids, unknown, people[0].email.upper()])
    finally:
        await c.close()
    assert unknown not in found
    for p, member_id in zip(people, ids, strict=True):
        assert [m.list_id for m in found[member_id]] == [ms.list_id for ms in p.memberships]
        assert all(m.id == member_id and m.email == p.email for m in found[member_id])
    # Mailchimp accepts the address in place of the hash; the key stays as given.
    assert [m.id for m in found[people[0].email.upper()]] == [ids[0]] * len(people[0].memberships)
    assert box.state.stats[MEMBER] == 12 * len(box.world_lists())


async def test_activity_of_members_newest_first(box: Sandbox) -> None:
    people = box.people(lambda p: sum(len(ms.activity) for ms in p.memberships) >= 3)[:5]
    quiet = box.people(lambda p: p.memberships and not any(ms.activity for ms in p.memberships))
    ids = [mailchimp_hash(p.email) for p in [*people, *quiet[:1]]]
    c = connector(box)
    try:
        found = await c.activity_of_members([*ids, "0" * 32])
    finally:
        await c.close()
    assert set(found) == set(ids)
    for p in people:
        events = found[mailchimp_hash(p.email)]
        expected = sorted(
            (a["timestamp"], a["action"], a["title"]) for ms in p.memberships for a in ms.activity
        )
        got = [
            (e.occurred_at.isoformat() if e.occurred_at else "", e.kind, e.detail) for e in events
        ]
        assert sorted(got) == expected
        assert got == sorted(got, reverse=True)
    if quiet:
        assert found[ids[-1]] == []


async def test_pagination_is_followed_with_small_pages(box: Sandbox) -> None:
    busy = box.people(lambda p: any(len(ms.activity) >= 5 for ms in p.memberships))[0]
    member_id = mailchimp_hash(busy.email)
    total = sum(len(ms.activity) for ms in busy.memberships)
    c = connector(box, page_size=1)
    try:
        assert set(await c.lists()) == set(box.world_lists())
        assert box.state.stats[LISTS] == 2  # one list per page
        events = (await c.activity_of_members([member_id]))[member_id]
    finally:
        await c.close()
    assert len(events) == total
    # One page per event (at least one) where the member is; one 404 elsewhere.
    pages = sum(max(1, len(ms.activity)) for ms in busy.memberships)
    others = len(box.world_lists()) - len(busy.memberships)
    assert box.state.stats[FEED] == pages + others


async def test_activity_limit_bounds_events_and_pages(box: Sandbox) -> None:
    busy = box.people(lambda p: any(len(ms.activity) >= 5 for ms in p.memberships))[0]
    member_id = mailchimp_hash(busy.email)
    list_id = next(ms.list_id for ms in busy.memberships if len(ms.activity) >= 5)
    c = connector(box, page_size=2, activity_limit=3, list_ids=[list_id])
    try:
        events = (await c.activity_of_members([member_id]))[member_id]
    finally:
        await c.close()
    assert len(events) == 3
    assert box.state.stats[FEED] == 2
    assert box.state.stats[LISTS] == 0  # configured lists are not discovered


async def test_configured_list_ids_restrict_and_name_the_audiences(box: Sandbox) -> None:
    both = box.people(lambda p: len(p.memberships) == 2)[:5]
    second = both[0].memberships[1]
    c = connector(box, list_ids={second.list_id: "Renamed"})
    try:
        by_email = await c.members_by_email([p.email for p in both])
        by_id = await c.members_by_id([mailchimp_hash(p.email) for p in both])
    finally:
        await c.close()
    for found in (by_email, by_id):
        assert len(found) == len(both)
        assert {(m.list_id, m.list_name) for ms in found.values() for m in ms} == {
            (second.list_id, "Renamed")
        }
    assert box.state.stats[LISTS] == 0
    assert box.state.stats[MEMBER] == len(both)


# ------------------------------------------------------------------- auth
async def test_bad_credentials_are_an_auth_error(box: Sandbox) -> None:
    c = MailchimpConnector(
        ConnectorSettings(
            base_url=box.url,
            credentials={"token": "wrong-us1"},
            options={"list_ids": ["a1b2c3d4e5"]},
        )
    )
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await c.members_by_email([box.world.people[0].email])
    finally:
        await c.close()
    assert info.value.status == 401
    assert "API Key Invalid" in (info.value.vendor_detail or "")


async def test_oauth_bearer_token_is_accepted(box: Sandbox) -> None:
    person = box.people(in_mailchimp)[0]
    c = MailchimpConnector(
        ConnectorSettings(base_url=box.url, credentials={"oauth_token": KEY}, options={"dc": "us7"})
    )
    try:
        found = await c.members_by_email([person.email])
    finally:
        await c.close()
    url = found[person.email][0].source.url
    assert url is not None
    assert url.startswith("https://us7.admin.mailchimp.com/")


async def test_raw_401_bodies(box: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=box.url) as client:
        missing = await client.get("/3.0/lists")
        bearer = await client.get("/3.0/lists", headers={"Authorization": "Bearer nope"})
        garbage = await client.get("/3.0/lists", headers={"Authorization": "Basic !!!"})
    wrong_key = base64.b64encode(b"user:nope").decode()
    async with httpx.AsyncClient(base_url=box.url) as client:
        wrong = await client.get("/3.0/lists", headers={"Authorization": f"Basic {wrong_key}"})
    assert missing.status_code == 401
    assert missing.json()["title"] == "API Key Missing"
    for response in (bearer, garbage, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["title"] == "API Key Invalid"
        assert body["status"] == 401
        assert body["type"] == "https://mailchimp.com/developer/marketing/docs/errors/"
        assert body["instance"] == response.headers["x-request-id"]


# -------------------------------------------------------------- raw shapes
async def test_raw_member_by_hash_email_and_slash_variant(box: Sandbox) -> None:
    p = box.people(lambda p: "email_case:mailchimp" in p.anomalies)[0]
    list_id = p.memberships[0].list_id
    member_id = mailchimp_hash(p.email)
    async with raw(box) as client:
        by_hash = await client.get(f"/3.0/lists/{list_id}/members/{member_id}")
        by_email = await client.get(f"/3.0/lists/{list_id}/members/{p.email.upper()}/")
        missing = await client.get(f"/3.0/lists/{list_id}/members/{'f' * 32}")
        no_list = await client.get(f"/3.0/lists/nolist/members/{member_id}")
    assert by_hash.status_code == by_email.status_code == 200
    assert by_hash.json() == by_email.json()
    body = by_hash.json()
    assert body["id"] == member_id
    assert body["email_address"] == p.mailchimp_email  # as stored, case and all
    assert body["list_id"] == list_id
    assert body["email_type"] == "html"
    assert body["merge_fields"]["FNAME"] == p.first_name
    assert body["last_changed"].endswith("+00:00")
    assert isinstance(body["web_id"], int)
    assert body["unique_email_id"]
    assert by_hash.headers["x-request-id"] != by_email.headers["x-request-id"]
    for response in (missing, no_list):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["title"] == "Resource Not Found"


async def test_raw_lists_partial_response_and_count_limit(box: Sandbox) -> None:
    async with raw(box) as client:
        partial = await client.get("/3.0/lists", params={"fields": "lists.id,lists.name"})
        page = await client.get("/3.0/lists/", params={"count": 1, "offset": 1})
        one = await client.get("/3.0/lists/a1b2c3d4e5", params={"exclude_fields": "stats,_links"})
        too_many = await client.get("/3.0/lists", params={"count": 1001})
        unknown = await client.get("/3.0/no-such-thing")
        post = await client.post("/3.0/lists", json={})
    assert partial.json() == {
        "lists": [
            {"id": "a1b2c3d4e5", "name": "Newsletter"},
            {"id": "f6e5d4c3b2", "name": "Product updates"},
        ]
    }
    assert page.json()["total_items"] == 2
    assert len(page.json()["lists"]) == 1
    assert one.json()["name"] == "Newsletter"
    assert "stats" not in one.json()
    assert too_many.status_code == 400
    assert too_many.json()["title"] == "Invalid Resource"
    assert too_many.json()["errors"][0]["field"] == "count"
    assert unknown.status_code == 404
    assert unknown.json()["title"] == "Resource Not Found"
    assert post.status_code == 405
    assert post.json()["status"] == 405


async def test_raw_list_members_pages_and_status_filter(box: Sandbox) -> None:
    list_id = "a1b2c3d4e5"
    expected = [p for p in box.world.people for ms in p.memberships if ms.list_id == list_id]
    subscribed = [
        p
        for p in box.world.people
        for ms in p.memberships
        if ms.list_id == list_id and ms.status == "subscribed"
    ]
    async with raw(box) as client:
        first = await client.get(f"/3.0/lists/{list_id}/members", params={"count": 7})
        rest = await client.get(
            f"/3.0/lists/{list_id}/members/", params={"count": 1000, "offset": 7}
        )
        only = await client.get(
            f"/3.0/lists/{list_id}/members", params={"status": "subscribed", "count": 1000}
        )
        bad = await client.get(f"/3.0/lists/{list_id}/members", params={"status": "vip"})
    assert first.json()["total_items"] == len(expected) == rest.json()["total_items"]
    ids = [m["id"] for m in first.json()["members"] + rest.json()["members"]]
    assert ids == [mailchimp_hash(p.email) for p in expected]
    assert len(only.json()["members"]) == len(subscribed)
    assert {m["status"] for m in only.json()["members"]} == {"subscribed"}
    assert bad.status_code == 400


async def test_raw_search_members(box: Sandbox) -> None:
    p = box.people(lambda p: "email_whitespace:mailchimp" in p.anomalies)[0]
    async with raw(box) as client:
        exact = await client.get("/3.0/search-members", params={"query": p.email.upper()})
        scoped = await client.get(
            "/3.0/search-members/",
            params={"query": p.email, "list_id": p.memberships[0].list_id},
        )
        partial = await client.get("/3.0/search-members", params={"query": p.last_name})
        blank = await client.get("/3.0/search-members", params={"query": "  "})
        no_list = await client.get("/3.0/search-members", params={"query": "x", "list_id": "no"})
    body = exact.json()
    assert body["exact_matches"]["total_items"] == len(p.memberships)
    assert {m["email_address"] for m in body["exact_matches"]["members"]} == {p.mailchimp_email}
    assert [m["list_id"] for m in scoped.json()["exact_matches"]["members"]] == [
        p.memberships[0].list_id
    ]
    full = partial.json()
    assert full["exact_matches"]["members"] == []
    assert full["full_search"]["total_items"] >= 1
    assert len(full["full_search"]["members"]) <= 10
    assert all(
        p.last_name.lower() in (m["full_name"] + m["email_address"]).lower()
        for m in full["full_search"]["members"]
    )
    assert blank.status_code == 400
    assert blank.json()["errors"][0]["field"] == "query"
    assert no_list.status_code == 404


async def test_raw_activity_feed_shape(box: Sandbox) -> None:
    p = box.people(lambda p: any(len(ms.activity) >= 3 for ms in p.memberships))[0]
    ms = next(ms for ms in p.memberships if len(ms.activity) >= 3)
    path = f"/3.0/lists/{ms.list_id}/members/{mailchimp_hash(p.email)}/activity-feed"
    async with raw(box) as client:
        page = await client.get(path, params={"count": 2, "offset": 1})
        everything = await client.get(path + "/", params={"count": 1000})
        kind = ms.activity[0]["action"]
        filtered = await client.get(path, params={"activity_filters": kind, "count": 1000})
    body = page.json()
    assert body["email_id"] == mailchimp_hash(p.email)
    assert body["list_id"] == ms.list_id
    assert body["total_items"] == len(ms.activity)
    assert body["activity"] == everything.json()["activity"][1:3]
    stamps = [a["created_at_timestamp"] for a in everything.json()["activity"]]
    assert stamps == sorted(stamps, reverse=True)
    assert set(everything.json()["activity"][0]) >= {
        "activity_type",
        "created_at_timestamp",
        "campaign_id",
        "campaign_title",
    }
    assert {a["activity_type"] for a in filtered.json()["activity"]} == {kind}


async def test_raw_more_than_ten_simultaneous_requests_are_throttled(box: Sandbox) -> None:
    box.state.latency_ms = 300.0
    async with raw(box) as client:
        responses = await asyncio.gather(*(client.get("/3.0/lists") for _ in range(14)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) <= 10
    throttled = [r for r in responses if r.status_code == 429]
    assert throttled
    assert throttled[0].json()["title"] == "Too Many Requests"
    assert "x-request-id" in throttled[0].headers
    assert "retry-after" not in throttled[0].headers  # Mailchimp sends none


async def test_sandbox_stats_route_counts_vendor_calls(box: Sandbox) -> None:
    async with raw(box) as client:
        await client.get("/3.0/lists")
        await client.get("/3.0/lists/")
        stats = (await client.get("/_sandbox/stats")).json()
    assert stats["routes"][LISTS] == 1
    assert stats["routes"][LISTS + "/"] == 1
