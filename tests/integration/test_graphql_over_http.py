"""GraphQL over HTTP as clients expect it, against the gateway as a real server.

A real client library, used as its documentation says (gql with its httpx
transport), sees what the GraphQL-over-HTTP draft says it should: data, a
partial list with an error at the bad item's index, and coded request
errors -- with 200 for a client that accepts only ``application/json`` and
400 for one that prefers ``application/graphql-response+json``. Raw HTTP
covers what no client library would send: malformed bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport
from graphql import (
    DocumentNode,
    FieldNode,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)

pytestmark = pytest.mark.integration

GRAPHQL_RESPONSE = "application/graphql-response+json"
SPEC_ACCEPT = f"{GRAPHQL_RESPONSE}, application/json;q=0.9"
CUSTOMERS = "query($e: [String!]) { customers(emails: $e) { id email name } }"


@pytest.fixture(scope="module")
def token(issuer: Any) -> str:
    token: str = issuer.mint_token("admin", mfa=True)
    return token


@pytest.fixture(scope="module")
def url(gateway_url: str) -> str:
    return f"{gateway_url}/graphql"


class Seen:
    """What the client's HTTP exchange looked like (gql does not say)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.media: str | None = None

    def __call__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.media = response.headers.get("content-type")


@pytest.fixture(params=["legacy", "spec"])
def client(request: pytest.FixtureRequest, url: str, token: str) -> Iterator[tuple[Client, Seen]]:
    """gql as its README shows it; "spec" also asks for the GraphQL response media type."""
    headers = {"authorization": f"Bearer {token}"}
    if request.param == "spec":
        headers["accept"] = SPEC_ACCEPT
    seen = Seen()
    transport = HTTPXTransport(url=url, headers=headers, event_hooks={"response": [seen]})
    with Client(transport=transport) as session:
        yield session, seen  # type: ignore[misc]


def _spec(seen: Seen) -> bool:
    return seen.media is not None and seen.media.startswith(GRAPHQL_RESPONSE)


def test_gql_gets_data(client, answer_key):
    session, seen = client
    person = answer_key[0]
    query = gql("query($e: String!) { customer(email: $e) { email name } }")
    query.variable_values = {"e": person["email"]}
    data = session.execute(query)
    assert data == {"customer": {"email": person["email"], "name": person["name"]}}
    assert seen.status == 200


def test_gql_gets_the_good_items_of_a_list_and_an_error_at_the_bad_one(client, answer_key):
    session, seen = client
    first, second = answer_key[0], answer_key[1]
    emails = [first["email"], "not-an-email", second["email"]]
    with pytest.raises(TransportQueryError) as caught:
        session.execute(GraphQLRequest(CUSTOMERS, variable_values={"e": emails}))
    assert seen.status == 200  # partial data is a success, whatever the media type
    customers = caught.value.data["customers"]
    assert [c and (c["email"], c["name"]) for c in customers] == [
        (first["email"], first["name"]),
        None,
        (second["email"], second["name"]),
    ]
    [error] = caught.value.errors
    assert error["path"] == ["customers", 1]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "emails"


def _unparsable() -> GraphQLRequest:
    # gql parses what it is given and would refuse to send a syntax error; a
    # document built as a tree is sent as printed: `{ customer( }`.
    field = FieldNode(name=NameNode(value="customer("), arguments=(), directives=())
    operation = OperationDefinitionNode(
        operation=OperationType.QUERY,
        variable_definitions=(),
        directives=(),
        selection_set=SelectionSetNode(selections=(field,)),
    )
    return GraphQLRequest(DocumentNode(definitions=(operation,)))


@pytest.mark.parametrize(
    ("request_of", "code"),
    [
        (_unparsable, "GRAPHQL_PARSE_FAILED"),
        (lambda: gql('{ customer(email: "a@b.example") { nope } }'), "GRAPHQL_VALIDATION_FAILED"),
        (lambda: gql('{ customer(mail: "a@b.example") { id } }'), "GRAPHQL_VALIDATION_FAILED"),
    ],
    ids=["syntax", "unknown-field", "unknown-argument"],
)
def test_gql_gets_coded_request_errors_and_no_data(client, request_of, code):
    session, seen = client
    with pytest.raises(TransportQueryError) as caught:
        session.execute(request_of())
    assert caught.value.data is None
    assert [e["extensions"]["code"] for e in caught.value.errors] == [code]
    if _spec(seen):
        assert seen.status == 400
    else:
        assert seen.status == 200
        assert seen.media is not None and seen.media.startswith("application/json")


