"""Integration tests: the real Salesforce connector against its sandbox on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors.salesforce import SalesforceConnector
from connectors.salesforce._records import Org
from connectors.salesforce.sandbox import create_app
from connectors.sdk import ConnectorSettings, UpstreamAuthError
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState, create_combined_app
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import World, WorldPerson

TOKEN = SANDBOX_CREDENTIALS["salesforce"]["token"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
V = "/services/data/v61.0"
QUERY = "salesforce GET /services/data/{version}/query"
QUERY_MORE = "salesforce GET /services/data/{version}/query/{locator}"
COLLECTION = "salesforce GET /services/data/{version}/composite/sobjects/{sobject}"
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    http: httpx.Client

    @property
    def world(self) -> World:
        return self.state.world

    def people(self, predicate: Callable[[WorldPerson], bool]) -> list[WorldPerson]:
        return [p for p in self.world.people if predicate(p)]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        return self.http.get(f"{self.url}{path}", headers=headers, **kwargs)

    def soql(self, q: str, **kwargs: Any) -> httpx.Response:
        return self.get(f"{V}/query", params={"q": q}, **kwargs)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState(World(customers=200, seed=7))
    with serve_in_thread(create_app(state)) as url, httpx.Client() as http:
        yield Sandbox(url, state, http)


@pytest.fixture(scope="module")
def big_sandbox() -> Iterator[Sandbox]:
    """200 accounts and ~1,550 contacts, mounted under /salesforce as `c360 sandbox` does."""
    state = SandboxState(World(customers=1600, seed=7))
    with serve_in_thread(create_combined_app(state, ["salesforce"])) as url, httpx.Client() as http:
        yield Sandbox(f"{url}/salesforce", state, http)


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    sandbox.state.stats.clear()
    return sandbox


@pytest.fixture
def big(big_sandbox: Sandbox) -> Sandbox:
    big_sandbox.state.stats.clear()
    return big_sandbox


def make(
    url: str, credentials: dict[str, str] | None = None, **options: Any
) -> SalesforceConnector:
    settings = ConnectorSettings(
        base_url=url, credentials=credentials or SANDBOX_CREDENTIALS["salesforce"], options=options
    )
    return SalesforceConnector(settings)


# Not named "connector": that name belongs to the contract kit's plugin fixture,
# which a module-level fixture here would shadow for TestSalesforceContract.
@pytest.fixture
async def sf(box: Sandbox) -> AsyncIterator[SalesforceConnector]:
    connector = make(box.url)
    yield connector
    await connector.close()


def in_crm(p: WorldPerson) -> bool:
    return p.crm_id is not None


# ------------------------------------------------------------ people by email
async def test_email_lookup_maps_contacts(box: Sandbox, sf: SalesforceConnector) -> None:
    people = box.people(in_crm)[:40]
    found = await sf.people_by_email([p.email for p in people])
    assert set(found) == {p.email for p in people}
    for p in people:
        [person] = found[p.email]
        org = box.world.orgs[p.org].crm_id if p.org is not None else None
        assert person.id == p.crm_id
        assert (person.name, person.first_name, person.last_name) == (
            p.name,
            p.first_name,
            p.last_name,
        )
        assert (person.phone, person.title, person.organization_id) == (p.crm_phone, p.title, org)
        assert person.source.updated_at == p.crm_updated
        assert person.source.url == f"{box.url}/lightning/r/Contact/{p.crm_id}/view"


async def test_messy_stored_emails_are_keyed_normalized(
    box: Sandbox, sf: SalesforceConnector
) -> None:
    case = box.people(lambda p: "email_case:salesforce" in p.anomalies)
    space = box.people(lambda p: "email_whitespace:salesforce" in p.anomalies)
    assert case, "seed 7 has case-mangled Salesforce emails"
    assert space, "seed 7 has space-padded Salesforce emails"
    found = await sf.people_by_email([p.email for p in case + space])
    assert set(found) == {p.email for p in case + space}
    for p in case:
        assert found[p.email][0].id == p.crm_id
        assert found[p.email][0].email != p.email  # the stored case is kept on the record
    # Keys that arrive un-normalized are normalized too.
    again = await sf.people_by_email([f"  {case[0].email.upper()} "])
    assert list(again) == [case[0].email]


async def test_missing_and_unknown_emails_are_absent(box: Sandbox, sf: SalesforceConnector) -> None:
    missing = box.people(lambda p: "missing:salesforce" in p.anomalies)
    assert missing
    present = box.people(in_crm)[0]
    odd = [
        "nobody@nowhere.example",
        "o'brien@quote.example",
        "back\\slash@x.example",
        "not-an-email",
    ]
    found = await sf.people_by_email([*(p.email for p in missing), *odd, present.email])
    assert list(found) == [present.email]
    box.state.stats.clear()
    assert await sf.people_by_email([]) == {}
    assert box.state.stats.total() == 0


@pytest.mark.parametrize("count", [50, 200])
async def test_email_batches_are_bounded(box: Sandbox, sf: SalesforceConnector, count: int) -> None:
    emails = [p.email for p in box.world.people[:count]]
    await sf.people_by_email(emails)
    assert box.state.stats[QUERY] == math.ceil(count / SalesforceConnector.email_batch_size)
    assert set(box.state.stats) == {QUERY}


# ---------------------------------------------------------------- reads by id
async def test_people_by_id(box: Sandbox, sf: SalesforceConnector) -> None:
    people = box.people(in_crm)[:10]
    ids = [str(p.crm_id) for p in people]
    short = ids[0][:15]
    found = await sf.people_by_id([*ids, short, "003000000000000AAA", "does-not-exist-0"])
    assert set(found) == {*ids, short}
    assert found[short].id == ids[0]
    for p in people:
        assert found[str(p.crm_id)].email is not None
        assert found[str(p.crm_id)].name == p.name
    assert box.state.stats[COLLECTION] == 1


async def test_ids_are_chunked_at_200(box: Sandbox, sf: SalesforceConnector) -> None:
    ids = [str(p.crm_id) for p in box.people(in_crm)]
    fake = [f"003{n:015d}" for n in range(450 - len(ids))]
    found = await sf.people_by_id([*ids, *fake])
    assert set(found) == set(ids)
    assert box.state.stats[COLLECTION] == math.ceil(450 / 200)


async def test_organizations_by_id(box: Sandbox, sf: SalesforceConnector) -> None:
    orgs = box.world.orgs
    found = await sf.organizations_by_id([o.crm_id for o in orgs] + ["001000000000000AAA"])
    assert set(found) == {o.crm_id for o in orgs}
    for o in orgs:
        got = found[o.crm_id]
        assert (got.name, got.industry, got.domain) == (o.name, o.industry, o.domain)
        assert got.parent_id == (orgs[o.parent].crm_id if o.parent is not None else None)
        assert got.source.updated_at == o.updated_at
        assert got.source.url == f"{box.url}/lightning/r/Account/{o.crm_id}/view"
    assert any(o.parent is not None for o in orgs)
    assert box.state.stats[COLLECTION] == 1


async def test_opportunities_of_organizations(box: Sandbox, sf: SalesforceConnector) -> None:
    expected: dict[str, list[str]] = {}
    for row in Org(World(customers=200, seed=7)).rows["Opportunity"]:
        expected.setdefault(row["AccountId"], []).append(row["Id"])
    org_ids = [o.crm_id for o in box.world.orgs]
    with_opps = next(k for k in org_ids if k in expected)
    found = dict(await sf.opportunities_of_organizations([*org_ids, with_opps[:15]]))
    assert box.state.stats[QUERY] == 1
    assert found[with_opps[:15]] == found[with_opps]
    del found[with_opps[:15]]
    assert {k: sorted(o.id for o in v) for k, v in found.items()} == {
        k: sorted(v) for k, v in expected.items()
    }
    for opps in found.values():
        assert all(o.id.startswith("006") and o.stage for o in opps)
        dates = [o.close_date for o in opps if o.close_date is not None]
        assert dates == sorted(dates, reverse=True)


async def test_bad_credentials_raise_auth_error(box: Sandbox) -> None:
    other = make(box.url, credentials={"token": "wrong"})
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await other.people_by_email(["someone@example.com"])
        assert info.value.vendor_detail == "INVALID_SESSION_ID: Session expired or invalid"
        with pytest.raises(UpstreamAuthError):
            await other.people_by_id(["003000000000000AAA"])
    finally:
        await other.close()


# ----------------------------------------------------- pagination (mounted)
async def test_email_lookup_follows_next_records_url(big: Sandbox) -> None:
    people = big.people(in_crm)[:220]
    other = make(big.url, query_batch_size=200, emails_per_query=250)
    try:
        found = await other.people_by_email([p.email for p in people])
    finally:
        await other.close()
    assert set(found) == {p.email for p in people}
    assert (big.state.stats[QUERY], big.state.stats[QUERY_MORE]) == (1, 1)


async def test_opportunities_follow_next_records_url(big: Sandbox) -> None:
    total = big.soql("SELECT Id FROM Opportunity").json()["totalSize"]
    assert total > 200
    big.state.stats.clear()
    other = make(big.url, query_batch_size=200)
    try:
        found = await other.opportunities_of_organizations([o.crm_id for o in big.world.orgs])
    finally:
        await other.close()
    assert sum(len(v) for v in found.values()) == total
    assert big.state.stats[QUERY] == 1
    assert big.state.stats[QUERY_MORE] == math.ceil(total / 200) - 1


def test_raw_query_pages_and_locators(big: Sandbox) -> None:
    first = big.soql("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=500"})
    body = first.json()
    contacts = len(big.people(in_crm))
    assert (body["totalSize"], body["done"], len(body["records"])) == (contacts, False, 500)
    assert body["nextRecordsUrl"].startswith(f"{V}/query/01g")  # path-only, no mount prefix
    ids = [r["Id"] for r in body["records"]]
    while not body["done"]:
        body = big.get(body["nextRecordsUrl"]).json()
        ids += [r["Id"] for r in body["records"]]
    assert len(ids) == len(set(ids)) == contacts
    clamped = big.soql("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=5"})
    assert len(clamped.json()["records"]) == 200
    assert len(big.soql("SELECT Id FROM Contact").json()["records"]) == min(2000, contacts)
    bad = big.get(f"{V}/query/01gNOPE-200")
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


# ------------------------------------------------------------ raw HTTP shapes
def test_query_path_variants_and_field_selection(box: Sandbox) -> None:
    p = box.people(in_crm)[0]
    q = f"select id, EMAIL from contact where Email = '{p.email.upper()}'"
    bodies = [box.get(path, params={"q": q}).json() for path in (f"{V}/query", f"{V}/query/")]
    assert bodies[0] == bodies[1]
    [record] = bodies[0]["records"]
    assert record == {
        "attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{p.crm_id}"},
        "Id": p.crm_id,
        "Email": p.crm_email,
    }
    older = box.get("/services/data/v58.0/query", params={"q": q}).json()
    assert (
        older["records"][0]["attributes"]["url"]
        == f"/services/data/v58.0/sobjects/Contact/{p.crm_id}"
    )


def test_emails_match_trimmed_and_case_insensitively(box: Sandbox) -> None:
    spaced = box.people(lambda p: "email_whitespace:salesforce" in p.anomalies)[0]
    assert spaced.crm_email != spaced.email
    body = box.soql(f"SELECT Id, Email FROM Contact WHERE Email IN ('{spaced.email}')").json()
    assert [r["Email"] for r in body["records"]] == [spaced.crm_email]


def test_order_by_and_limit(box: Sandbox) -> None:
    body = box.soql("SELECT Name FROM Account ORDER BY Name DESC LIMIT 3").json()
    names = sorted((o.name for o in box.world.orgs), key=str.lower, reverse=True)[:3]
    assert [r["Name"] for r in body["records"]] == names
    assert (body["totalSize"], body["done"]) == (3, True)


@pytest.mark.parametrize(
    ("q", "code"),
    [
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'unterminated", "MALFORMED_QUERY"),
        ("DELETE FROM Contact", "MALFORMED_QUERY"),
        ("", "MALFORMED_QUERY"),
        ("SELECT Nickname FROM Contact", "INVALID_FIELD"),
        ("SELECT Account.Name FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE Amount = '100'", "INVALID_FIELD"),
        ("SELECT Id FROM Lead", "INVALID_TYPE"),
        ("SELECT Id FROM Contact WHERE AccountId = 'nope'", "INVALID_QUERY_FILTER_OPERATOR"),
    ],
)
def test_bad_queries_get_salesforce_400s(box: Sandbox, q: str, code: str) -> None:
    response = box.soql(q)
    assert response.status_code == 400
    [error] = response.json()
    assert error["errorCode"] == code
    assert error["message"]


def test_auth_versions_and_unknown_paths(box: Sandbox) -> None:
    q = {"q": "SELECT Id FROM Account LIMIT 1"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = box.http.get(f"{box.url}{V}/query", params=q, headers=headers)
        assert response.status_code == 401
        assert response.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
        assert response.headers["sforce-limit-info"].startswith("api-usage=")
    oauth = box.http.get(
        f"{box.url}{V}/query", params=q, headers={"Authorization": f"OAuth {TOKEN}"}
    )
    assert oauth.status_code == 200
    for path in ("/services/data/61.0/query", "/services/data/latest/query", f"{V}/nothing-here"):
        response = box.get(path, params=q)
        assert (response.status_code, response.json()) == (404, NOT_FOUND)
    versions = box.http.get(f"{box.url}/services/data").json()
    assert {"label": "Summer '24", "url": V, "version": "61.0"} in versions
    deleted = box.http.delete(f"{box.url}{V}/sobjects/Contact/003000000000000AAA", headers=AUTH)
    assert deleted.status_code == 405
    assert deleted.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_usage_header_counts_requests(box: Sandbox) -> None:
    def used() -> int:
        header = box.soql("SELECT Id FROM Account LIMIT 1").headers["sforce-limit-info"]
        count, limit = header.removeprefix("api-usage=").split("/")
        assert limit == "15000"
        return int(count)

    assert used() + 1 == used()


def test_collection_get_and_post(box: Sandbox) -> None:
    p = box.people(in_crm)[0]
    path = f"{V}/composite/sobjects/Contact"
    ids = f"{p.crm_id},003000000000000AAA,garbage"
    body = box.get(path, params={"ids": ids, "fields": "Id,email"}).json()
    assert body[1:] == [None, None]
    assert body[0] == {
        "attributes": {"type": "Contact", "url": f"{V}/sobjects/Contact/{p.crm_id}"},
        "Id": p.crm_id,
        "Email": p.crm_email,
    }
    many = [f"003{n:015d}" for n in range(2001)]
    too_many = box.get(path, params={"ids": ",".join(many[:801]), "fields": "Id"})
    assert (too_many.status_code, too_many.json()[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    posted = box.http.post(
        f"{box.url}{path}", headers=AUTH, json={"ids": [p.crm_id, *many[:899]], "fields": ["Name"]}
    )
    assert posted.status_code == 200
    assert posted.json()[0]["Name"] == p.name
    assert posted.json()[1:] == [None] * 899
    posted = box.http.post(f"{box.url}{path}", headers=AUTH, json={"ids": many, "fields": ["Id"]})
    assert (posted.status_code, posted.json()[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    garbled = box.http.post(f"{box.url}{path}", headers=AUTH, content=b"{ids:")
    assert (garbled.status_code, garbled.json()[0]["errorCode"]) == (400, "JSON_PARSER_ERROR")
    for params, code in (
        ({"ids": str(p.crm_id)}, "MISSING_ARGUMENT"),
        ({"ids": str(p.crm_id), "fields": "Id,Nickname"}, "INVALID_FIELD"),
    ):
        response = box.get(path, params=params)
        assert (response.status_code, response.json()[0]["errorCode"]) == (400, code)
    unknown_type = box.get(
        f"{V}/composite/sobjects/Lead", params={"ids": str(p.crm_id), "fields": "Id"}
    )
    assert (unknown_type.status_code, unknown_type.json()) == (404, NOT_FOUND)


def test_single_record_read(box: Sandbox) -> None:
    org = box.world.orgs[0]
    full = box.get(f"{V}/sobjects/Account/{org.crm_id}").json()
    assert full["Website"] == f"https://www.{org.domain}"
    assert full["LastModifiedDate"].endswith("+0000")
    assert set(full) == {
        "attributes",
        "Id",
        "Name",
        "Industry",
        "Website",
        "ParentId",
        "LastModifiedDate",
    }
    some = box.get(f"{V}/sobjects/account/{org.crm_id[:15]}", params={"fields": "Name"}).json()
    assert some == {
        "attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{org.crm_id}"},
        "Name": org.name,
    }
    missing = box.get(f"{V}/sobjects/Account/001000000000000AAA")
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)
