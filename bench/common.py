"""Shared plumbing for the benchmarks: processes, ports, readiness, CPU, queries.

Every process here listens on 127.0.0.1 only, on a free port, and is stopped
in a ``finally`` block (terminate, then kill after a grace period).
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from connectors.sdk.sandbox import SANDBOX_CREDENTIALS  # noqa: E402

VENDORS = ("salesforce", "zendesk", "stripe", "mailchimp")
HOST = "127.0.0.1"
# A fixed bench-only id key (urlsafe base64 of 32 bytes): stable customer ids.
BENCH_ID_KEY = "YmVuY2gta2V5LWZvci1jdXN0b21lci1pZHMtMzJieXQ"

SELECTION = (
    "id name email phone sources { system id url updatedAt } "
    "account { id name industry parent { id name } } "
    "tickets { id subject status priority createdAt updatedAt } "
    "subscriptions { id status plan amount currency interval currentPeriodEnd } "
    "invoices { id status amountDue amountPaid currency createdAt } "
    "marketing { status lists { id name status } consents { channel status updatedAt } }"
)
FULL_QUERY = f"query($email: String!) {{ customer(email: $email) {{ {SELECTION} }} }}"
MANY_QUERY = f"query($emails: [String!]!) {{ customers(emails: $emails) {{ {SELECTION} }} }}"
HELLO_QUERY = "{ hello }"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- CPU


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(c) for c in text.split())
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    out = [pid]
    i = 0
    while i < len(out):
        out.extend(_children(out[i]))
        i += 1
    return out


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """utime + stime (seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu(pid: int) -> float:
    """utime + stime (seconds) of ``pid`` and its live descendants."""
    return sum(process_cpu(p) for p in descendants(pid))


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (user+nice+system+irq+softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / _TICKS


# --------------------------------------------------------------------- processes


@dataclass
class Server:
    url: str
    pid: int
    name: str


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready in {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _process(
    argv: Sequence[str], ready_url: str, name: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        list(argv),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        _wait_ready(ready_url, proc)
        yield proc
    finally:
        _stop(proc)


def c360_argv(*args: str) -> list[str]:
    """``c360 …`` run with this interpreter (same as the console script)."""
    return [sys.executable, "-m", "gateway.cli", *args]


@contextmanager
def sandbox(latency_ms: float = 0.0, customers: int = 1000, seed: int = 42) -> Iterator[Server]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = c360_argv(
        "sandbox",
        "--host",
        HOST,
        "--port",
        str(port),
        "--customers",
        str(customers),
        "--seed",
        str(seed),
        "--latency-ms",
        str(latency_ms),
    )
    with _process(argv, f"{url}/_sandbox/stats", "sandbox") as proc:
        yield Server(url, proc.pid, f"sandbox latency={latency_ms:g}ms")


def write_gateway_config(sandbox_url: str, directory: Path) -> tuple[Path, dict[str, str]]:
    """A config pointing every connector at the sandbox; secrets as env: references."""
    env: dict[str, str] = {"C360_ID_KEY": BENCH_ID_KEY}
    connectors: dict[str, Any] = {}
    for vendor in VENDORS:
        creds: dict[str, str] = {}
        for key, value in SANDBOX_CREDENTIALS[vendor].items():
            var = f"C360_BENCH_{vendor.upper()}_{key.upper()}"
            env[var] = value
            creds[key] = f"env:{var}"
        connectors[vendor] = {
            "base_url": f"{sandbox_url}/{vendor}",
            "credentials": creds,
            "timeout": 10,
        }
    path = directory / "c360-bench.yaml"
    path.write_text(
        yaml.safe_dump({"gateway": {"max_customers": 200}, "connectors": connectors}),
        encoding="utf-8",
    )
    return path, env


@contextmanager
def gateway(sandbox_url: str, *, workers: int = 1, transport: str = "aiohttp") -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="c360-bench-") as tmp:
        config, env = write_gateway_config(sandbox_url, Path(tmp))
        env["C360_TRANSPORT"] = transport
        port = free_port()
        url = f"http://{HOST}:{port}"
        argv = c360_argv(
            "serve", "--config", str(config), "--host", HOST, "--port", str(port),
            "--workers", str(workers),
        )  # fmt: skip
        with _process(argv, f"{url}/healthz", "gateway", env) as proc:
            yield Server(url, proc.pid, f"gateway {transport} x{workers}")


@contextmanager
def hello(workers: int = 1) -> Iterator[Server]:
    """The strawberry ``{ hello }`` app (bench/hello_app.py) under uvicorn."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [
        sys.executable, "-m", "uvicorn", "hello_app:app", "--app-dir", str(BENCH_DIR),
        "--host", HOST, "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with _process(argv, f"{url}/healthz", "hello") as proc:
        yield Server(url, proc.pid, f"hello x{workers}")


# ----------------------------------------------------------------------- sandbox


def sandbox_customers(sandbox_url: str, limit: int) -> list[dict[str, Any]]:
    resp = httpx.get(f"{sandbox_url}/_sandbox/customers", params={"limit": limit}, timeout=30)
    resp.raise_for_status()
    customers: list[dict[str, Any]] = resp.json()["customers"]
    return customers


def in_all_emails(sandbox_url: str, limit: int = 200) -> list[str]:
    return [c["email"] for c in sandbox_customers(sandbox_url, limit) if c.get("in_all")]


def reset_stats(sandbox_url: str) -> None:
    httpx.post(f"{sandbox_url}/_sandbox/reset-stats", timeout=10).raise_for_status()


def stats(sandbox_url: str) -> dict[str, Any]:
    resp = httpx.get(f"{sandbox_url}/_sandbox/stats", timeout=10)
    resp.raise_for_status()
    snapshot: dict[str, Any] = resp.json()
    return snapshot


# ------------------------------------------------------------------------ stats


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(out)