def test_gql_runs_the_named_operation_and_refuses_to_guess(client):
    session, _ = client
    document = "query A { a: __typename } query B { b: __typename }"
    assert session.execute(GraphQLRequest(document, operation_name="B")) == {"b": "Query"}
    with pytest.raises(TransportQueryError) as caught:
        session.execute(gql(document))
    assert caught.value.data is None  # neither ran
    [error] = caught.value.errors
    assert error["extensions"] == {"code": "OPERATION_NAME_REQUIRED", "operations": ["A", "B"]}


# -- raw HTTP: what the spec asks of status codes and media types -------------


def _post(url: str, token: str, body: Any, *, accept: str | None = None, raw: bool = False):
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if accept is not None:
        headers["accept"] = accept
    content = body if raw else json.dumps(body).encode()
    return httpx.post(url, content=content, headers=headers, timeout=30)


REQUEST_ERRORS = [
    ({"query": "{ customer("}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    ({"query": '{ customer(emial: "a@b.example") { id } }'}, "GRAPHQL_VALIDATION_FAILED"),
    (
        {"query": "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"},
        "GRAPHQL_VALIDATION_FAILED",
    ),
    ({"query": "{ customer(email: 5) { id } }"}, "GRAPHQL_VALIDATION_FAILED"),
    ({"query": "{ __schema { types { name } } }"}, "INTROSPECTION_DISABLED"),
    (
        {"query": "query($n: Int!) { accounts(first: $n) { edges { cursor } } }",
         "variables": {"n": "ten"}},
        "BAD_USER_INPUT",
    ),
    (
        {"query": "query($n: Int!) { accounts(first: $n) { edges { cursor } } }"},
        "BAD_USER_INPUT",
    ),
    ({"query": "query A { __typename } query B { __typename }"}, "OPERATION_NAME_REQUIRED"),
    ({"query": "{ a: __typename } { b: __typename }"}, "OPERATION_NAME_REQUIRED"),
    (
        {"query": "query A { __typename }", "operationName": "C"},
        "OPERATION_NOT_FOUND",
    ),
    ({"query": "fragment F on Query { __typename }"}, "OPERATION_NOT_FOUND"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
@pytest.mark.parametrize("accept", [None, "*/*", "application/json", SPEC_ACCEPT])
def test_request_errors_are_coded_without_data(url, token, body, code, accept):
    response = _post(url, token, body, accept=accept)
    spec = accept == SPEC_ACCEPT
    assert response.status_code == (400 if spec else 200), response.text
    media = GRAPHQL_RESPONSE if spec else "application/json"
    assert response.headers["content-type"].startswith(media)
    answer = response.json()
    assert "data" not in answer, answer
    assert [e["extensions"]["code"] for e in answer["errors"]] == [code], answer


def test_validation_aborted_keeps_every_error_coded(url, token):
    fields = " ".join(f"f{i}" for i in range(150))
    answer = _post(url, token, {"query": f"{{ {fields} }}"}).json()
    assert answer["errors"][-1]["message"].endswith("Validation aborted.")
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"GRAPHQL_VALIDATION_FAILED"}


def test_every_error_of_a_partial_answer_is_coded_and_data_is_200(url, token, answer_key):
    body = {
        "query": CUSTOMERS + " query Other { __typename }",
        "variables": {"e": [answer_key[0]["email"], "bad", "also bad"]},
        "operationName": None,
    }
    # Two operations, none named: refused, not the first one run.
    assert "data" not in _post(url, token, body).json()
    body["query"] = CUSTOMERS
    response = _post(url, token, body, accept=SPEC_ACCEPT)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    answer = response.json()
    assert answer["data"]["customers"][0]["email"] == answer_key[0]["email"]
    assert answer["data"]["customers"][1:] == [None, None]
    assert [(e["path"], e["extensions"]["code"]) for e in answer["errors"]] == [
        (["customers", 1], "BAD_USER_INPUT"),
        (["customers", 2], "BAD_USER_INPUT"),
    ]


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        ("application/json, application/graphql-response+json", "application/json"),
        ("application/json;q=0.5, application/graphql-response+json", GRAPHQL_RESPONSE),
        ("application/json;q=0, */*", GRAPHQL_RESPONSE),
        ("text/html, */*;q=0.1", "application/json"),
    ],
)
def test_the_answer_comes_in_the_media_type_the_client_prefers(url, token, accept, media):
    response = _post(url, token, {"query": "{ __typename }"}, accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml, text/plain", "application/json;q=0"]
)
def test_a_client_that_accepts_no_json_gets_406(url, token, accept):
    response = _post(url, token, {"query": "{ __typename }"}, accept=accept)
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


