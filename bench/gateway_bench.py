"""The gateway benchmarks: upstream calls, latency vs the floor, throughput and CPU.

* :func:`upstream_calls` -- (a) sandbox calls per route for ``customers(emails:)``.
* :func:`latency` -- (b) single-customer latency at 50 ms upstream latency vs
  the critical-path floor measured in the same run.
* :func:`throughput` -- (c)+(d2) requests/s and server CPU per request at 0 ms
  upstream latency: gateway (aiohttp / httpcore transport, 1 / 2 workers) next
  to the strawberry ``{ hello }`` app with the same worker count.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from common import (
    FULL_QUERY,
    HELLO_QUERY,
    MANY_QUERY,
    Server,
    descendants,
    in_all_emails,
    machine_busy,
    median,
    percentile,
    process_cpu,
    reset_stats,
    sandbox_customers,
    stats,
    tree_cpu,
)
from loadgen import raw_request, run_load, sequential_latencies

from connectors.sdk.sandbox import SANDBOX_CREDENTIALS


def _post(client: httpx.Client, url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"{url}/graphql", json={"query": query, "variables": variables})
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {json.dumps(body['errors'])[:800]}")
    return body


# ------------------------------------------------------------------------- (a)


def upstream_calls(
    sandbox_url: str, gateway_url: str, sizes: Sequence[int], runs: int
) -> dict[str, Any]:
    """Per route and N: the median (over ``runs``) of sandbox calls for one query."""
    emails = in_all_emails(sandbox_url, 1000)[: max(sizes)]
    if len(emails) < max(sizes):
        raise RuntimeError(f"only {len(emails)} in_all customers in the sandbox")
    samples: dict[int, list[dict[str, int]]] = {n: [] for n in sizes}
    with httpx.Client(timeout=120) as client:
        _post(client, gateway_url, MANY_QUERY, {"emails": emails[:1]})  # warm up
        for _ in range(runs):
            for n in sizes:
                reset_stats(sandbox_url)
                body = _post(client, gateway_url, MANY_QUERY, {"emails": emails[:n]})
                got = body["data"]["customers"]
                if len(got) != n or any(c is None for c in got):
                    raise RuntimeError(f"customers(emails:) returned {len(got)} of {n}")
                samples[n].append(stats(sandbox_url)["routes"])
    routes = sorted({r for per in samples.values() for s in per for r in s})
    table: dict[str, dict[int, float]] = {
        route: {n: median([s.get(route, 0) for s in samples[n]]) for n in sizes} for route in routes
    }
    totals = {n: median([sum(s.values()) for s in samples[n]]) for n in sizes}
    varied = any(len({s.get(route, 0) for s in samples[n]}) > 1 for route in routes for n in sizes)
    return {"sizes": list(sizes), "routes": table, "totals": totals, "varied": varied}


# ------------------------------------------------------------------------- (b)


def classify_by_hops(gateway_url: str, emails: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split customers into (3-hop: account has a parent, 2-hop: no parent account)."""
    query = (
        "query($emails: [String!]!) { customers(emails: $emails) "
        "{ email account { id parent { id } } } }"
    )
    with httpx.Client(timeout=120) as client:
        body = _post(client, gateway_url, query, {"emails": list(emails)})
    three, two = [], []
    for email, row in zip(emails, body["data"]["customers"], strict=True):
        account = row["account"] if row else None
        if account and account.get("parent"):
            three.append(email)
        else:
            two.append(email)
    return three, two


@dataclass
class LatencyRun:
    direct: list[float] = field(default_factory=list)
    three_hop: list[float] = field(default_factory=list)
    two_hop: list[float] = field(default_factory=list)


def _full_query_requests(gateway_url: str, emails: Sequence[str]) -> list[bytes]:
    return [
        raw_request(
            f"{gateway_url}/graphql",
            "POST",
            json.dumps({"query": FULL_QUERY, "variables": {"email": e}}).encode(),
        )
        for e in emails
    ]


