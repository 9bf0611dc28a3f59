"""End to end against a real OIDC provider: npm's oauth2-mock-server, started
on 127.0.0.1 by the test (tests/oidc; install it with `npm ci --prefix tests/oidc`)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from connectors.sdk.testing.server import free_port
from gateway.auth import Authenticator, AuthError, auth_settings_from_mapping

pytestmark = pytest.mark.integration

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"
NODE = shutil.which("node")


@dataclass
class Provider:
    url: str
    process: subprocess.Popen[str]

    def token(self, **form: str) -> str:
        answer = httpx.post(
            f"{self.url}/token", data={"grant_type": "client_credentials", **form}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def kids(self) -> list[str]:
        return [k["kid"] for k in httpx.get(f"{self.url}/jwks", timeout=10).json()["keys"]]

    def rotate(self, alg: str) -> str:
        before = self.kids()
        assert self.process.stdin is not None
        self.process.stdin.write(f"rotate {alg}\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            added = [k for k in self.kids() if k not in before]
            if added:
                return added[0]
            time.sleep(0.02)
        raise AssertionError("the provider did not publish a new key")


def _wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"oauth2-mock-server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("oauth2-mock-server did not start")


@pytest.fixture
def provider() -> Iterator[Provider]:
    if NODE is None:
        pytest.skip("node is not installed")
    if not (OIDC_DIR / "node_modules" / "oauth2-mock-server").is_dir():
        pytest.fail("oauth2-mock-server is not installed: run `npm ci --prefix tests/oidc`")
    port = free_port()
    process = subprocess.Popen(
        [NODE, str(OIDC_DIR / "provider.mjs"), "--port", str(port), "--audience", "c360"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield Provider(url, process)
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the provider stops when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def test_tokens_from_a_real_provider_validate_across_key_rotation(provider):
    jwks_requests: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path == "/jwks":
            jwks_requests.append(str(request.url))

    now = [time.time()]
    settings = auth_settings_from_mapping(
        {
            "issuer": provider.url,
            "audience": "c360",
            "claims": {"roles": "realm_access.roles", "client_id": ["azp"]},
            "jwks_cooldown": 30,
        }
    )
    async with httpx.AsyncClient(event_hooks={"request": [count]}) as client:
        auth = Authenticator(settings, client=client, clock=lambda: now[0])
        try:
            principal = await auth.authenticate(
                "Bearer "
                + provider.token(
                    client_id="crm-sidebar", roles="support_agent", tenant="acme", mfa="true"
                )
            )
            assert principal.subject == "crm-sidebar"
            assert principal.client_id == "crm-sidebar"
            assert principal.roles == {"support_agent"}
            assert {"crm:read", "tickets:read", "pii:read"} <= principal.scopes
            assert principal.tenant == "acme" and principal.mfa
            assert len(jwks_requests) == 1

            other_api = provider.token(client_id="crm-sidebar", roles="admin", aud="billing-api")
            with pytest.raises(AuthError) as caught:
                await auth.verify(other_api)
            assert caught.value.code == "bad_audience"

            # Rotation: the provider adds an ES256 key and signs with it; the
            # old RS256 key stays published.
            old_token = provider.token(client_id="etl", roles="integration")
            new_kid = provider.rotate("ES256")
            new_token = provider.token(client_id="etl", roles="integration")
            assert _kid(new_token) == new_kid != _kid(old_token)

            now[0] += 30  # past the refetch cooldown
            assert (await auth.verify(new_token)).roles == {"integration"}
            assert len(jwks_requests) == 2
            assert (await auth.verify(old_token)).roles == {"integration"}
            assert (await auth.verify(new_token)).subject == "etl"
            assert len(jwks_requests) == 2
        finally:
            await auth.aclose()
