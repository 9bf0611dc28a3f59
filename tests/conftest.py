"""Shared fixtures: the sandbox and the gateway as real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.sdk.testing.server import serve_in_thread
from gateway.issuer import DevIssuer
from tests.servers import gateway_config, gateway_process, sandbox_process

#: The session sandbox's world: tests that need every stored value rebuild it
#: in-process with ``World(**SESSION_WORLD)`` (the world is deterministic).
SESSION_WORLD = {"customers": 300, "seed": 2}


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    # Seed 2 holds every kind of seeded anomaly several times over.
    with sandbox_process(**SESSION_WORLD) as url:
        yield url


@pytest.fixture(scope="session")
def issuer() -> Iterator[DevIssuer]:
    """The development token issuer, served on 127.0.0.1 (real discovery and JWKS)."""
    dev = DevIssuer()
    with serve_in_thread(dev.app) as url:
        dev.issuer_url = url
        yield dev


@pytest.fixture(scope="session")
def gateway_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session gateway's config and audit trail (audit.jsonl) live."""
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="session")
def gateway_url(sandbox_url: str, issuer: DevIssuer, gateway_dir: Path) -> Iterator[str]:
    config, env = gateway_config(
        sandbox_url, gateway_dir,
        auth={"issuer": issuer.issuer_url, "audience": ["c360"]},
        # Batching tests ask for 200 full profiles at once: far past the
        # production cost limit, which tests of the limits cover on their own.
        extra={"graphql": {"max_cost": 1_000_000}, "gateway": {"rate_limit": False}},
    )  # fmt: skip
    with gateway_process(config, env) as url:
        yield url


@pytest.fixture(scope="session")
def answer_key(sandbox_url: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{sandbox_url}/_sandbox/customers", params={"limit": 10000}).json()
    customers: list[dict[str, Any]] = body["customers"]
    return customers


class GraphQLClient:
    def __init__(self, url: str, token: str) -> None:
        self.url = f"{url}/graphql"
        self.headers = {"authorization": f"Bearer {token}"}

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            self.url,
            json={"query": query, "variables": variables},
            headers=self.headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="session")
def gql(gateway_url: str, issuer: DevIssuer) -> GraphQLClient:
    return GraphQLClient(gateway_url, issuer.mint_token("admin", mfa=True))
