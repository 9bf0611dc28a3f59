"""``c360 serve`` records who asked (the audit's ``source_ip``) from the TCP peer,
and from X-Forwarded-For only when that peer is one of ``gateway.trusted_proxies``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import gateway_config, gateway_process

pytestmark = pytest.mark.integration

QUERY = "query($e: String) { customer(email: $e) { id email } }"


def source_ip(url: str, audit: Path, email: str, *, via: str = "127.0.0.1", **headers: str) -> str:
    """Ask for a customer from local address ``via``; the source_ip its audit event names."""
    request_id = uuid.uuid4().hex
    transport = httpx.HTTPTransport(local_address=via)
    with httpx.Client(transport=transport, timeout=30) as client:
        response = client.post(
            f"{url}/graphql",
            json={"query": QUERY, "variables": {"e": email}},
            headers={"x-request-id": request_id, **headers},
        )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["customer"]["email"] == email
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    [event] = [e for e in events if e["request_id"] == request_id]
    address: str = event["source_ip"]
    return address


@pytest.fixture(scope="module")
def person(answer_key: list[dict]) -> str:
    email: str = next(p for p in answer_key if p["in_all"])["email"]
    return email


@pytest.fixture(scope="module")
def behind_proxy(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A gateway that trusts the proxy at 127.0.0.1 only."""
    directory = tmp_path_factory.mktemp("behind-proxy")
    config, env = gateway_config(
        sandbox_url, directory, extra={"gateway": {"trusted_proxies": ["127.0.0.1"]}}
    )
    with gateway_process(config, env) as url:
        yield url, directory / "audit.jsonl"


def test_a_forwarded_for_header_from_any_client_is_ignored_by_default(
    sandbox_url, tmp_path, person
):
    config, env = gateway_config(sandbox_url, tmp_path)
    with gateway_process(config, env) as url:
        audit = tmp_path / "audit.jsonl"
        # uvicorn alone would believe this from 127.0.0.1, the address every local client has.
        assert source_ip(url, audit, person, **{"X-Forwarded-For": "203.0.113.66"}) == "127.0.0.1"
        forwarded = {"Forwarded": "for=203.0.113.66", "X-Real-IP": "203.0.113.66"}
        assert source_ip(url, audit, person, via="127.0.0.2", **forwarded) == "127.0.0.2"


def test_only_the_trusted_proxy_names_the_client(behind_proxy, person):
    url, audit = behind_proxy
    spoofed = {"X-Forwarded-For": "203.0.113.66"}
    assert source_ip(url, audit, person, via="127.0.0.2", **spoofed) == "127.0.0.2"
    assert source_ip(url, audit, person, via="127.0.0.1", **spoofed) == "203.0.113.66"
    # What the client wrote before the proxy appended its peer is not believed.
    appended = {"X-Forwarded-For": "6.6.6.6, 198.51.100.4"}
    assert source_ip(url, audit, person, via="127.0.0.1", **appended) == "198.51.100.4"
    assert source_ip(url, audit, person, via="127.0.0.1") == "127.0.0.1"
