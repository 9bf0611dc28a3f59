"""B2B hierarchy, account pages and customer search over the CRM."""

from __future__ import annotations

import math

import httpx
import pytest

pytestmark = pytest.mark.integration

PAGE = """query($first: Int!, $after: String) { accounts(first: $first, after: $after) {
  edges { cursor node { id name parent { id } children(first: 50) { totalCount edges { node { id } } }
                       contacts(first: 50) { totalCount edges { node { id email } } } } }
  pageInfo { hasNextPage endCursor } } }"""
SEARCH = """query($t: String!, $first: Int!, $after: String) {
  searchCustomers(text: $t, first: $first, after: $after) {
    edges { cursor node { id email sources { system id } } } pageInfo { hasNextPage endCursor } } }"""


def _walk(gql, query, key, **variables):
    nodes, after, pages = [], None, 0
    while True:
        body = gql(query, after=after, **variables)
        assert "errors" not in body, body
        conn = body["data"][key]
        nodes += [e["node"] for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes, pages
        after = conn["pageInfo"]["endCursor"]
        assert pages < 200


def test_account_pages_visit_every_account_once_with_bounded_calls(gql, sandbox_url, answer_key):
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats")
    body = gql(PAGE, first=20, after=None)
    routes = httpx.get(f"{sandbox_url}/_sandbox/stats").json()["routes"]
    # One page of 20 accounts with their parents, children and contacts: one
    # call each (page, children, contacts by SOQL; parents by id), not per account.
    assert routes == {
        "salesforce GET /services/data/{version}/query": 3,
        "salesforce GET /services/data/{version}/composite/sobjects/{sobject}": 1,
    }, routes
    accounts, _ = _walk(gql, PAGE, "accounts", first=20)
    ids = [a["id"] for a in accounts]
    assert len(ids) == len(set(ids))
    orgs = {p["organization"]["salesforce"] for p in answer_key if p["organization"]}
    assert orgs <= set(ids)
    by_id = {a["id"]: a for a in accounts}
    for account in accounts:
        for child in account["children"]["edges"]:
            assert by_id[child["node"]["id"]]["parent"]["id"] == account["id"]
    contacts = {c["node"]["email"] for a in accounts for c in a["contacts"]["edges"]}
    crm_people = [p for p in answer_key if p["organization"] and p["systems"]["salesforce"]]
    assert len(contacts) >= len(crm_people) * 0.9
    assert body["data"]["accounts"]["edges"][0]["node"]["id"] == ids[0]


def test_hierarchy_loop_terminates(gql, answer_key):
    looped = next(
        p["organization"] for p in answer_key if p["organization"] and p["organization"]["in_cycle"]
    )
    body = gql(
        "query($id: ID!) { account(id: $id) { id ancestors { id } parent { id parent { id parent { id } } } } }",
        id=looped["salesforce"],
    )
    account = body["data"]["account"]
    other = account["parent"]["id"]
    assert account["ancestors"] == [{"id": other}]  # stops where the loop closes
    assert account["parent"]["parent"]["id"] == account["id"]


def test_search_pages_visit_every_match_exactly_once(gql, answer_key):
    last = "Garcia"
    expected = {
        p["email"] for p in answer_key if p["name"].endswith(last) and p["systems"]["salesforce"]
    }
    assert expected
    found, pages = _walk(gql, SEARCH, "searchCustomers", t=last, first=3)
    emails = [c["email"] for c in found]
    assert sorted(emails) == sorted(expected)
    assert pages == math.ceil(len(expected) / 3)


def test_every_edge_cursor_resumes_right_after_its_edge(gql, answer_key):
    first_page = gql(SEARCH, t="Garcia", first=5, after=None)["data"]["searchCustomers"]["edges"]
    second = first_page[1]["cursor"]
    resumed = gql(SEARCH, t="Garcia", first=3, after=second)["data"]["searchCustomers"]["edges"]
    assert [e["node"]["id"] for e in resumed] == [e["node"]["id"] for e in first_page[2:5]]


@pytest.mark.parametrize(
    ("after", "text"),
    [("forged.cursor", "Garcia"), ("eyJwIjpudWxsLCJzIjoxfQ.AAAAAAAAAAAAAAAAAAAAAA", "Garcia")],
)
def test_forged_cursor_is_a_clear_error(gql, after, text):
    body = gql(SEARCH, t=text, first=3, after=after)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "cursor" in body["errors"][0]["message"]


def test_cursor_of_another_search_is_refused(gql):
    cursor = gql(SEARCH, t="Garcia", first=1, after=None)["data"]["searchCustomers"]["edges"][0][
        "cursor"
    ]
    body = gql(SEARCH, t="Patel", first=1, after=cursor)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_search_first_is_bounded(gql):
    body = gql(SEARCH, t="Garcia", first=500, after=None)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
