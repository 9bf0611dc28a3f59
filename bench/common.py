"""Shared plumbing for the benchmarks: processes, ports, readiness, CPU, queries.

Every process here listens on 127.0.0.1 only, on a free port, and is stopped
in a ``finally`` block (terminate, then kill after a grace period).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
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
    log: Path | None = None  # the process's stderr, while it runs

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace") if self.log else ""
        except OSError:
            return ""


@dataclass
class Launch:
    """A server process to start: readiness is a 200 from ``ready_url``."""

    argv: list[str]
    url: str
    ready_url: str
    name: str
    env: dict[str, str] = field(default_factory=dict)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(launch: Launch, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{launch.name} exited with {proc.returncode}; its stderr ends:\n{_tail(log)}"
            )
        try:
            if httpx.get(launch.ready_url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{launch.name} did not become ready in {timeout}s:\n{_tail(log)}")


def _stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every process first (they shut down in parallel), then reap."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    _stop_all([proc])


@contextmanager
def launched(launches: Sequence[Launch], timeout: float = 90.0) -> Iterator[list[Server]]:
    """Start every process at once (startup overlaps), wait until all are ready.

    stderr goes to a log file per process (the gateway logs a traceback per
    failed upstream call, which the fault benchmarks cause by the hundred);
    its tail is shown when a process fails to start.
    """
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="c360-bench-logs-") as logs:
        try:
            paths = []
            for i, launch in enumerate(launches):
                path = Path(logs) / f"{i}.log"
                paths.append(path)
                with path.open("wb") as err:
                    procs.append(
                        subprocess.Popen(
                            launch.argv,
                            env={**os.environ, **launch.env},
                            stdout=subprocess.DEVNULL,
                            stderr=err,
                            cwd=REPO,
                        )
                    )
            for launch, proc, path in zip(launches, procs, paths, strict=True):
                _wait_ready(launch, proc, path, timeout)
            yield [
                Server(launch.url, proc.pid, launch.name, path)
                for launch, proc, path in zip(launches, procs, paths, strict=True)
            ]
        finally:
            _stop_all(procs)


def c360_argv(*args: str) -> list[str]:
    """``c360 …`` run with this interpreter (same as the console script)."""
    return [sys.executable, "-m", "gateway.cli", *args]


def sandbox_launch(latency_ms: float = 0.0, customers: int = 1000, seed: int = 42) -> Launch:
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = c360_argv(
        "sandbox", "--host", HOST, "--port", str(port), "--customers", str(customers),
        "--seed", str(seed), "--latency-ms", str(latency_ms),
    )  # fmt: skip
    return Launch(argv, url, f"{url}/_sandbox/stats", f"sandbox latency={latency_ms:g}ms")


@contextmanager
def sandbox(latency_ms: float = 0.0, customers: int = 1000, seed: int = 42) -> Iterator[Server]:
    with launched([sandbox_launch(latency_ms, customers, seed)]) as (server,):
        yield server


@dataclass(frozen=True)
class GatewayOptions:
    """What differs between the gateways the benchmarks start.

    ``issuer_url`` None means ``gateway.insecure_no_auth`` (say so in the report);
    ``cache`` is ``"off"``, ``"memory"`` or ``"redis"`` (then ``redis_url``).
    """

    issuer_url: str | None = None
    cache: str = "off"
    redis_url: str | None = None
    max_rounds: int | None = None  # identity.max_rounds; None = the default (3)
    request_deadline: float | None = None  # gateway.request_deadline; None = default
    breaker_failures: int | None = None  # every connector's resilience.breaker.failures
    cache_timeout: float | None = None  # cache.timeout (Redis connect/read); default 0.25 s
    workers: int = 1
    transport: str = "aiohttp"
    merge: bool = True  # False: resilience.merge_max_keys 0 (each request's batches alone)
    audit: bool = True  # False: bench/audit_off.py, the gateway without its audit trail

    @property
    def label(self) -> str:
        parts = [f"gateway {self.transport} x{self.workers}"]
        if self.cache != "off":
            parts.append(f"cache {self.cache}")
        if self.cache_timeout is not None:
            parts.append(f"cache.timeout {self.cache_timeout:g} s")
        if self.max_rounds is not None:
            parts.append(f"identity.max_rounds {self.max_rounds}")
        if self.request_deadline is not None:
            parts.append(f"deadline {self.request_deadline:g} s")
        if self.breaker_failures is not None:
            parts.append(f"breaker after {self.breaker_failures} failures")
        if not self.merge:
            parts.append("no merging")
        if not self.audit:
            parts.append("audit off")
        if self.issuer_url is None:
            parts.append("no auth")
        return ", ".join(parts)


# Warm means warm for the whole run: no entry may turn stale (and be refreshed
# in the background) while a measured window is open. The gateway's default
# soft TTL is 60 s.
# "Unknown to the source" answers (e.g. a phone no one else has) are cached for
# negative_ttl, 30 s by default: raised too.
WARM_TTLS = {"soft_ttl": 3600, "hard_ttl": 3600, "max_stale": 7200, "negative_ttl": 3600}


def write_gateway_config(
    sandbox_url: str, directory: Path, options: GatewayOptions | None = None
) -> tuple[Path, dict[str, str]]:
    """A config pointing every connector at the sandbox; secrets as env: references.

    Always: the per-principal rate limit and the client-side vendor rate limits
    off (the sandbox has none, and they would meter the load, not the
    gateway), the query cost limit raised (200 full profiles in one query), and
    the audit trail in a file in ``directory``.
    """
    options = options or GatewayOptions()
    env: dict[str, str] = {"C360_ID_KEY": BENCH_ID_KEY}
    # A file, not env: in-process runs read the key after their env is restored.
    audit_key = directory / "audit.key"
    audit_key.write_text("YmVuY2gtYXVkaXQta2V5LTMyLWJ5dGVzLWxvbmctYXQtbGVhc3Q\n", encoding="utf-8")
    connectors: dict[str, Any] = {}
    for vendor in VENDORS:
        creds: dict[str, str] = {}
        for key, value in SANDBOX_CREDENTIALS[vendor].items():
            var = f"C360_BENCH_{vendor.upper()}_{key.upper()}"
            env[var] = value
            creds[key] = f"env:{var}"
        resilience: dict[str, Any] = {"rate_limit": False}
        if options.breaker_failures is not None:
            resilience["breaker"] = {"failures": options.breaker_failures}
        if not options.merge:
            resilience["merge_max_keys"] = 0
        connectors[vendor] = {
            "base_url": f"{sandbox_url}/{vendor}",
            "credentials": creds,
            "timeout": 10,
            "resilience": resilience,
        }
    gateway_section: dict[str, Any] = {"max_customers": 200, "rate_limit": False}
    if options.issuer_url is None:
        gateway_section["insecure_no_auth"] = True
    if options.request_deadline is not None:
        gateway_section["request_deadline"] = options.request_deadline
    document: dict[str, Any] = {
        "gateway": gateway_section,
        "graphql": {"max_cost": 1_000_000},
        "connectors": connectors,
        "audit": {
            "sink": "file",
            "path": str(directory / "audit.jsonl"),
            "key": f"file:{audit_key}",
        },
    }
    if options.cache == "off":
        document["cache"] = {"enabled": False}
    elif options.cache == "memory":
        document["cache"] = dict(WARM_TTLS)
    elif options.cache == "redis":
        if not options.redis_url:
            raise ValueError("cache 'redis' needs a redis_url")
        document["cache"] = {**WARM_TTLS, "redis_url": options.redis_url}
    else:
        raise ValueError(f"unknown cache mode {options.cache!r}")
    if options.cache_timeout is not None:
        document["cache"]["timeout"] = options.cache_timeout
    if options.issuer_url is not None:
        document["auth"] = {"issuer": options.issuer_url, "audience": ["c360"]}
    if options.max_rounds is not None:
        document["identity"] = {"max_rounds": options.max_rounds}
    path = directory / "c360-bench.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path, env


def in_process_settings(sandbox_url: str, options: GatewayOptions, directory: Path) -> Any:
    """The gateway's ``Settings`` for running its app in this process: the config
    :func:`write_gateway_config` writes, with its environment set only while it is read."""
    from gateway.config import load_settings

    config, env = write_gateway_config(sandbox_url, directory, options)
    env["C360_TRANSPORT"] = options.transport
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_settings(config)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def gateway_launch(sandbox_url: str, options: GatewayOptions, directory: Path) -> Launch:
    """``c360 serve`` with the config :func:`write_gateway_config` writes into ``directory``."""
    config, env = write_gateway_config(sandbox_url, directory, options)
    env["C360_TRANSPORT"] = options.transport
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = c360_argv(
        "serve", "--config", str(config), "--host", HOST, "--port", str(port),
        "--workers", str(options.workers),
    )  # fmt: skip
    if not options.audit:
        env["C360_CONFIG"] = str(config)
        argv = [
            sys.executable, "-m", "uvicorn", "audit_off:app", "--factory",
            "--app-dir", str(BENCH_DIR), "--host", HOST, "--port", str(port),
            "--workers", str(options.workers), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    return Launch(argv, url, f"{url}/healthz", options.label, env)


@contextmanager
def gateways(
    sandbox_url: str, options: Mapping[str, GatewayOptions], extra: Sequence[Launch] = ()
) -> Iterator[dict[str, Server]]:
    """Several gateways (and ``extra`` servers, e.g. hello apps) started in parallel,
    keyed by the given names (extra ones by their ``name``)."""
    with ExitStack() as stack:
        launches = []
        for options_ in options.values():
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="c360-bench-")))
            launches.append(gateway_launch(sandbox_url, options_, tmp))
        launches += extra
        names = [*options, *(x.name for x in extra)]
        servers = stack.enter_context(launched(launches))
        yield dict(zip(names, servers, strict=True))


@contextmanager
def gateway(sandbox_url: str, options: GatewayOptions | None = None) -> Iterator[Server]:
    with gateways(sandbox_url, {"gw": options or GatewayOptions()}) as found:
        yield found["gw"]


def hello_launch(workers: int = 1) -> Launch:
    """The strawberry ``{ hello }`` app (bench/hello_app.py) under uvicorn."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [
        sys.executable, "-m", "uvicorn", "hello_app:app", "--app-dir", str(BENCH_DIR),
        "--host", HOST, "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return Launch(argv, url, f"{url}/healthz", f"hello x{workers}")


