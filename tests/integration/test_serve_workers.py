"""`c360 serve`: what every process must share is required before any worker
starts, and with it several workers answer as one gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from connectors.sdk.testing.server import free_port
from connectors.sdk.world import World
from tests.conftest import SESSION_WORLD
from tests.servers import gateway_config, process

pytestmark = pytest.mark.integration

SEARCH = """query($t: String!, $first: Int!, $after: String) {
  searchCustomers(text: $t, first: $first, after: $after) {
    edges { cursor node { id email } } pageInfo { hasNextPage endCursor } } }"""
BY_ID = "query($id: ID!) { customer(id: $id) { id email } }"


def _serve(config: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`c360 serve --workers 2` expected to refuse: it must exit on its own.
    If it does not, its whole process group (workers too) is killed."""
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
            "--port", str(free_port()), "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _env(extra: dict[str, str], *, without: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C360_")}
    env.update(extra)
    if without is not None:
        env.pop(without)
    return env


def _edit(config: Path, change: Any) -> Path:
    document = yaml.safe_load(config.read_text())
    change(document)
    config.write_text(yaml.safe_dump(document))
    return config


@pytest.mark.parametrize(
    ("case", "line"),
    [
        ("no id key", "c360 serve: C360_ID_KEY is not set: every gateway process must have the "
         "same one (it keys customer ids, search cursors and cache keys); make one with "
         "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` and set it in the "
         "environment of every gateway process"),
        ("no audit section", "c360 serve: audit.key is required: "),
        ("no audit path", "c360 serve: audit.path is required with the file sink: "),
        ("no auth", "c360 serve: no auth configured: "),
        ("bad resilience", "c360 serve: connectors.stripe.resilience.timeout must be a number"),
        ("webhooks without redis", "c360 serve: --workers 2 with webhooks "
         "(connectors.stripe.webhook_secret) needs a Redis every process shares "),
    ],
)  # fmt: skip
def test_serve_refuses_in_one_line_before_any_worker_starts(sandbox_url, tmp_path, case, line):
    config, env = gateway_config(sandbox_url, tmp_path)
    without = None
    if case == "no id key":
        without = "C360_ID_KEY"
    elif case == "no audit section":
        _edit(config, lambda d: d.pop("audit"))
    elif case == "no audit path":
        _edit(config, lambda d: d["audit"].pop("path"))
    elif case == "no auth":
        _edit(config, lambda d: d["gateway"].pop("insecure_no_auth"))
    elif case == "bad resilience":
        _edit(config, lambda d: d["connectors"]["stripe"].update(resilience={"timeout": "soon"}))
    else:
        env["C360_TEST_STRIPE_WEBHOOK"] = "whsec_" + "x" * 24
        _edit(config, lambda d: d["connectors"]["stripe"].update(
            webhook_secret="env:C360_TEST_STRIPE_WEBHOOK"))  # fmt: skip
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = _serve(config, _env(env, without=without), cwd)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert list(cwd.iterdir()) == []  # no trail written where it happened to start


def test_two_workers_page_a_search_and_take_each_others_ids(sandbox_url, tmp_path):
    world = World(**SESSION_WORLD)
    names = Counter(p.last_name for p in world.people if p.crm_id)
    text = next(name for name, n in names.most_common() if n <= 12)
    config, env = gateway_config(sandbox_url, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--config", str(config), "--port", str(port), "--workers", "2"]
    requests = 0

    def gql(query: str, **variables: Any) -> dict[str, Any]:
        nonlocal requests
        requests += 1
        # A new connection each time: the kernel hands connections to either worker.
        body: dict[str, Any] = httpx.post(
            f"{url}/graphql", json={"query": query, "variables": variables}, timeout=30
        ).json()
        assert "errors" not in body, body
        return body["data"]

    with process(args, f"{url}/healthz", _env(env)):
        whole = gql(SEARCH, t=text, first=50, after=None)["searchCustomers"]
        assert not whole["pageInfo"]["hasNextPage"] and len(whole["edges"]) >= 8
        expected = [e["node"] for e in whole["edges"]]
        for _ in range(3):
            paged, after, more = [], None, True
            while more:
                page = gql(SEARCH, t=text, first=2, after=after)["searchCustomers"]
                paged += [e["node"] for e in page["edges"]]
                # Every edge's cursor resumes right after it, on whichever worker.
                for i, edge in enumerate(page["edges"][:-1]):
                    resumed = gql(SEARCH, t=text, first=1, after=edge["cursor"])["searchCustomers"]
                    assert resumed["edges"][0]["node"] == page["edges"][i + 1]["node"]
                after, more = page["pageInfo"]["endCursor"], page["pageInfo"]["hasNextPage"]
            assert paged == expected
        for node in expected * 3:
            assert gql(BY_ID, id=node["id"])["customer"] == node
    assert requests >= 60
