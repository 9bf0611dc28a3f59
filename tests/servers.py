"""Start the c360 sandbox and gateway as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from connectors.sdk.sandbox import SANDBOX_CREDENTIALS
from connectors.sdk.testing.server import free_port

VENDORS = ("salesforce", "zendesk", "stripe", "mailchimp")
# Public, for tests only: `c360 audit verify --key env:C360_TEST_AUDIT_KEY` checks their trails.
TEST_AUDIT_KEY = "dGVzdC1hdWRpdC1rZXktMzItYnl0ZXMtbG9uZy1hdC1sZWFzdA"


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready in {timeout}s")


@contextmanager
def process(
    args: list[str], ready_url: str, env: Mapping[str, str] | None = None
) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_ready(ready_url, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def sandbox_process(customers: int = 300, seed: int = 11, latency_ms: float = 0) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        "sandbox",
        "--port",
        str(port),
        "--customers",
        str(customers),
        "--seed",
        str(seed),
        "--latency-ms",
        str(latency_ms),
    ]
    with process(args, f"{url}/_sandbox/stats"):
        yield url


def gateway_config(
    sandbox_url: str,
    directory: Path,
    overrides: Mapping[str, str] | None = None,
    *,
    cache: Mapping[str, object] | None = None,
    extra: Mapping[str, object] | None = None,
    resilience: Mapping[str, object] | None = None,
    auth: Mapping[str, object] | None = None,
    audit_dir: Path | None = None,
) -> tuple[Path, dict[str, str]]:
    """A config file pointing every connector at the sandbox, secrets via env."""
    env: dict[str, str] = {}
    connectors = {}
    for vendor in VENDORS:
        creds = {}
        for name, value in SANDBOX_CREDENTIALS[vendor].items():
            var = f"C360_TEST_{vendor.upper()}_{name.upper()}"
            env[var] = value
            creds[name] = f"env:{var}"
        base = (overrides or {}).get(vendor, f"{sandbox_url}/{vendor}")
        connectors[vendor] = {
            "base_url": base,
            "credentials": creds,
            "timeout": 5,
            "resilience": dict(resilience) if resilience is not None else {"rate_limit": False},
        }
    path = directory / "c360.yaml"
    # The cache stays off unless a test asks for it: most tests count upstream calls.
    # Without an auth section the gateway runs in its explicit insecure dev mode.
    document: dict[str, object] = {
        # One shared test principal makes many requests: no per-principal limit
        # unless a test asks for one.
        "gateway": {"max_customers": 200, "insecure_no_auth": auth is None, "rate_limit": False},
        "connectors": connectors,
        "cache": dict(cache) if cache is not None else {"enabled": False},
        "audit": {
            "sink": "file",
            "path": str((audit_dir or directory) / "audit.jsonl"),
            "key": "env:C360_TEST_AUDIT_KEY",
        },
    }
    if auth is not None:
        document["auth"] = dict(auth)
    for section, value in (extra or {}).items():
        base = document.get(section)
        document[section] = (
            {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        )
    path.write_text(yaml.safe_dump(document))
    env["C360_ID_KEY"] = "dGVzdC1rZXktZm9yLWN1c3RvbWVyLWlkcy0zMmJ5dGU"
    env["C360_TEST_AUDIT_KEY"] = TEST_AUDIT_KEY
    return path, env


@contextmanager
def gateway_process(config: Path, env: Mapping[str, str]) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with process(["serve", "--config", str(config), "--port", str(port)], f"{url}/healthz", env):
        yield url
