"""Salesforce phone lookup, account hierarchy and search, against its sandbox on 127.0.0.1."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors.salesforce import SalesforceConnector
from connectors.salesforce._sosl import search_text
from connectors.salesforce._sosl_parse import Op, Term, parse
from connectors.salesforce.sandbox import create_app
from connectors.sdk import ConnectorSettings, UpstreamBadRequest, normalize_phone
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import PLACEHOLDER_PHONES, World, WorldPerson

AUTH = {"Authorization": f"Bearer {SANDBOX_CREDENTIALS['salesforce']['token']}"}
V = "/services/data/v61.0"
QUERY = "salesforce GET /services/data/{version}/query"
QUERY_MORE = "salesforce GET /services/data/{version}/query/{locator}"
SEARCH = "salesforce GET /services/data/{version}/search"


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    http: httpx.Client

    @property
    def world(self) -> World:
        return self.state.world

    def calls(self, route: str) -> int:
        return self.state.stats[route]

    def sosl(self, q: str) -> httpx.Response:
        return self.http.get(f"{self.url}{V}/search/", params={"q": q}, headers=AUTH)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState(World(customers=600, seed=7))
    with serve_in_thread(create_app(state)) as url, httpx.Client() as http:
        yield Sandbox(url, state, http)


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    sandbox.state.stats.clear()
    return sandbox


@pytest.fixture
async def sf(box: Sandbox) -> AsyncIterator[SalesforceConnector]:
    connector = SalesforceConnector(
        ConnectorSettings(base_url=box.url, credentials=SANDBOX_CREDENTIALS["salesforce"])
    )
    yield connector
    await connector.close()


def crm_people(box: Sandbox) -> list[WorldPerson]:
    return [p for p in box.world.people if p.crm_id and p.crm_phone not in PLACEHOLDER_PHONES]


def words(*values: Any) -> set[str]:
    """Lower-cased words of the values, split at anything not a letter or digit."""
    return {w for v in values if isinstance(v, str) for w in re.split(r"[^a-z0-9]+", v.lower())}


# ------------------------------------------------------------------- phones
async def test_phone_lookup_finds_contacts_whatever_format_they_store(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    people = crm_people(box)[:150]
    assert len({p.crm_phone[0] for p in people if p.crm_phone}) > 1, "several stored formats"
    numbers = {p.crm_phone_e164 for p in people if p.crm_phone_e164}
    # Every contact holding each number, a switchboard's several among them.
    holders: dict[str, dict[str, str | None]] = {}
    for p in box.world.people:
        if p.crm_id and p.crm_phone_e164 in numbers:
            holders.setdefault(p.crm_phone_e164, {})[p.crm_id] = p.crm_phone
    assert any(len(ids) > 1 for ids in holders.values()), "seed 7 seeds switchboards"
    found = await sf.people_by_phone(sorted(numbers))
    assert {number: {c.id for c in contacts} for number, contacts in found.items()} == {
        number: set(ids) for number, ids in holders.items()
    }
    for number, contacts in found.items():
        for person in contacts:
            # The stored format is kept on the record.
            assert person.phone == holders[number][person.id]
    # Up to 150 numbers at 100 per SOSL search: two searches, no SOQL.
    assert box.calls(SEARCH) == math.ceil(len(numbers) / SalesforceConnector.phone_batch_size) == 2
    assert box.calls(QUERY) == 0


async def test_placeholders_and_non_e164_keys_are_never_sent(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    person = crm_people(box)[0]
    national = f"({person.phone[2:5]}) {person.phone[5:8]}-{person.phone[8:]}"
    found = await sf.people_by_phone([*PLACEHOLDER_PHONES, "", "12", national])
    assert found == {}
    assert box.calls(SEARCH) == 0


async def test_unknown_numbers_and_placeholder_contacts_are_absent(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    placeholder = [p for p in box.world.people if "placeholder:phone:salesforce" in p.anomalies]
    assert placeholder, "seed 7 stores placeholder phones in the CRM"
    known = crm_people(box)[0]
    unknown = "+12025550143"
    assert normalize_phone(unknown) == unknown
    found = await sf.people_by_phone([known.phone, unknown, *(p.phone for p in placeholder)])
    assert list(found) == [known.phone]
    assert box.calls(SEARCH) == 1


# ---------------------------------------------------------------- hierarchy
async def test_children_and_contacts_of_twenty_accounts_cost_one_query_each(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    orgs = box.world.orgs[:20]
    ids = [o.crm_id for o in orgs]
    children = await sf.child_organizations(ids)
    assert box.calls(QUERY) == 1
    contacts = await sf.contacts_of_organizations(ids)
    assert box.calls(QUERY) == 2 and box.calls(QUERY_MORE) == 0
    for org in orgs:
        expected = {o.crm_id for o in box.world.orgs if o.parent == org.index}
        assert {c.id for c in children.get(org.crm_id, ())} == expected
        assert all(c.parent_id == org.crm_id for c in children.get(org.crm_id, ()))
        members = {p.crm_id for p in box.world.people if p.org == org.index and p.crm_id}
        assert {c.id for c in contacts.get(org.crm_id, ())} == members
        assert (org.crm_id in contacts) == bool(members)
    assert any(children.values()), "some of the first 20 accounts have children"


async def test_a_parent_loop_answers_each_as_the_others_child(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    a, b = (box.world.orgs[i] for i in box.world.cycle)
    children = await sf.child_organizations([a.crm_id, b.crm_id])
    assert [o.id for o in children[a.crm_id]] == [b.crm_id]
    assert [o.id for o in children[b.crm_id]] == [a.crm_id]
    accounts = await sf.organizations_by_id([a.crm_id, b.crm_id])
    assert accounts[a.crm_id].parent_id == b.crm_id
    assert accounts[b.crm_id].parent_id == a.crm_id
    assert box.calls(QUERY) == 1  # one level per call: nothing to loop over


async def test_fifteen_character_ids_find_the_same_children(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    parent = next(o for o in box.world.orgs if any(c.parent == o.index for c in box.world.orgs))
    short = parent.crm_id[:15]
    found = await sf.child_organizations([short, "not-an-id"])
    assert list(found) == [short]
    assert {o.parent_id for o in found[short]} == {parent.crm_id}


async def test_organizations_page_walks_every_account_once(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await sf.organizations_page(7, cursor)
        pages += 1
        assert len(page.items) <= 7
        seen += [o.id for o in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert cursor == page.items[-1].id
    assert sorted(seen) == sorted(o.crm_id for o in box.world.orgs)
    assert len(seen) == len(set(seen))
    # Keyset pages: one query each, and no empty page at the end.
    assert pages == math.ceil(len(box.world.orgs) / 7) == box.calls(QUERY)


async def test_a_forged_page_cursor_is_refused_before_any_call(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    with pytest.raises(UpstreamBadRequest):
        await sf.organizations_page(5, "' OR Name != '")
    with pytest.raises(UpstreamBadRequest):
        await sf.search_people("ada", 5, "-1")
    with pytest.raises(UpstreamBadRequest):
        await sf.search_people("ada", 5, "2001")
    assert box.state.snapshot()["total"] == 0


# ------------------------------------------------------------------- search
async def test_search_finds_people_by_name_and_by_email(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    person = crm_people(box)[7]
    by_name = await sf.search_people(f"{person.first_name} {person.last_name}", 50, None)
    assert person.crm_id in {p.id for p in by_name.items}
    for found in by_name.items:
        held = words(found.first_name, found.last_name, found.email, found.title, found.phone)
        assert {person.first_name.lower(), person.last_name.lower()} <= held
    by_email = await sf.search_people(person.email.upper(), 50, None)
    assert [p.id for p in by_email.items] == [person.crm_id]
    assert by_email.next_cursor is None
    assert box.calls(SEARCH) == 2


async def test_search_pages_visit_every_match_exactly_once(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    name = "maya"
    expected = {
        p.crm_id
        for p in box.world.people
        if p.crm_id and name in words(p.first_name, p.last_name, p.crm_email, p.title)
    }
    assert len(expected) > 5
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await sf.search_people(name.upper(), 2, cursor)
        seen += [p.id for p in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    assert seen == sorted(seen)  # Id order keeps offsets stable
    assert box.calls(SEARCH) == math.ceil(len(expected) / 2)


@pytest.mark.parametrize(
    "text",
    [
        "FIRST} OR {LAST",
        "FIRST} RETURNING Account(Id) LIMIT 1 {",
        "FIRST' OR Name != '",
        '"FIRST" OR "LAST"',
        "FIRST\\",
        "FIRST\\} OR \\{LAST",
        "FIRST* LAST?",
    ],
)
async def test_search_text_cannot_change_the_query(
    box: Sandbox, sf: SalesforceConnector, text: str
) -> None:
    person = crm_people(box)[3]
    typed = text.replace("FIRST", person.first_name).replace("LAST", person.last_name)
    page = await sf.search_people(typed, 50, None)  # a broken query would be a 400
    assert box.calls(SEARCH) == 1
    for found in page.items:
        # Only contacts, and only ones holding every word typed (nothing ORed in).
        assert found.id.startswith("003")
        held = words(found.first_name, found.last_name, found.email, found.title)
        assert {person.first_name.lower()} <= held
        assert "or" not in words(typed) or "or" in held


@pytest.mark.parametrize(
    "text",
    [
        "a\\b{c}d ef",
        "x' OR '1'='1",
        'he said "hi" -- (ok) [yes] ^~*?:+!&| and not',
        "} OR {",
    ],
)
def test_escaped_text_is_one_conjunction_of_literal_words(text: str) -> None:
    node = parse(f"FIND {{{search_text(text)}}} RETURNING Contact(Id)").query
    terms = node.items if isinstance(node, Op) else (node,)
    assert isinstance(node, Term) or node.op == "AND"
    # No OR, no NOT, no wildcard: every word typed is a literal that must be present.
    assert all(isinstance(t, Term) for t in terms)
    assert all(isinstance(token, str) for t in terms if isinstance(t, Term) for token in t.tokens)


async def test_text_with_nothing_searchable_costs_no_call(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    page = await sf.search_people("a } { \\ ' *", 10, None)
    assert page.items == () and page.next_cursor is None
    assert box.calls(SEARCH) == 0


async def test_search_stops_at_the_sosl_offset_limit() -> None:
    """SOSL refuses an OFFSET past 2,000: the page that reaches it is the last."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.params["q"])
        limit = int(re.search(r"LIMIT (\d+)", sent[-1]).group(1))  # type: ignore[union-attr]
        record = {"attributes": {"type": "Contact"}, "LastName": "Ng"}
        rows = [{**record, "Id": f"003{n:015d}"} for n in range(limit)]
        return httpx.Response(200, json={"searchRecords": rows})

    connector = SalesforceConnector(
        ConnectorSettings(base_url="https://sf.test", credentials={"token": "t"}),
        transport=httpx.MockTransport(answer),
    )
    try:
        near = await connector.search_people("ng", 10, "1990")
        assert near.next_cursor == "2000"
        last = await connector.search_people("ng", 10, "1995")
        assert len(last.items) == 10 and last.next_cursor is None
    finally:
        await connector.close()
    assert "ORDER BY Id LIMIT 11 OFFSET 1995)" in sent[-1]


