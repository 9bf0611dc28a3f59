"""Unit tests of the Zendesk mapping and error policy (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from connectors.zendesk import ZendeskConnector
from connectors.zendesk.connector import ZendeskErrorPolicy
from connectors.zendesk.mapping import (
    items_of,
    next_page_of,
    parse_time,
    person_from_user,
    search_count,
    search_results,
    ticket_from_json,
)

BASE = "https://acme.zendesk.com"
CREDENTIALS = {"email": "agent@acme.example", "token": "s3cret-token"}


def test_person_from_a_full_user() -> None:
    user = {
        "id": 360000000003,
        "name": "Sofia Xu",
        "email": "sofia.xu.0@mail.example",
        "phone": "+14155550000",
        "external_id": "003AbCdEfGhIjKlMn",
        "role": "end-user",
        "organization_id": 77,
        "updated_at": "2026-05-01T10:00:00Z",
    }
    person = person_from_user(user, base_url=BASE + "/")
    assert person.id == "360000000003"
    assert person.source.system == "zendesk"
    assert person.source.url == f"{BASE}/agent/users/360000000003"
    assert person.source.updated_at == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert (person.name, person.email, person.phone) == (
        "Sofia Xu",
        "sofia.xu.0@mail.example",
        "+14155550000",
    )
    assert person.links == {"salesforce": "003AbCdEfGhIjKlMn"}


def test_person_tolerates_missing_and_null_fields() -> None:
    person = person_from_user(
        {"id": 5, "name": None, "email": None, "external_id": "", "phone": 12}, base_url=BASE
    )
    assert person.id == "5"
    assert (person.name, person.email, person.source.updated_at) == (None, None, None)
    assert person.phone == "12"
    assert person.links == {}


def test_person_email_is_normalized_whatever_zendesk_stored() -> None:
    person = person_from_user({"id": 1, "email": "  Jane.Doe@Example.COM "}, base_url=BASE)
    assert person.email == "jane.doe@example.com"


def test_ticket_mapping() -> None:
    ticket = ticket_from_json(
        {
            "id": 31,
            "subject": "Cannot log in",
            "status": "pending",
            "priority": "high",
            "requester_id": 360000000003,
            "created_at": "2026-04-20T16:27:59Z",
            "updated_at": "2026-04-21T08:00:00+02:00",
        },
        base_url=BASE,
    )
    assert ticket.id == "31"
    assert ticket.requester_id == "360000000003"
    assert (ticket.subject, ticket.status, ticket.priority) == ("Cannot log in", "pending", "high")
    assert ticket.created_at == datetime(2026, 4, 20, 16, 27, 59, tzinfo=UTC)
    assert ticket.updated_at == datetime(2026, 4, 21, 6, tzinfo=UTC)
    assert ticket.source.updated_at == ticket.updated_at
    assert ticket.source.url == f"{BASE}/agent/tickets/31"


def test_minimal_ticket() -> None:
    ticket = ticket_from_json({"id": "9"}, base_url=BASE)
    assert (ticket.id, ticket.requester_id, ticket.subject, ticket.created_at) == (
        "9",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-05-01T10:00:00Z", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T12:00:00+02:00", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T10:00:00", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1714557600, None),
    ],
)
def test_parse_time(raw: Any, expected: datetime | None) -> None:
    assert parse_time(raw) == expected


def test_search_results_keep_only_the_asked_type() -> None:
    body = {
        "results": [
            {"id": 1, "result_type": "user"},
            {"id": 2, "result_type": "ticket"},
            {"id": 3, "result_type": "organization"},
        ],
        "count": 3,
        "next_page": None,
    }
    assert [r["id"] for r in search_results(body, "user")] == [1]
    assert [r["id"] for r in search_results(body, "ticket")] == [2]
    assert search_count(body) == 3
    assert next_page_of(body) is None
    assert next_page_of({"next_page": f"{BASE}/api/v2/search.json?page=2"}) is not None
    assert search_count({"count": "many"}) == 0
    assert items_of({"users": None}, "users") == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: person_from_user(["not", "a", "user"], base_url=BASE),
        lambda: person_from_user({"name": "No Id"}, base_url=BASE),
        lambda: person_from_user({"id": True}, base_url=BASE),
        lambda: ticket_from_json("ticket", base_url=BASE),
        lambda: ticket_from_json({"id": None}, base_url=BASE),
        lambda: items_of([{"id": 1}], "users"),
        lambda: items_of({"users": {"id": 1}}, "users"),
        lambda: items_of({"users": [1, 2]}, "users"),
        lambda: search_results("<html>", "user"),
        lambda: next_page_of([]),
    ],
)
def test_wrong_shapes_raise_protocol_errors(call: Any) -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        call()
    assert info.value.source == "zendesk"


# ----------------------------------------------------------------- error policy
def _response(status: int, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"error": "RecordNotFound", "description": "Not found"}, "RecordNotFound: Not found"),
        ({"error": "Couldn't authenticate you"}, "Couldn't authenticate you"),
        ({"error": {"title": "Forbidden", "message": "No access"}}, "Forbidden: No access"),
        (
            {"errors": [{"code": "TooManyValues", "title": "Too many", "detail": "max 100"}]},
            "TooManyValues: Too many: max 100",
        ),
        (
            {"error": "RecordInvalid", "description": "Bad", "details": {"email": ["taken"]}},
            'RecordInvalid: Bad: {"email": ["taken"]}',
        ),
        (b"<html>Bad gateway</html>", "<html>Bad gateway</html>"),
        ([1, 2], "[1, 2]"),
    ],
)
def test_vendor_detail_reads_zendesk_error_bodies(body: Any, detail: str) -> None:
    assert ZendeskErrorPolicy("zendesk").vendor_detail(_response(400, body)) == detail


def _connector(handler: Any, **options: Any) -> ZendeskConnector:
    settings = ConnectorSettings(base_url=BASE, credentials=CREDENTIALS, options=options)
    return ZendeskConnector(settings, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (401, {"error": "Couldn't authenticate you"}, {}, UpstreamAuthError),
        (403, {"error": {"title": "Forbidden", "message": "x"}}, {}, UpstreamAuthError),
        (404, {"error": "RecordNotFound", "description": "Not found"}, {}, UpstreamBadRequest),
        (422, {"error": "InvalidPaginationParameter"}, {}, UpstreamBadRequest),
        (429, {"error": "TooManyRequests"}, {"Retry-After": "7"}, UpstreamRateLimited),
        (500, {"error": "InternalError"}, {}, UpstreamUnavailable),
        (503, b"maintenance", {}, UpstreamUnavailable),
    ],
)
async def test_http_errors_become_sdk_errors(
    status: int, body: Any, headers: dict[str, str], error: type[UpstreamError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        response = _response(status, body)
        response.headers.update(headers)
        return response

    connector = _connector(handler)
    try:
        with pytest.raises(error) as info:
            await connector.requesters_by_email(["jane@example.com"])
    finally:
        await connector.close()
    assert info.value.status == status
    # The vendor's words stay in logs, never in the client-facing message.
    assert "authenticate" not in str(info.value)
    if status == 429:
        assert isinstance(info.value, UpstreamRateLimited)
        assert info.value.retry_after == 7.0
        assert info.value.retryable


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("requesters_by_email", b"{not json"),
        ("requesters_by_email", [{"id": 1}]),
        ("requesters_by_email", {"results": {"id": 1}}),
        ("requesters_by_id", {"users": [{"name": "no id"}]}),
        ("tickets_of_requesters", {"results": ["ticket"]}),
    ],
)
async def test_unreadable_bodies_become_protocol_errors(method: str, body: Any) -> None:
    connector = _connector(lambda request: _response(200, body))
    try:
        with pytest.raises(UpstreamProtocolError):
            await getattr(connector, method)(
                ["1"] if method != "requesters_by_email" else ["a@b.c"]
            )
    finally:
        await connector.close()


async def test_next_page_to_another_host_is_refused() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return _response(
            200,
            {
                "results": [],
                "count": 200,
                "next_page": "https://evil.example/api/v2/search.json?page=2",
            },
        )

    connector = _connector(handler)
    try:
        with pytest.raises(UpstreamProtocolError):
            await connector.requesters_by_email(["a@b.c"])
    finally:
        await connector.close()
    assert hosts == ["acme.zendesk.com"]


@pytest.mark.parametrize(
    ("link", "followed"),
    [
        (f"{BASE}/api/v2/search.json?page=2", True),
        (f"{BASE}/api/v2/../v2/search.json?page=2", True),
        ("https://ACME.zendesk.com:443/api/v2/search.json?page=2", True),
        ("http://acme.zendesk.com/api/v2/search.json?page=2", False),
        ("https://acme.zendesk.com:8443/api/v2/search.json?page=2", False),
        ("https://acme.zendesk.com.evil.example/api/v2/search.json", False),
        ("https://acme.zendesk.com@evil.example/api/v2/search.json", False),
        ("https://evil.example/?next=https://acme.zendesk.com/", False),
    ],
)
async def test_next_page_is_followed_only_back_to_the_same_zendesk(
    link: str, followed: bool
) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        first = len(sent) == 1
        return _response(200, {"results": [], "count": 200, "next_page": link if first else None})

    connector = _connector(handler)
    try:
        if followed:
            assert await connector.requesters_by_email(["a@b.c"]) == {}
        else:
            with pytest.raises(UpstreamProtocolError, match="outside the configured base URL"):
                await connector.requesters_by_email(["a@b.c"])
    finally:
        await connector.close()
    assert len(sent) == (2 if followed else 1)
    if followed:
        assert httpx.URL(sent[1]).host == "acme.zendesk.com"


async def test_credentials_and_options_are_checked_and_secrets_hidden() -> None:
    with pytest.raises(ConfigurationError):
        ZendeskConnector(ConnectorSettings(base_url=BASE, credentials={"email": "a@b.c"}))
    with pytest.raises(ConfigurationError):
        ZendeskConnector(
            ConnectorSettings(base_url=BASE, credentials=CREDENTIALS, options={"per_page": 101})
        )
    with pytest.raises(ConfigurationError):
        ZendeskConnector(
            ConnectorSettings(
                base_url=BASE, credentials=CREDENTIALS, options={"emails_per_search": "50"}
            )
        )
    connector = ZendeskConnector(ConnectorSettings(base_url=BASE, credentials=CREDENTIALS))
    oauth = ZendeskConnector(
        ConnectorSettings(base_url=BASE, credentials={"oauth_token": "oauth-s3cret"})
    )
    try:
        assert "s3cret" not in repr(connector.auth())
        assert "Basic" in repr(connector.auth())
        assert "s3cret" not in repr(oauth.auth())
        assert "Bearer" in repr(oauth.auth())
    finally:
        await connector.close()
        await oauth.close()
