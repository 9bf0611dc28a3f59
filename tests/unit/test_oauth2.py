"""OAuth 2.0 client credentials against the real Salesforce sandbox on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors.salesforce import SalesforceConnector
from connectors.salesforce.sandbox import create_app
from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    OAuth2ClientCredentials,
    UpstreamAuthError,
    UpstreamRateLimited,
    UpstreamUnavailable,
    VendorClient,
)
from connectors.sdk.http import call_gate
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import World

CREDS = SANDBOX_CREDENTIALS["salesforce"]
CLIENT_ID, SECRET = CREDS["client_id"], CREDS["client_secret"]
TOKEN_ROUTE = "salesforce POST /services/oauth2/token"
COLLECTION = "salesforce GET /services/data/{version}/composite/sobjects/{sobject}"
QUERY = "salesforce GET /services/data/{version}/query"


@dataclass
class Sandbox:
    url: str
    state: SandboxState

    @property
    def crm_ids(self) -> list[str]:
        return [p.crm_id for p in self.state.world.people if p.crm_id]

    def revoke(self, token: str) -> None:
        response = httpx.post(f"{self.url}/services/oauth2/revoke", data={"token": token})
        assert response.status_code == 200


class Recorder(httpx.AsyncBaseTransport):
    """Wraps the real transport and remembers each request's bearer token."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bearers: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer":
            self.bearers.append(value)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState(World(customers=60, seed=11))
    with serve_in_thread(create_app(state)) as url:
        yield Sandbox(url, state)


@pytest.fixture
def clean(sandbox: Sandbox) -> Sandbox:
    sandbox.state.set_faults({})
    sandbox.state.stats.clear()
    return sandbox


def settings(url: str, secret: str = SECRET, **options: Any) -> ConnectorSettings:
    credentials = {"client_id": CLIENT_ID, "client_secret": secret}
    return ConnectorSettings(base_url=url, credentials=credentials, options=options)


@pytest.fixture
async def connector(clean: Sandbox) -> AsyncIterator[tuple[SalesforceConnector, Recorder]]:
    recorder = Recorder()
    conn = SalesforceConnector(settings(clean.url), transport=recorder)
    try:
        yield conn, recorder
    finally:
        await conn.close()


async def test_connector_with_client_credentials_reads_contacts(clean, connector):
    conn, recorder = connector
    ids = clean.crm_ids[:5]
    found = await conn.people_by_id(ids)
    assert sorted(found) == sorted(ids)
    assert clean.state.stats[TOKEN_ROUTE] == 1
    assert isinstance(conn.http.auth, OAuth2ClientCredentials)
    # The issued token, not the static sandbox token, authenticated the read.
    assert recorder.bearers and CREDS["token"] not in recorder.bearers


async def test_many_concurrent_calls_share_one_token_request(clean, connector):
    conn, _ = connector
    ids = clean.crm_ids[:20]
    results = await asyncio.gather(*(conn.people_by_id([i]) for i in ids))
    assert [list(r) for r in results] == [[i] for i in ids]
    assert clean.state.stats[TOKEN_ROUTE] == 1
    assert clean.state.stats[COLLECTION] == 20


async def test_revoked_token_is_refreshed_once_and_the_calls_succeed(clean, connector):
    conn, recorder = connector
    ids = clean.crm_ids[:10]
    await conn.people_by_id(ids[:1])
    first = recorder.bearers[-1]
    clean.revoke(first)
    clean.state.stats.clear()
    results = await asyncio.gather(*(conn.people_by_id([i]) for i in ids))
    assert [list(r) for r in results] == [[i] for i in ids]
    assert clean.state.stats[TOKEN_ROUTE] == 1
    assert recorder.bearers[-1] != first
    # Each call was answered 401 at most once before its retry.
    assert clean.state.stats[COLLECTION] <= 2 * len(ids)


async def test_token_fetches_and_retries_after_401_pass_the_call_gate(clean, connector):
    conn, recorder = connector
    gated = 0

    async def gate() -> None:
        nonlocal gated
        gated += 1

    token = call_gate.set(gate)
    try:
        await conn.people_by_id(clean.crm_ids[:1])  # token fetch + read
        clean.revoke(recorder.bearers[-1])
        await conn.people_by_id(clean.crm_ids[1:2])  # read, 401, token fetch, read
    finally:
        call_gate.reset(token)
    assert clean.state.stats[TOKEN_ROUTE] == 2
    assert clean.state.stats[COLLECTION] == 3
    assert gated == 5  # every request the connector sent; the test's revoke is not one


async def test_a_token_rejected_twice_is_not_retried_again(clean, connector):
    conn, _ = connector
    await conn.people_by_id(clean.crm_ids[:1])
    clean.state.set_faults({"salesforce": {"route": "/services/data/", "status": 401}})
    clean.state.stats.clear()
    with pytest.raises(UpstreamAuthError):
        await conn.people_by_id(clean.crm_ids[:1])
    assert clean.state.stats[TOKEN_ROUTE] == 1
    assert clean.state.stats[COLLECTION] == 2