def latency(
    sandbox_url: str,
    gateway_url: str,
    *,
    runs: int,
    three_hop_samples: int,
    two_hop_samples: int,
    direct_samples: int,
) -> dict[str, Any]:
    """(b): latency of ``customer(email:)`` vs 3 × a direct sandbox call, per run."""
    customers = [c for c in sandbox_customers(sandbox_url, 200) if c.get("in_all")]
    emails = [c["email"] for c in customers]
    three, two = classify_by_hops(gateway_url, emails)
    token = SANDBOX_CREDENTIALS["stripe"]["token"]
    stripe_ids = [c["systems"]["stripe"][0] for c in customers if c["systems"]["stripe"]]
    direct_reqs = [
        raw_request(
            f"{sandbox_url}/stripe/v1/customers/{cid}",
            headers={"Authorization": f"Bearer {token}"},
        )
        for cid in stripe_ids
    ]
    three_reqs = _full_query_requests(gateway_url, three)
    two_reqs = _full_query_requests(gateway_url, two)
    direct_url = f"{sandbox_url}/stripe/v1/customers"
    # Warm up both paths (connections, imports, the gateway's first-call work).
    sequential_latencies(gateway_url, three_reqs + two_reqs, 6)
    sequential_latencies(direct_url, direct_reqs, 5)

    per_run: list[LatencyRun] = []
    offset = 0
    for _ in range(runs):
        run = LatencyRun()
        # Interleave the probes so that drift on a noisy machine hits both alike.
        for half in (0, 1):
            d = direct_samples // 2 + (direct_samples % 2 if half else 0)
            t = three_hop_samples // 2 + (three_hop_samples % 2 if half else 0)
            w = two_hop_samples // 2 + (two_hop_samples % 2 if half else 0)
            run.direct += sequential_latencies(direct_url, _rotate(direct_reqs, offset), d)
            run.three_hop += sequential_latencies(gateway_url, _rotate(three_reqs, offset), t)
            run.two_hop += sequential_latencies(gateway_url, _rotate(two_reqs, offset), w)
            offset += 7
        per_run.append(run)

    def summarize(values: Sequence[float], hops: int, direct: float) -> dict[str, float]:
        med, p99 = median(values), percentile(values, 99)
        return {
            "median_ms": med * 1000,
            "p99_ms": p99 * 1000,
            "floor_ms": hops * direct * 1000,
            "ratio": med / (hops * direct),
            "p99_ratio": p99 / (hops * direct),
        }

    rows: list[dict[str, Any]] = []
    for run in per_run:
        direct = median(run.direct)
        rows.append(
            {
                "direct_ms": direct * 1000,
                "direct_p99_ms": percentile(run.direct, 99) * 1000,
                "three": summarize(run.three_hop, 3, direct),
                "two": summarize(run.two_hop, 2, direct),
            }
        )

    def med_of(path: tuple[str, ...]) -> float:
        values = []
        for row in rows:
            v: Any = row
            for key in path:
                v = v[key]
            values.append(float(v))
        return median(values)

    pooled_three = [x for r in per_run for x in r.three_hop]
    pooled_two = [x for r in per_run for x in r.two_hop]
    return {
        "runs": runs,
        "customers_three_hop": len(three),
        "customers_two_hop": len(two),
        "samples": {"three": three_hop_samples, "two": two_hop_samples, "direct": direct_samples},
        "per_run": rows,
        "direct_ms": med_of(("direct_ms",)),
        "direct_p99_ms": med_of(("direct_p99_ms",)),
        "three": {k: med_of(("three", k)) for k in rows[0]["three"]},
        "two": {k: med_of(("two", k)) for k in rows[0]["two"]},
        "pooled_p99_ms": {
            "three": percentile(pooled_three, 99) * 1000,
            "two": percentile(pooled_two, 99) * 1000,
        },
    }


def _rotate(items: Sequence[bytes], offset: int) -> list[bytes]:
    k = offset % len(items)
    return [*items[k:], *items[:k]]


# ------------------------------------------------------------------- (c), (d2)


@dataclass
class Target:
    label: str
    server: Server
    bodies: list[bytes]
    kind: str  # "gateway" | "hello"
    workers: int
    transport: str | None = None


class _Window:
    """CPU readings at the edges of a measured load window."""

    def __init__(self, server_pid: int, sandbox_pid: int) -> None:
        self.server_pid = server_pid
        self.sandbox_pid = sandbox_pid
        self.marks: dict[str, tuple[float, float, float, float]] = {}
        self.per_pid: dict[str, dict[int, float]] = {}

    def mark(self, edge: str) -> None:
        per_pid = {p: process_cpu(p) for p in descendants(self.server_pid)}
        self.per_pid[edge] = per_pid
        self.marks[edge] = (
            time.perf_counter(),
            sum(per_pid.values()),
            tree_cpu(self.sandbox_pid),
            machine_busy(),
        )

    def busiest_worker_share(self) -> float:
        """CPU share of the busiest worker process: 0.5 is an even split over 2."""
        start, end = self.per_pid["start"], self.per_pid["end"]
        used = [end.get(p, 0.0) - c for p, c in start.items() if p != self.server_pid]
        busy = [c for c in used if c > 0.01]
        return max(busy) / sum(busy) if len(busy) > 1 else 1.0


def full_query_bodies(sandbox_url: str) -> list[bytes]:
    emails = in_all_emails(sandbox_url, 200)
    return [json.dumps({"query": FULL_QUERY, "variables": {"email": e}}).encode() for e in emails]