def _nested(levels: int) -> bytes:
    """A body nesting ``levels`` deep: itself, its variables, then arrays."""
    arrays = levels - 2
    return (
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * arrays + b"]" * arrays + b"}}"
    )


MALFORMED = [
    (b"5", "JSON object"),
    (b"true", "JSON object"),
    (b'"x"', "JSON object"),
    (b"null", "JSON object"),
    (b"", "not valid JSON"),
    (b'{"query":', "not valid JSON"),
    (b"NONSENSE", "not valid JSON"),
    (b'[{"query": "{ __typename }"}]', "batched requests are not supported"),
    (b"[]", "batched requests are not supported"),
    (b'{"qeury": "{ __typename }"}', "no query"),
    (b'{"query": ""}', "no query"),
    (b'{"query": null}', "no query"),
    (b'{"query": 5}', "query must be a string"),
    (b'{"query": {"a": 1}}', "query must be a string"),
    (b'{"query": "{ __typename }", "variables": [7]}', "variables must be an object"),
    (b'{"query": "{ __typename }", "variables": "{}"}', "variables must be an object"),
    (b'{"query": "{ __typename }", "operationName": 5}', "operationName must be a string"),
    (b'{"query": "{ __typename }", "extensions": "x"}', "extensions must be an object"),
    (b'{"query": "{ __typename }", "variables": {"a": NaN}}', "NaN is not a JSON value"),
    (b'{"query": "{ __typename }", "variables": {"a": -Infinity}}', "Infinity is not a JSON"),
    (b'{"query": "{ __typename }", "variables": {"a": ' + b"9" * 5000 + b"}}", "number too long"),
    (b'{"query": "\xff{ __typename }"}', "not UTF-8"),
    (b'{"query": "{ __typename }", "variables": {"a": "\\ud800"}}', "lone UTF-16 surrogate"),
    (b'{"query": "{ __typename }", "variables": {"a": "\\uDFFF\\uD800"}}', "lone UTF-16 surrogate"),
    ('{"query": "{ __typename }"}'.encode("utf-16"), "not UTF-8"),
    (_nested(33), "deeper than 32 levels"),
    (_nested(30_000), "deeper than 32 levels"),
    (b'{"query": "{ __typename }", "extensions": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}", "deeper"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "says"), MALFORMED, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("accept", [None, SPEC_ACCEPT])
def test_a_malformed_body_is_400_with_a_coded_json_error(url, token, body, says, accept):
    response = _post(url, token, body, accept=accept, raw=True)
    assert response.status_code == 400, response.text
    # Not a GraphQL response: never in the GraphQL response media type.
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert says in error["message"], error["message"]
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    "body",
    [
        _nested(32),
        b'{"query": "{ __typename }", "variables": {"a": "\\ud83d\\ude00 \\u00e9"}}',
        b'\xef\xbb\xbf{"query": "{ __typename }"}',
        b'{"query": "{ __typename }", "variables": null, "operationName": null, "extensions": null}',
        b'{"query": "{ __typename }", "unknown": [1, 2], "extensions": {"persistedQuery": {}}}',
        '{"query": "{ __typename }", "variables": {"a": "Run\U0001f3c3Swim"}}'.encode(),
    ],
    ids=["32-deep", "surrogate-pair", "bom", "nulls", "extra-keys", "utf-8"],
)
def test_well_formed_bodies_at_the_edges_are_answered(url, token, body):
    response = _post(url, token, body, raw=True)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-16", "application/json; charset=latin-1", "text/plain", ""],
)
def test_only_utf8_json_is_taken(url, token, content_type):
    response = httpx.post(
        url,
        content=json.dumps({"query": "{ __typename }"}).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": content_type},
    )
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
def test_a_utf8_charset_is_fine(url, token, charset):
    response = httpx.post(
        url,
        content=json.dumps({"query": "{ __typename }"}).encode(),
        headers={
            "authorization": f"Bearer {token}",
            "content-type": f"application/json; charset={charset}",
        },
    )
    assert response.status_code == 200
