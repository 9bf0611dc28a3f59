"""Every response that shows PII leaves a verifiable audit event first -- or shows no PII."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import TEST_AUDIT_KEY, gateway_config, gateway_process

pytestmark = pytest.mark.integration

QUERY = """query Sidebar($e: String) {
  customer(email: $e) { id name email phone tickets { id } } }"""


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", *args,
         "--key", "env:C360_TEST_AUDIT_KEY"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "C360_TEST_AUDIT_KEY": TEST_AUDIT_KEY},
    )  # fmt: skip


def _ask(url: str, token: str, email: str, request_id: str) -> dict:
    response = httpx.post(
        f"{url}/graphql",
        json={"query": QUERY, "variables": {"e": email}, "operationName": "Sidebar"},
        headers={"authorization": f"Bearer {token}", "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def test_a_masked_read_is_audited_before_the_answer_arrives(
    gateway_url, gateway_dir, issuer, answer_key
):
    path = gateway_dir / "audit.jsonl"
    person = next(p for p in answer_key if p["in_all"])
    token = issuer.mint_token("support_agent", subject="agent-42")
    customer = _ask(gateway_url, token, person["email"], "req-audit-0001")["data"]["customer"]
    assert "***" in customer["phone"]
    # No waiting: the event was stored (fsync'd) before the response was sent.
    event = next(e for e in _events(path) if e["request_id"] == "req-audit-0001")
    assert event["subject"] == "agent-42"
    assert event["customer_id"] == customer["id"]
    assert event["fields"] == {
        "Customer.name": "full", "Customer.email": "full", "Customer.phone": "masked",
    }  # fmt: skip
    assert event["operation"] == "Sidebar"
    assert event["source_ip"] == "127.0.0.1"
    text = path.read_text()
    assert person["email"] not in text and person["phone"] not in text  # names, never values
    verdict = _verify(str(path))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_a_response_without_pii_leaves_no_event(gateway_url, gateway_dir, issuer):
    path = gateway_dir / "audit.jsonl"
    before = len(_events(path))
    token = issuer.mint_token("integration")
    body = httpx.post(f"{gateway_url}/graphql", json={"query": "{ __typename }"},
                      headers={"authorization": f"Bearer {token}"}).json()  # fmt: skip
    assert body == {"data": {"__typename": "Query"}}
    assert len(_events(path)) == before


@pytest.fixture
def own_gateway(sandbox_url, issuer, tmp_path) -> Iterator[tuple[str, Path]]:
    """A gateway whose audit trail this test may break."""
    config, env = gateway_config(
        sandbox_url, tmp_path, auth={"issuer": issuer.issuer_url, "audience": ["c360"]}
    )
    with gateway_process(config, env) as url:
        yield url, tmp_path / "audit.jsonl"


def test_no_event_no_pii_and_readiness_says_why(own_gateway, issuer, answer_key):
    url, path = own_gateway
    person = next(p for p in answer_key if p["in_all"] and p["counts"]["tickets"])
    token = issuer.mint_token("admin", mfa=True)
    assert _ask(url, token, person["email"], "req-audit-ok01")["data"]["customer"]["name"]
    assert httpx.get(f"{url}/readyz").json() == {"status": "ready", "audit": "ok"}

    path.write_bytes(path.read_bytes() + b'{"half an ev')  # a torn write: the chain's end is gone
    body = _ask(url, token, person["email"], "req-audit-bad1")
    customer = body["data"]["customer"]
    assert customer["name"] is None and customer["email"] is None and customer["phone"] is None
    assert customer["tickets"]  # what is not personal data still arrives
    withheld = {tuple(e["path"]) for e in body["errors"]}
    assert withheld == {("customer", f) for f in ("name", "email", "phone")}
    assert {e["extensions"]["code"] for e in body["errors"]} == {"AUDIT_UNAVAILABLE"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable" and ready.json()["audit"]
    assert httpx.get(f"{url}/healthz").status_code == 200  # alive: a restart fixes nothing

    verdict = _verify(str(path))
    assert verdict.returncode == 1 and "partial" in verdict.stdout.lower(), verdict.stdout


def test_a_trail_that_cannot_be_opened_withholds_pii(own_gateway, issuer, answer_key):
    url, path = own_gateway
    person = next(p for p in answer_key if p["in_all"])
    token = issuer.mint_token("support_agent")
    assert _ask(url, token, person["email"], "req-audit-ro01")["data"]["customer"]["email"]
    # Unwritable whoever runs the gateway (root ignores file modes): a directory.
    path.unlink()
    path.mkdir()
    body = _ask(url, token, person["email"], "req-audit-ro02")
    assert body["data"]["customer"]["email"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {"AUDIT_UNAVAILABLE"}
    assert httpx.get(f"{url}/readyz").status_code == 503
