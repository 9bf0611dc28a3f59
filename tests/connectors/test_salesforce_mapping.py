"""Unit tests of the Salesforce mapping, SOQL helpers, options and error policy."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from connectors.salesforce import SalesforceConnector
from connectors.salesforce._soql import (
    Condition,
    Junction,
    SoqlError,
    in_list,
    is_record_id,
    pack,
    parse,
    quote,
)
from connectors.salesforce.mapping import (
    collection_records,
    domain_from_website,
    opportunity_from_record,
    organization_from_account,
    parse_datetime,
    person_from_contact,
    query_records,
)
from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)

INSTANCE = "https://acme.my.salesforce.com"
CONTACT_ID = "003xx000004TmiQAAS"
ACCOUNT_ID = "001xx000003DGb1AAG"


def _contact(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "attributes": {
            "type": "Contact",
            "url": f"/services/data/v61.0/sobjects/Contact/{CONTACT_ID}",
        },
        "Id": CONTACT_ID,
        "FirstName": "Ada",
        "LastName": "Abe",
        "Name": "Ada Abe",
        "Email": " Ada.Abe@Example.COM ",
        "Phone": "+14155550100",
        "Title": "CTO",
        "AccountId": ACCOUNT_ID,
        "LastModifiedDate": "2026-05-01T10:00:00.000+0000",
    }
    record.update(overrides)
    return record


# ------------------------------------------------------------------ mapping
def test_contact_maps_every_field_with_source() -> None:
    person = person_from_contact(_contact(), INSTANCE + "/")
    assert person.id == CONTACT_ID
    assert person.name == "Ada Abe"
    assert (person.first_name, person.last_name) == ("Ada", "Abe")
    assert person.email == "Ada.Abe@Example.COM"  # trimmed, case as stored
    assert (person.phone, person.title, person.organization_id) == (
        "+14155550100",
        "CTO",
        ACCOUNT_ID,
    )
    assert person.source.system == "salesforce"
    assert person.source.updated_at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert person.source.url == f"{INSTANCE}/lightning/r/Contact/{CONTACT_ID}/view"


def test_contact_name_falls_back_to_first_and_last() -> None:
    assert person_from_contact(_contact(Name=None), INSTANCE).name == "Ada Abe"
    assert person_from_contact(_contact(Name=None, FirstName=None), INSTANCE).name == "Abe"


def test_contact_tolerates_missing_and_null_fields() -> None:
    person = person_from_contact({"Id": CONTACT_ID, "Email": None, "Title": None}, INSTANCE)
    assert person.name is None
    assert person.email is None
    assert person.title is None
    assert person.organization_id is None
    assert person.source.updated_at is None
    assert person_from_contact(_contact(Email="   "), INSTANCE).email is None


@pytest.mark.parametrize(
    "body",
    [[_contact()], "003", None, {"Name": "no id"}, {"Id": 3}, _contact(Name={"nested": 1})],
)
def test_contact_of_wrong_shape_is_a_protocol_error(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        person_from_contact(body, INSTANCE)
    assert info.value.source == "salesforce"


def test_account_maps_domain_parent_and_industry() -> None:
    account = {
        "Id": ACCOUNT_ID,
        "Name": "Acme Labs",
        "Industry": "Technology",
        "Website": "https://www.acmelabs.example",
        "ParentId": "001xx000003DGb0AAG",
        "LastModifiedDate": "2025-12-31T23:59:59.999+0000",
    }
    org = organization_from_account(account, INSTANCE)
    assert (org.name, org.industry, org.domain) == ("Acme Labs", "Technology", "acmelabs.example")
    assert org.parent_id == "001xx000003DGb0AAG"
    assert org.source.url == f"{INSTANCE}/lightning/r/Account/{ACCOUNT_ID}/view"
    assert org.source.updated_at == datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    bare = organization_from_account({"Id": ACCOUNT_ID}, INSTANCE)
    assert bare.domain is None
    assert bare.parent_id is None


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("https://www.acme.example", "acme.example"),
        ("http://ACME.example/about?x=1", "acme.example"),
        ("www.acme.example", "acme.example"),
        ("acme.example", "acme.example"),
        ("https://shop.acme.example:8443/", "shop.acme.example"),
        ("", None),
        ("   ", None),
        (None, None),
        ("http://[broken", None),
    ],
)
def test_domain_from_website(website: str | None, domain: str | None) -> None:
    assert domain_from_website(website) == domain


def test_opportunity_maps_amount_and_close_date() -> None:
    record = {
        "Id": "006xx000001a2b3AAA",
        "Name": "Acme - Expansion",
        "StageName": "Closed Won",
        "Amount": 125000,
        "CloseDate": "2026-03-31",
        "AccountId": ACCOUNT_ID,
    }
    opp = opportunity_from_record(record, INSTANCE)
    assert (opp.name, opp.stage, opp.amount) == ("Acme - Expansion", "Closed Won", 125000.0)
    assert opp.close_date == date(2026, 3, 31)
    assert opp.organization_id == ACCOUNT_ID
    assert opp.source.url == f"{INSTANCE}/lightning/r/Opportunity/006xx000001a2b3AAA/view"
    empty = opportunity_from_record(
        {"Id": "006xx000001a2b3AAA", "Amount": None, "CloseDate": "soon"}, INSTANCE
    )
    assert empty.amount is None
    assert empty.close_date is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-05-01T10:00:00.000+0000", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T12:00:00.000+0200", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T10:00:00Z", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T10:00:00", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T10:00:00.123456-0530", datetime(2026, 5, 1, 15, 30, 0, 123456, tzinfo=UTC)),
        ("2026-05-01T10:00:00.5+00:00", datetime(2026, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        # Single-digit fields: only strptime reads these.
        ("2026-5-1T9:5:7.25+0000", datetime(2026, 5, 1, 9, 5, 7, 250000, tzinfo=UTC)),
        ("2026-5-1T9:5:7+0100", datetime(2026, 5, 1, 8, 5, 7, tzinfo=UTC)),
        ("2026-02-30T10:00:00.000+0000", None),
        ("2026-05-01T24:00:00.000+0000", None),
        ("yesterday", None),
        (1_700_000_000, None),
        (None, None),
    ],
)
def test_parse_datetime(raw: Any, expected: datetime | None) -> None:
    assert parse_datetime(raw) == expected


def test_query_and_collection_shapes() -> None:
    assert query_records({"totalSize": 1, "done": True, "records": [_contact()]}) == [_contact()]
    bad: Any
    for bad in ([_contact()], {"totalSize": 0, "done": True}, {"records": {}}, None):
        with pytest.raises(UpstreamProtocolError):
            query_records(bad)
    assert collection_records([_contact(), None], ["a", "b"]) == [_contact(), None]
    for bad in ({"records": []}, [_contact()], None):
        with pytest.raises(UpstreamProtocolError):
            collection_records(bad, ["a", "b"])


# --------------------------------------------------------------------- SOQL
def test_quote_escapes_reserved_characters() -> None:
    assert quote("o'brien@example.com") == "'o\\'brien@example.com'"
    assert quote("back\\slash") == "'back\\\\slash'"
    assert quote("line\nbreak") == "'line\\nbreak'"
    assert in_list(["a", "b'c"]) == "('a', 'b\\'c')"


@pytest.mark.parametrize(
    ("char", "escaped"),
    [
        ("'", "\\'"),
        ('"', '\\"'),
        ("\\", "\\\\"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ("\b", "\\b"),
        ("\f", "\\f"),
    ],
)
def test_quote_escapes_every_reserved_character(char: str, escaped: str) -> None:
    assert quote(f"a{char}b{char}") == f"'a{escaped}b{escaped}'"


def test_quote_leaves_other_text_alone() -> None:
    assert quote("ü ok-._~%+@(x)") == "'ü ok-._~%+@(x)'"


def test_quoted_literals_parse_back_to_the_same_values() -> None:
    values = [
        "o'brien@x.example",
        "a\\b@x.example",
        'dq"@x.example',
        "tab\t@x.example",
        "ü@x.example",
    ]
    query = parse(f"SELECT Id FROM Contact WHERE Email IN {in_list(values)}")
    assert isinstance(query.where, Condition)
    assert [lit.value for lit in query.where.values] == values


def test_parser_reads_the_served_subset() -> None:
    query = parse(
        "select Id, Name from Opportunity where (AccountId = '001xx000003DGb1AAG' or Amount > 10.5)"
        " and CloseDate >= 2026-01-01 order by CloseDate desc, Id limit 5"
    )
    assert [t.value for t in query.fields] == ["Id", "Name"]
    assert query.sobject.value == "Opportunity"
    assert isinstance(query.where, Junction)
    assert query.where.op == "AND"
    assert [(t.value, desc) for t, desc in query.order_by] == [("CloseDate", True), ("Id", False)]
    assert query.limit == 5


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT FROM Contact",
        "SELECT Id Contact",
        "SELECT Id FROM Contact WHERE",
        "SELECT Id FROM Contact WHERE Email = 'open",
        "SELECT Id FROM Contact WHERE Email = 'bad\\q'",
        "SELECT Id FROM Contact WHERE Name = 'a' AND Email = 'b' OR Phone = 'c'",
        "SELECT Id FROM Contact LIMIT many",
        "SELECT Id FROM Contact ;",
    ],
)
def test_parser_refuses_malformed_queries(soql: str) -> None:
    with pytest.raises(SoqlError) as info:
        parse(soql)
    assert info.value.error_code == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:" in info.value.message


def test_pack_respects_count_and_encoded_length() -> None:
    emails = [f"person{i}@example.com" for i in range(250)]
    assert [len(c) for c in pack(emails, 100, 100_000)] == [100, 100, 50]
    chunks = pack(emails, 500, 2_000)
    assert sum(len(c) for c in chunks) == 250
    assert len(chunks) > 1
    assert all(len(quote_plus(in_list(c))) <= 2_000 for c in chunks)


def test_pack_counts_each_literal_as_it_is_url_encoded() -> None:
    # Spaces become "+", unreserved characters stay, anything else (quotes,
    # escapes, "@", non-ASCII bytes) becomes %XX: the chunks fill up to the limit.
    emails = [f"o'brien {i}@exämple.com~_.-\\\t{'x' * (i % 7)}" for i in range(60)]

    def cost(value: str) -> int:
        return len(quote_plus(quote(value))) + len(quote_plus(", "))

    limit = 500
    chunks = pack(emails, 500, limit)
    assert [e for c in chunks for e in c] == emails
    assert len(chunks) > 2
    for chunk, following in itertools.pairwise(chunks):
        used = sum(cost(e) for e in chunk)
        assert used <= limit < used + cost(following[0])
    assert sum(cost(e) for e in chunks[-1]) <= limit


def test_record_id_shape() -> None:
    assert is_record_id(CONTACT_ID)
    assert is_record_id(CONTACT_ID[:15])
    assert not is_record_id("does-not-exist-0")
    assert not is_record_id("003'; DROP")


# ------------------------------------------------------- options and errors
def _settings(**options: Any) -> ConnectorSettings:
    return ConnectorSettings(
        base_url=INSTANCE, credentials={"token": "s3cret-token"}, options=options
    )


@pytest.mark.parametrize(
    "options",
    [
        {"api_version": "latest"},
        {"query_batch_size": 100},
        {"query_batch_size": "lots"},
        {"emails_per_query": 0},
        {"emails_per_query": True},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SalesforceConnector(_settings(**options))


def test_missing_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        SalesforceConnector(ConnectorSettings(base_url=INSTANCE))


Handler = Callable[[httpx.Request], httpx.Response]


def _mock(handler: Handler, **options: Any) -> SalesforceConnector:
    return SalesforceConnector(_settings(**options), transport=httpx.MockTransport(handler))


def _sf_error(status: int, code: str, message: str) -> Handler:
    body = json.dumps([{"message": message, "errorCode": code}])
    return lambda _: httpx.Response(status, content=body)


async def test_auth_repr_hides_the_token() -> None:
    connector = SalesforceConnector(_settings())
    try:
        assert "s3cret" not in repr(connector.auth())
        assert "s3cret" not in repr(connector.http.auth)
    finally:
        await connector.close()


_OAUTH_401 = {"error": "invalid_grant", "error_description": "expired"}
_ERROR_CASES = [
    (_sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid"), UpstreamAuthError),
    (_sf_error(403, "INSUFFICIENT_ACCESS", "no access"), UpstreamAuthError),
    (
        _sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        UpstreamRateLimited,
    ),
    (_sf_error(400, "MALFORMED_QUERY", "unexpected token"), UpstreamBadRequest),
    (_sf_error(404, "NOT_FOUND", "The requested resource does not exist"), UpstreamBadRequest),
    (_sf_error(500, "UNKNOWN_EXCEPTION", "boom"), UpstreamUnavailable),
    (lambda _: httpx.Response(503, text="<html>maintenance</html>"), UpstreamUnavailable),
    (lambda _: httpx.Response(401, json=_OAUTH_401), UpstreamAuthError),
]
_DETAILS = [
    "INVALID_SESSION_ID: Session expired or invalid",
    "INSUFFICIENT_ACCESS: no access",
    "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
    "MALFORMED_QUERY: unexpected token",
    "NOT_FOUND: The requested resource does not exist",
    "UNKNOWN_EXCEPTION: boom",
    "<html>maintenance</html>",
    "invalid_grant: expired",
]


@pytest.mark.parametrize(
    ("handler", "error", "detail"),
    [(h, e, d) for (h, e), d in zip(_ERROR_CASES, _DETAILS, strict=True)],
)
async def test_error_statuses_map_to_sdk_errors(
    handler: Handler, error: type[Exception], detail: str
) -> None:
    connector = _mock(handler)
    try:
        with pytest.raises(error) as info:
            await connector.people_by_email(["a@example.com"])
    finally:
        await connector.close()
    assert getattr(info.value, "vendor_detail", None) == detail
    assert detail not in str(info.value)


async def test_429_carries_retry_after() -> None:
    connector = _mock(lambda _: httpx.Response(429, headers={"Retry-After": "7"}, text="slow down"))
    try:
        with pytest.raises(UpstreamRateLimited) as info:
            await connector.people_by_id([CONTACT_ID])
    finally:
        await connector.close()
    assert info.value.retry_after == 7.0
    assert info.value.retryable


@pytest.mark.parametrize(
    ("body", "method"),
    [
        (b"{not json", "people_by_email"),
        (b'{"records": "nope"}', "people_by_email"),
        (b'{"totalSize": 3, "done": false, "records": []}', "people_by_email"),
        (
            b'{"done": false, "nextRecordsUrl": "https://evil.example/steal", "records": []}',
            "people_by_email",
        ),
        (b'{"records": []}', "people_by_id"),
        (b"[null, null]", "organizations_by_id"),
        (b'[{"Name": "no id"}]', "organizations_by_id"),
        (b'{"done": true, "records": [["not", "a", "record"]]}', "opportunities_of_organizations"),
    ],
)
async def test_unreadable_bodies_are_protocol_errors(body: bytes, method: str) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=body)

    connector = _mock(handler)
    key = "a@example.com" if method == "people_by_email" else ACCOUNT_ID
    try:
        with pytest.raises(UpstreamProtocolError) as info:
            await getattr(connector, method)([key])
    finally:
        await connector.close()
    assert info.value.source == "salesforce"
    assert all(r.url.host == "acme.my.salesforce.com" for r in requests)