# ------------------------------------------------------------------ auth, redis


@dataclass
class Issuer:
    """A development OIDC issuer (gateway.issuer.DevIssuer) served in a thread."""

    url: str
    dev: Any

    def token(self, role: str = "admin") -> str:
        # admin + MFA: every field of the full query is readable in full
        # (phone is a sensitive PII field).
        token: str = self.dev.mint_token(role, mfa=True, ttl=6 * 3600)
        return token

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}


@contextmanager
def issuer() -> Iterator[Issuer]:
    """Discovery, JWKS and token endpoints on 127.0.0.1, in this process."""
    from connectors.sdk.testing.server import serve_in_thread
    from gateway.issuer import DevIssuer

    dev = DevIssuer()
    with serve_in_thread(dev.app) as url:
        dev.issuer_url = url
        yield Issuer(url, dev)


def redis_path() -> str | None:
    return shutil.which("redis-server")


@contextmanager
def redis_server() -> Iterator[Server]:
    """A throwaway redis-server on 127.0.0.1: no persistence, stopped at the end."""
    binary = redis_path()
    if binary is None:
        raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="c360-redis-") as tmp:
        proc = subprocess.Popen(
            [
                binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", tmp, "--logfile", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}")
                try:
                    with socket.create_connection((HOST, port), timeout=1) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(64).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield Server(f"redis://{HOST}:{port}/0", proc.pid, "redis")
        finally:
            _stop(proc)


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


def set_faults(sandbox_url: str, faults: Mapping[str, Any]) -> None:
    """Replace the sandbox's faults (``{}`` clears them)."""
    httpx.post(f"{sandbox_url}/_sandbox/faults", json=dict(faults), timeout=10).raise_for_status()
