"""Every response that shows PII leaves a verifiable audit event."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

QUERY = "query Sidebar($e: String) { customer(email: $e) { id name email tickets { id } } }"


def _events(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_pii_reads_are_audited_and_the_chain_verifies(gateway_url, gateway_dir, issuer, answer_key):
    path = gateway_dir / "audit.jsonl"
    person = next(p for p in answer_key if p["in_all"])
    token = issuer.mint_token("support_agent", subject="agent-42")
    before = len(_events(path))
    response = httpx.post(
        f"{gateway_url}/graphql",
        json={"query": QUERY, "variables": {"e": person["email"]}, "operationName": "Sidebar"},
        headers={"authorization": f"Bearer {token}", "x-request-id": "req-audit-0001"},
    )
    customer = response.json()["data"]["customer"]
    deadline = time.monotonic() + 10
    while len(_events(path)) == before and time.monotonic() < deadline:
        time.sleep(0.05)  # the event is written just after the response is sent
    event = _events(path)[-1]
    assert event["subject"] == "agent-42"
    assert event["customer_id"] == customer["id"]
    assert set(event["fields"]) == {"name", "email"}
    assert event["operation"] == "Sidebar"
    assert event["request_id"] == "req-audit-0001"
    assert event["source_ip"] == "127.0.0.1"
    assert person["email"] not in path.read_text()  # ids and field names only, never values
    verdict = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_a_response_without_pii_leaves_no_event(gateway_url, gateway_dir, issuer):
    path = gateway_dir / "audit.jsonl"
    before = len(_events(path))
    token = issuer.mint_token("integration")
    body = httpx.post(f"{gateway_url}/graphql", json={"query": "{ __typename }"},
                      headers={"authorization": f"Bearer {token}"}).json()  # fmt: skip
    assert body == {"data": {"__typename": "Query"}}
    assert len(_events(path)) == before