# ------------------------------------------------------------ sandbox SOSL
def test_sandbox_sosl_matches_phones_on_digits(box: Sandbox) -> None:
    person = crm_people(box)[0]
    digits = person.phone[2:]
    body = box.sosl(f"FIND {{{digits}}} IN PHONE FIELDS RETURNING Contact(Id, Phone)").json()
    assert [r["Id"] for r in body["searchRecords"]] == [person.crm_id]
    assert body["searchRecords"][0]["attributes"]["type"] == "Contact"
    # Name fields do not hold phones.
    body = box.sosl(f"FIND {{{digits}}} IN NAME FIELDS RETURNING Contact(Id)").json()
    assert body == {"searchRecords": []}


def test_sandbox_sosl_returns_accounts_and_honours_limits(box: Sandbox) -> None:
    org = box.world.orgs[0]
    first_word = org.name.split()[0]
    body = box.sosl(
        f"FIND {{{first_word}}} IN NAME FIELDS RETURNING Account(Id, Name LIMIT 1), Contact(Id)"
    ).json()
    types = [r["attributes"]["type"] for r in body["searchRecords"]]
    assert types[0] == "Account" and types.count("Account") == 1
    assert first_word in body["searchRecords"][0]["Name"]


@pytest.mark.parametrize(
    ("q", "code"),
    [
        ("FIND {maya} OR {chen} RETURNING Contact(Id)", "MALFORMED_SEARCH"),
        ("FIND {maya:x} RETURNING Contact(Id)", "MALFORMED_SEARCH"),
        ("FIND maya RETURNING Contact(Id)", "MALFORMED_SEARCH"),
        ("FIND {m} RETURNING Contact(Id)", "INVALID_SEARCH"),
        ("FIND {maya} RETURNING Contact(Id OFFSET 2001)", "NUMBER_OUTSIDE_VALID_RANGE"),
        ("FIND {maya} RETURNING Contact(Nope)", "INVALID_FIELD"),
        ("FIND {maya} RETURNING Lead(Id)", "INVALID_TYPE"),
        ("", "MALFORMED_SEARCH"),
    ],
)
def test_sandbox_sosl_errors_look_like_salesforce(box: Sandbox, q: str, code: str) -> None:
    response = box.sosl(q)
    assert response.status_code == 400
    [error] = response.json()
    assert error["errorCode"] == code and error["message"]
