"""Unit tests of the Mailchimp mapping, auth, data-center helpers and error policy."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.mailchimp import MailchimpConnector, base_url_for_key, mapping
from connectors.mailchimp._http import data_center_of_key, data_center_of_url
from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)

LISTS = {"a1b2c3d4e5": "Newsletter", "f6e5d4c3b2": "Product updates"}
HASH = "62eeb5d9a8c3b1f7e0a1c2d3e4f5a6b7"


def member_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": HASH,
        "email_address": " Ada.Lopez@Example.COM ",
        "unique_email_id": "abc123def4",
        "web_id": 123456789,
        "email_type": "html",
        "status": "subscribed",
        "merge_fields": {"FNAME": "Ada", "LNAME": "Lopez", "PHONE": "+14155550000"},
        "stats": {"avg_open_rate": 0.5, "avg_click_rate": 0.1},
        "last_changed": "2026-05-01T10:00:00+00:00",
        "marketing_permissions": [
            {"marketing_permission_id": "p1", "text": "Email", "enabled": True},
            {"marketing_permission_id": "p2", "text": "Direct Mail", "enabled": False},
        ],
        "list_id": "a1b2c3d4e5",
        "tags": [],
        "_links": [],
    }
    body.update(overrides)
    return body


# ------------------------------------------------------------------- mapping
def test_member_maps_every_field() -> None:
    m = mapping.member(member_json(), lists=LISTS, dc="us21")
    assert m.id == HASH
    assert m.source.system == "mailchimp"
    assert m.source.updated_at == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert m.source.url == "https://us21.admin.mailchimp.com/lists/members/view?id=123456789"
    assert m.email == "ada.lopez@example.com"
    assert m.name == "Ada Lopez"
    assert m.status == "subscribed"
    assert (m.list_id, m.list_name) == ("a1b2c3d4e5", "Newsletter")
    assert [(c.channel, c.status) for c in m.consents] == [
        ("Email", "granted"),
        ("Direct Mail", "denied"),
    ]
    assert all(c.updated_at == m.source.updated_at for c in m.consents)
    assert (m.avg_open_rate, m.avg_click_rate) == (0.5, 0.1)


def test_member_tolerates_missing_and_null_fields() -> None:
    m = mapping.member(
        {"id": HASH, "merge_fields": None, "stats": None, "marketing_permissions": None},
        lists={},
        dc=None,
    )
    assert m.id == HASH
    assert m.email is None
    assert m.name is None
    assert m.status is None
    assert m.list_id is None
    assert m.list_name is None
    assert m.consents == ()
    assert m.avg_open_rate is None
    assert m.source.url is None
    assert m.source.updated_at is None


def test_member_name_falls_back_to_full_name_and_unknown_list_has_no_name() -> None:
    m = mapping.member(
        member_json(merge_fields={"FNAME": "", "LNAME": None}, full_name="Ada L", list_id="zzz"),
        lists=LISTS,
        dc="us1",
    )
    assert m.name == "Ada L"
    assert (m.list_id, m.list_name) == ("zzz", None)


@pytest.mark.parametrize(
    "body",
    [
        [member_json()],
        "member",
        None,
        {"email_address": "no-id@example.com"},
        member_json(marketing_permissions="Email"),
        member_json(marketing_permissions=["Email"]),
    ],
)
def test_member_of_the_wrong_shape_is_a_protocol_error(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError) as info:
        mapping.member(body, lists=LISTS, dc="us1")
    assert info.value.source == "mailchimp"


def test_search_exact_matches() -> None:
    body = {
        "exact_matches": {"members": [member_json(), member_json(list_id="f6e5d4c3b2")]},
        "full_search": {"members": [member_json(id="other")], "total_items": 1},
    }
    found = mapping.search_exact_matches(body, lists=LISTS, dc="us1")
    assert [m.list_name for m in found] == ["Newsletter", "Product updates"]
    assert mapping.search_exact_matches({}, lists=LISTS, dc="us1") == []
    assert mapping.search_exact_matches({"exact_matches": {}}, lists=LISTS, dc="us1") == []


@pytest.mark.parametrize(
    "body",
    [[], {"exact_matches": []}, {"exact_matches": {"members": {"id": "x"}}}],
)
def test_search_of_the_wrong_shape_is_a_protocol_error(body: Any) -> None:
    with pytest.raises(UpstreamProtocolError):
        mapping.search_exact_matches(body, lists=LISTS, dc="us1")


def test_list_names() -> None:
    body = {"lists": [{"id": "a", "name": "A"}, {"id": "b"}, {"name": "no id"}], "total_items": 3}
    assert mapping.list_names(body) == {"a": "A", "b": None}
    with pytest.raises(UpstreamProtocolError):
        mapping.list_names({"lists": "a,b"})


def test_activity_feed_reads_feed_and_legacy_shapes() -> None:
    body = {
        "list_id": "a1b2c3d4e5",
        "activity": [
            {
                "activity_type": "open",
                "created_at_timestamp": "2026-05-02T08:00:00+00:00",
                "campaign_id": "c1",
                "campaign_title": "Spring launch",
            },
            {"action": "click", "timestamp": "2026-05-01T08:00:00Z", "title": "Digest"},
            {"activity_type": "note", "note_id": "n1", "note_text": "Called them"},
            {},
        ],
    }
    events = mapping.activity_feed(body, member_id=HASH)
    assert [(e.kind, e.detail) for e in events] == [
        ("open", "Spring launch"),
        ("click", "Digest"),
        ("note", "Called them"),
        ("unknown", None),
    ]
    assert events[0].occurred_at == datetime(2026, 5, 2, 8, tzinfo=UTC)
    assert events[1].occurred_at == datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert all(e.member_id == HASH and e.source.system == "mailchimp" for e in events)
    assert len({e.id for e in events}) == len(events)
    assert mapping.activity_feed({"activity": None}, member_id=HASH) == []
    with pytest.raises(UpstreamProtocolError):
        mapping.activity_feed({"activity": {"activity_type": "open"}}, member_id=HASH)
    with pytest.raises(UpstreamProtocolError):
        mapping.activity_feed([], member_id=HASH)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-05-01T10:00:00+00:00", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T12:00:00+02:00", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01T10:00:00Z", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("2026-05-01 10:00:00", datetime(2026, 5, 1, 10, tzinfo=UTC)),
        ("", None),
        ("yesterday", None),
        (None, None),
        (1714557600, None),
    ],
)
def test_parse_time(raw: Any, expected: datetime | None) -> None:
    assert mapping.parse_time(raw) == expected


def test_member_url_needs_a_data_center_and_web_id() -> None:
    assert mapping.member_url("us1", 5) == "https://us1.admin.mailchimp.com/lists/members/view?id=5"
    assert mapping.member_url(None, 5) is None
    assert mapping.member_url("us1", None) is None
    assert mapping.member_url("us1", True) is None


# ------------------------------------------------------- data center and auth
def test_data_center_helpers() -> None:
    assert data_center_of_key("0123456789abcdef-us21") == "us21"
    assert data_center_of_key("no-data-center") is None
    assert data_center_of_key("plainkey") is None
    assert base_url_for_key("k-us6") == "https://us6.api.mailchimp.com"
    with pytest.raises(ConfigurationError):
        base_url_for_key("plainkey")
    assert data_center_of_url("https://us19.api.mailchimp.com") == "us19"
    assert data_center_of_url("http://127.0.0.1:8000/mailchimp") is None


def settings(**credentials: str) -> ConnectorSettings:
    return ConnectorSettings(base_url="https://us9.api.mailchimp.com", credentials=credentials)


async def test_api_key_is_sent_as_basic_password_and_never_shown() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"lists": [], "total_items": 0})

    connector = MailchimpConnector(
        settings(token="secret-key-us9"), transport=httpx.MockTransport(handler)
    )
    try:
        assert "secret" not in repr(connector.http.auth)
        assert connector.dc == "us9"
        await connector.lists()
    finally:
        await connector.close()
    scheme, _, value = seen[0].headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode().partition(":")[2] == "secret-key-us9"
    assert seen[0].url.path == "/3.0/lists"


async def test_oauth_token_is_sent_as_bearer() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"lists": [], "total_items": 0})

    connector = MailchimpConnector(
        settings(oauth_token="oauth-secret"), transport=httpx.MockTransport(handler)
    )
    try:
        assert "oauth-secret" not in repr(connector.http.auth)
        assert connector.dc == "us9"  # from the base URL: OAuth tokens carry no dc
        await connector.lists()
    finally:
        await connector.close()
    assert seen == ["Bearer oauth-secret"]


def test_missing_credentials_and_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        MailchimpConnector(settings())
    for options in ({"max_concurrency": 0}, {"page_size": "many"}, {"list_ids": 5}):
        with pytest.raises(ConfigurationError):
            MailchimpConnector(
                ConnectorSettings(
                    base_url="https://us9.api.mailchimp.com",
                    credentials={"token": "k-us9"},
                    options=options,
                )
            )


# -------------------------------------------------------------- error policy
def problem(status: int, title: str) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"content-type": "application/problem+json"},
        content=json.dumps(
            {
                "type": "https://mailchimp.com/developer/marketing/docs/errors/",
                "title": title,
                "status": status,
                "detail": f"detail of {title}",
                "instance": "0f0e0d0c-0000-4000-8000-000000000000",
            }
        ),
    )


def connector_answering(handler: Callable[[httpx.Request], httpx.Response]) -> MailchimpConnector:
    return MailchimpConnector(
        ConnectorSettings(
            base_url="https://us9.api.mailchimp.com",
            credentials={"token": "k-us9"},
            # Known lists: no discovery call, so the handler answers the lookup itself.
            options={"list_ids": {"a1b2c3d4e5": "Newsletter"}},
        ),
        transport=httpx.MockTransport(handler),
    )


@pytest.mark.parametrize(
    ("response", "error", "status"),
    [
        (problem(401, "API Key Invalid"), UpstreamAuthError, 401),
        (problem(403, "Forbidden"), UpstreamAuthError, 403),
        (problem(404, "Resource Not Found"), UpstreamBadRequest, 404),
        (problem(400, "Invalid Resource"), UpstreamBadRequest, 400),
        (problem(500, "Internal Server Error"), UpstreamUnavailable, 500),
        (problem(503, "Service Unavailable"), UpstreamUnavailable, 503),
    ],
)
async def test_http_errors_become_sdk_errors(
    response: httpx.Response, error: type[Exception], status: int
) -> None:
    connector = connector_answering(lambda _: response)
    try:
        with pytest.raises(error) as info:
            await connector.members_by_email(["ada@example.com"])
    finally:
        await connector.close()
    exc = info.value
    assert isinstance(exc, UpstreamBadRequest | UpstreamAuthError | UpstreamUnavailable)
    assert exc.status == status
    assert exc.source == "mailchimp"
    assert exc.vendor_detail is not None
    assert "detail of" in exc.vendor_detail
    assert "detail of" not in str(exc)


async def test_429_carries_retry_after() -> None:
    response = problem(429, "Too Many Requests")
    response.headers["Retry-After"] = "7"
    connector = connector_answering(lambda _: response)
    try:
        with pytest.raises(UpstreamRateLimited) as info:
            await connector.members_by_email(["ada@example.com"])
    finally:
        await connector.close()
    assert info.value.retry_after == 7.0
    assert info.value.retryable
    assert "Too Many Requests" in (info.value.vendor_detail or "")


async def test_404_on_a_member_means_absent_not_an_error() -> None:
    connector = connector_answering(lambda _: problem(404, "Resource Not Found"))
    try:
        assert await connector.members_by_id([HASH]) == {}
        assert await connector.activity_of_members([HASH]) == {}
    finally:
        await connector.close()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>maintenance</html>"),
        httpx.Response(200, json=[{"id": HASH}]),
        httpx.Response(200, json={"exact_matches": {"members": "none"}}),
    ],
)
async def test_garbage_and_wrong_shape_bodies_are_protocol_errors(
    response: httpx.Response,
) -> None:
    connector = connector_answering(lambda _: response)
    try:
        with pytest.raises(UpstreamProtocolError):
            await connector.members_by_email(["ada@example.com"])
        with pytest.raises(UpstreamProtocolError):
            await connector.members_by_id([HASH])
    finally:
        await connector.close()


def test_vendor_detail_reads_field_errors_and_falls_back_to_text() -> None:
    policy = MailchimpConnector.error_policy("mailchimp")
    body = {
        "title": "Invalid Resource",
        "detail": "could not be validated",
        "errors": [{"field": "count", "message": "too big"}],
    }
    detail = policy.vendor_detail(httpx.Response(400, json=body))
    assert detail is not None
    assert "Invalid Resource" in detail
    assert "count: too big" in detail
    assert policy.vendor_detail(httpx.Response(502, content=b"Bad Gateway")) == "Bad Gateway"