async def test_bad_client_secret_raises_auth_error_without_the_secret(clean):
    secret = "s3cr3t-value-that-must-not-leak"
    conn = SalesforceConnector(settings(clean.url, secret=secret))
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await conn.people_by_id(clean.crm_ids[:1])
    finally:
        await conn.close()
    error = info.value
    assert error.source == "salesforce" and error.status == 400
    assert error.vendor_detail == "invalid_client: invalid client credentials"
    for text in (str(error), repr(error), error.vendor_detail or "", repr(conn.http.auth)):
        assert secret not in text
    assert clean.state.stats[COLLECTION] == 0


async def test_vendor_echoing_the_secret_is_scrubbed_from_vendor_detail(clean):
    async def echo(request: httpx.Request) -> httpx.Response:
        body = {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}
        return httpx.Response(401, json=body)

    auth = OAuth2ClientCredentials(f"{clean.url}/token", CLIENT_ID, SECRET, source="acme")
    client = VendorClient(
        source="acme", base_url=clean.url, auth=auth, transport=httpx.MockTransport(echo)
    )
    try:
        with pytest.raises(UpstreamAuthError) as info:
            await client.get_json("/anything", operation="read")
    finally:
        await client.aclose()
    assert info.value.vendor_detail == "invalid_client: bad secret ***"


@pytest.mark.parametrize("method", ["basic", "post"])
async def test_token_is_reused_until_shortly_before_it_expires(clean, method):
    now = [1000.0]
    auth = OAuth2ClientCredentials(
        f"{clean.url}/services/oauth2/token",
        CLIENT_ID,
        SECRET,
        auth_method=method,
        default_lifetime=600,
        refresh_margin=30,
        clock=lambda: now[0],
    )
    client = VendorClient(source="salesforce", base_url=clean.url, auth=auth)
    query = {"q": "SELECT Id FROM Account LIMIT 1"}
    try:
        await client.get_json("/services/data/v61.0/query", operation="q", params=query)
        now[0] += 560
        await client.get_json("/services/data/v61.0/query", operation="q", params=query)
        assert clean.state.stats[TOKEN_ROUTE] == 1
        now[0] += 20
        await client.get_json("/services/data/v61.0/query", operation="q", params=query)
        assert clean.state.stats[TOKEN_ROUTE] == 2
        assert clean.state.stats[QUERY] == 3
    finally:
        await client.aclose()


async def test_a_failed_token_request_does_not_block_the_next(clean, connector):
    conn, _ = connector
    clean.state.set_faults({"salesforce": {"route": "/services/oauth2/token", "reset": True}})
    with pytest.raises(UpstreamUnavailable):
        await conn.people_by_id(clean.crm_ids[:1])
    clean.state.set_faults({})
    found = await asyncio.wait_for(conn.people_by_id(clean.crm_ids[:1]), timeout=10)
    assert list(found) == clean.crm_ids[:1]


async def test_repr_never_shows_the_secret_or_the_token(clean, connector):
    conn, recorder = connector
    await conn.people_by_id(clean.crm_ids[:1])
    text = repr(conn.http.auth)
    assert CLIENT_ID in text
    assert SECRET not in text and recorder.bearers[-1] not in text


def test_sandbox_token_endpoint_answers_like_salesforce(clean):
    url = f"{clean.url}/services/oauth2/token"
    good = httpx.post(
        url,
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, SECRET),
    )
    assert good.status_code == 200
    body = good.json()
    assert {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"} <= set(
        body
    )
    assert body["token_type"] == "Bearer" and body["instance_url"] == clean.url
    bad = httpx.post(
        url, data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"}
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "invalid_client",
        "error_description": "invalid client credentials",
    }
    api = httpx.get(
        f"{clean.url}/services/data/v61.0/query",
        params={"q": "SELECT Id FROM Account LIMIT 1"},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert api.status_code == 200


def test_salesforce_needs_both_client_credentials():
    with pytest.raises(ConfigurationError):
        SalesforceConnector(
            ConnectorSettings(base_url="http://127.0.0.1:9", credentials={"client_id": "x"})
        )


async def test_a_busy_token_endpoint_is_a_rate_limit_with_its_wait(clean, connector):
    conn, _ = connector
    clean.state.set_faults({"salesforce": {"route": "/services/oauth2/token", "retry_after": 2}})
    with pytest.raises(UpstreamRateLimited) as info:
        await conn.people_by_id(clean.crm_ids[:1])
    assert info.value.retry_after == 2
    assert clean.state.stats[COLLECTION] == 0


async def test_a_static_token_wins_over_client_credentials(clean):
    conn = SalesforceConnector(ConnectorSettings(base_url=clean.url, credentials=CREDS))
    try:
        assert list(await conn.people_by_id(clean.crm_ids[:1])) == clean.crm_ids[:1]
    finally:
        await conn.close()
    assert clean.state.stats[TOKEN_ROUTE] == 0
