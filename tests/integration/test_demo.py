"""`c360 demo` is one command: sandboxes + gateway, and the email it prints works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from connectors.sdk.testing.server import free_port
from tests.servers import wait_ready

pytestmark = pytest.mark.integration


def test_demo_serves_a_full_profile_for_the_email_it_prints():
    port, sandbox_port, issuer_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "demo",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
            "--issuer-port",
            str(issuer_port),
            "--customers",
            "200",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("variables:"):
                break
        printed = "".join(lines)
        assert f"http://127.0.0.1:{port}/graphql" in printed
        assert f"http://127.0.0.1:{sandbox_port}" in printed
        variables = json.loads(printed.rsplit("variables:", 1)[1])
        query = re.search(r"(query Customer360.*?\n})", printed, re.S).group(1)
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        tokens = dict(re.findall(r"^  (\w+): (ey[\w.-]+)$", printed, re.M))
        assert set(tokens) >= {"support_agent", "marketing", "billing_admin", "admin"}
        anonymous = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables}
        )
        assert anonymous.status_code == 401
        body = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {tokens['admin']}"},
        ).json()
        assert "errors" not in body
        customer = body["data"]["customer"]
        assert customer["email"] == variables["email"]
        assert {s["system"] for s in customer["sources"]} == {
            "salesforce",
            "zendesk",
            "stripe",
            "mailchimp",
        }
        assert customer["tickets"] and customer["marketing"]["lists"]
        ide = httpx.get(f"http://127.0.0.1:{port}/graphql", headers={"accept": "text/html"})
        assert ide.status_code == 200 and "graphiql" in ide.text.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