def hello_bodies() -> list[bytes]:
    return [json.dumps({"query": HELLO_QUERY}).encode()]


def throughput(
    sandbox: Server,
    targets: Sequence[Target],
    *,
    runs: int,
    concurrency: int,
    warmup: float,
    duration: float,
    tool: str = "auto",
    probe: int = 30,
) -> dict[str, Any]:
    """Each target under closed-loop load, ``runs`` rounds, order rotated per round.

    After the load, ``probe`` requests one at a time on one keep-alive connection
    give each target's unloaded latency (this is what exposes a missing
    TCP_NODELAY: ~40 ms of delayed ACK on every request after the first).
    """
    samples: dict[str, list[dict[str, float]]] = {t.label: [] for t in targets}
    tools: set[str] = set()
    for r in range(runs):
        order = [*targets[r % len(targets) :], *targets[: r % len(targets)]]
        for target in order:
            window = _Window(target.server.pid, sandbox.pid)
            result = run_load(
                f"{target.server.url}/graphql",
                target.bodies,
                concurrency=concurrency,
                warmup=warmup,
                duration=duration,
                on_window=window.mark,
                tool=tool,
            )
            tools.add(result.tool)
            (t0, cpu0, sb0, busy0), (t1, cpu1, sb1, busy1) = (
                window.marks["start"],
                window.marks["end"],
            )
            split = window.busiest_worker_share()
            n = max(1, result.requests)
            # Everything else the machine did meanwhile: load generator, other tenants.
            other = (busy1 - busy0) - (cpu1 - cpu0) - (sb1 - sb0)
            samples[target.label].append(
                {
                    "rps": result.rps,
                    "requests": result.requests,
                    "errors": result.errors,
                    "cpu_ms": (cpu1 - cpu0) * 1000 / n,
                    "sandbox_cpu_ms": (sb1 - sb0) * 1000 / n,
                    "client_cpu_ms": (result.client_cpu or math.nan) * 1000 / n,
                    "server_cores": (cpu1 - cpu0) / (t1 - t0),
                    "other_cores": max(0.0, other) / (t1 - t0),
                    "busiest_worker": split,
                }
            )
    unloaded = {
        t.label: sequential_latencies(
            f"{t.server.url}/graphql",
            [raw_request(f"{t.server.url}/graphql", "POST", b) for b in t.bodies],
            probe,
        )
        for t in targets
    }
    summary: dict[str, Any] = {
        "runs": runs,
        "probe": probe,
        "concurrency": concurrency,
        "warmup": warmup,
        "duration": duration,
        "tool": ", ".join(sorted(tools)),
        "targets": {},
    }
    for target in targets:
        rows = samples[target.label]
        summary["targets"][target.label] = {
            "kind": target.kind,
            "workers": target.workers,
            "transport": target.transport,
            "rps": median([s["rps"] for s in rows]),
            "cpu_ms": median([s["cpu_ms"] for s in rows]),
            "sandbox_cpu_ms": median([s["sandbox_cpu_ms"] for s in rows]),
            "client_cpu_ms": median([s["client_cpu_ms"] for s in rows]),
            "server_cores": median([s["server_cores"] for s in rows]),
            "other_cores": median([s["other_cores"] for s in rows]),
            "busiest_worker": median([s["busiest_worker"] for s in rows]),
            "errors": sum(int(s["errors"]) for s in rows),
            "requests": sum(int(s["requests"]) for s in rows),
            "cpu_ms_runs": [round(s["cpu_ms"], 2) for s in rows],
            "rps_runs": [round(s["rps"], 1) for s in rows],
            "unloaded_ms": median(unloaded[target.label]) * 1000,
        }

    def ratio(a: str, b: str, key: str) -> float | None:
        if a not in samples or b not in samples:
            return None
        pairs = zip(samples[a], samples[b], strict=True)
        return median([x[key] / y[key] for x, y in pairs if y[key] > 0])

    ratios: dict[str, Any] = {}
    for workers in (1, 2):
        for transport in ("aiohttp", "httpcore"):
            gw, hl = f"gateway {transport} x{workers}", f"hello x{workers}"
            ratios[f"{gw} / {hl} rps"] = ratio(gw, hl, "rps")
            ratios[f"{gw} / {hl} cpu"] = ratio(gw, hl, "cpu_ms")
        a, h = f"gateway aiohttp x{workers}", f"gateway httpcore x{workers}"
        ratios[f"httpcore / aiohttp x{workers} cpu"] = ratio(h, a, "cpu_ms")
        ratios[f"httpcore / aiohttp x{workers} rps"] = ratio(h, a, "rps")
    summary["ratios"] = {k: v for k, v in ratios.items() if v is not None}
    return summary
