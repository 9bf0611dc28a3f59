"""The gateway benchmarks: upstream calls, latency vs the floor, throughput and CPU,
the cache and the request deadline.

* :func:`upstream_calls` -- (a) sandbox calls per route for ``customers(emails:)``.
* :func:`identity_calls`, :func:`account_page_calls` -- (e) what identity
  resolution costs in upstream calls, and one page of accounts with children
  and contacts.
* :func:`latency` -- (b) single-customer latency at 50 ms upstream latency vs
  the critical-path floor measured in the same run (bench/critical_path.py).
* :func:`throughput` -- (c)+(d2)+(f) requests/s, latency under load, server
  CPU per request and upstream calls per request, per target.
* :func:`burst_calls` -- (f) 100 identical concurrent queries for a cold customer.
* :func:`hang` -- (f) the full query while one vendor hangs.

Every gateway request carries a bearer token from a DevIssuer (``headers``)
unless the caller passes none for a gateway started with ``insecure_no_auth``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from common import (
    FULL_QUERY,
    HELLO_QUERY,
    MANY_QUERY,
    GatewayOptions,
    Server,
    descendants,
    in_all_emails,
    machine_busy,
    median,
    percentile,
    process_cpu,
    reset_stats,
    sandbox_customers,
    set_faults,
    stats,
    tree_cpu,
)
from critical_path import HopPlan, capture, replay_latencies
from loadgen import (
    burst,
    each_once,
    raw_request,
    run_load,
    sequential_answers,
    sequential_latencies,
)

from connectors.sdk.sandbox import SANDBOX_CREDENTIALS

ACCOUNTS_QUERY = (
    "{ accounts(first: 20) { edges { node { id name "
    "children(first: 50) { edges { node { id } } } "
    "contacts(first: 50) { edges { node { id email } } } } } } }"
)

Headers = Mapping[str, str] | None


def _post(client: httpx.Client, url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"{url}/graphql", json={"query": query, "variables": variables})
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {json.dumps(body['errors'])[:800]}")
    return body


def _client(headers: Headers, timeout: float = 120) -> httpx.Client:
    return httpx.Client(timeout=timeout, headers=dict(headers or {}))


def graphql_request(url: str, query: str, variables: dict[str, Any], headers: Headers) -> bytes:
    body = json.dumps({"query": query, "variables": variables}).encode()
    return raw_request(f"{url}/graphql", "POST", body, headers)


# ---------------------------------------------------------------- upstream calls

_METRIC = re.compile(
    r'^c360_upstream_requests_total\{connector="([^"]+)",operation="([^"]+)",'
    r'outcome="([^"]+)"\} ([0-9.e+]+)$',
    re.MULTILINE,
)


def upstream_operations(client: httpx.Client, gateway_url: str) -> Counter[str]:
    """Calls per ``connector.operation`` so far, from the gateway's /metrics (1 worker)."""
    text = client.get(f"{gateway_url}/metrics").text
    out: Counter[str] = Counter()
    for connector, operation, _outcome, value in _METRIC.findall(text):
        out[f"{connector}.{operation}"] += int(float(value))
    return out


def count_calls(
    sandbox_url: str,
    gateway_url: str,
    query: str,
    variables: dict[str, Any],
    *,
    headers: Headers,
    runs: int,
    check: Any = None,
) -> dict[str, Any]:
    """Upstream calls of one query, per sandbox route and per connector operation
    (median over ``runs``); ``check(body)`` validates each answer."""
    routes: list[dict[str, int]] = []
    operations: list[Counter[str]] = []
    with _client(headers) as client:
        for _ in range(runs):
            before = upstream_operations(client, gateway_url)
            reset_stats(sandbox_url)
            body = _post(client, gateway_url, query, variables)
            if check is not None:
                check(body)
            routes.append(stats(sandbox_url)["routes"])
            ops = upstream_operations(client, gateway_url)
            ops.subtract(before)
            operations.append(+ops)
    route_names = sorted({r for s in routes for r in s})
    op_names = sorted({o for s in operations for o in s})
    return {
        "routes": {r: median([s.get(r, 0) for s in routes]) for r in route_names},
        "operations": {o: median([s.get(o, 0) for s in operations]) for o in op_names},
        "total": median([sum(s.values()) for s in routes]),
        "varied": any(len({s.get(r, 0) for s in routes}) > 1 for r in route_names),
    }


def _check_customers(n: int) -> Any:
    def check(body: dict[str, Any]) -> None:
        got = body["data"]["customers"]
        if len(got) != n or any(c is None for c in got):
            raise RuntimeError(f"customers(emails:) returned {len(got)} of {n}")

    return check


def upstream_calls(
    sandbox_url: str, gateway_url: str, sizes: Sequence[int], runs: int, headers: Headers
) -> dict[str, Any]:
    """(a) Per route and N: sandbox calls for one ``customers(emails:)`` query."""
    emails = in_all_emails(sandbox_url, 1000)[: max(sizes)]
    if len(emails) < max(sizes):
        raise RuntimeError(f"only {len(emails)} in_all customers in the sandbox")
    with _client(headers) as client:
        _post(client, gateway_url, MANY_QUERY, {"emails": emails[-1:]})  # warm up
    per_n = {}
    for n in sizes:
        variables = {"emails": emails[:n]}
        check = _check_customers(n)
        per_n[n] = count_calls(
            sandbox_url, gateway_url, MANY_QUERY, variables, headers=headers, runs=runs, check=check
        )
    routes = sorted({r for c in per_n.values() for r in c["routes"]})
    ops = sorted({o for c in per_n.values() for o in c["operations"]})
    return {
        "sizes": list(sizes),
        "routes": {r: {n: per_n[n]["routes"].get(r, 0) for n in sizes} for r in routes},
        "operations": {o: {n: per_n[n]["operations"].get(o, 0) for n in sizes} for o in ops},
        "totals": {n: per_n[n]["total"] for n in sizes},
        "varied": any(c["varied"] for c in per_n.values()),
    }


def identity_calls(
    sandbox_url: str, gateways: Mapping[str, str], n: int, runs: int, headers: Headers
) -> dict[str, Any]:
    """(e) ``customers(emails:)`` for ``n`` customers on each gateway (e.g. full
    identity resolution vs ``max_rounds: 1``), per route and per operation."""
    emails = in_all_emails(sandbox_url, 1000)[:n]
    with _client(headers) as client:
        for url in gateways.values():
            _post(client, url, MANY_QUERY, {"emails": emails[-1:]})  # warm up
    found = {}
    for label, url in gateways.items():
        variables = {"emails": emails}
        check = _check_customers(n)
        found[label] = count_calls(
            sandbox_url, url, MANY_QUERY, variables, headers=headers, runs=runs, check=check
        )
    routes = sorted({r for c in found.values() for r in c["routes"]})
    ops = sorted({o for c in found.values() for o in c["operations"]})
    return {
        "n": n,
        "labels": list(gateways),
        "routes": {r: {k: c["routes"].get(r, 0) for k, c in found.items()} for r in routes},
        "operations": {o: {k: c["operations"].get(o, 0) for k, c in found.items()} for o in ops},
        "totals": {k: c["total"] for k, c in found.items()},
        "varied": any(c["varied"] for c in found.values()),
    }


def account_page_calls(
    sandbox_url: str, gateway_url: str, runs: int, headers: Headers
) -> dict[str, Any]:
    """(e) One page of 20 accounts with their children and contacts."""
    seen: dict[str, int] = {}

    def check(body: dict[str, Any]) -> None:
        edges = body["data"]["accounts"]["edges"]
        seen["accounts"] = len(edges)
        seen["children"] = sum(len(e["node"]["children"]["edges"]) for e in edges)
        seen["contacts"] = sum(len(e["node"]["contacts"]["edges"]) for e in edges)

    with _client(headers) as client:
        _post(client, gateway_url, "{ accounts(first: 1) { edges { node { id } } } }", {})
    out = count_calls(
        sandbox_url, gateway_url, ACCOUNTS_QUERY, {}, headers=headers, runs=runs, check=check
    )
    out["returned"] = dict(seen)
    out["query"] = ACCOUNTS_QUERY
    return out


# ------------------------------------------------------------------------- (b)


def classify_by_parent(
    gateway_url: str, emails: Sequence[str], headers: Headers
) -> tuple[list[str], list[str]]:
    """Split customers into (account has a parent, no parent account)."""
    query = (
        "query($emails: [String!]!) { customers(emails: $emails) "
        "{ email account { id parent { id } } } }"
    )
    with _client(headers) as client:
        body = _post(client, gateway_url, query, {"emails": list(emails)})
    parent, none = [], []
    for email, row in zip(emails, body["data"]["customers"], strict=True):
        account = row["account"] if row else None
        (parent if account and account.get("parent") else none).append(email)
    return parent, none


@dataclass
class _Class:
    variant: str
    depth: int
    plans: list[HopPlan]
    requests: list[bytes]
    gateway: list[list[float]] = field(default_factory=list)  # per run
    replay: list[list[float]] = field(default_factory=list)


def _modal_shape(plans: Sequence[HopPlan]) -> list[list[str]]:
    shapes = Counter(json.dumps(p.shape()) for p in plans)
    shape: list[list[str]] = json.loads(shapes.most_common(1)[0][0])
    return shape


def latency(
    sandbox_url: str,
    gateways: Mapping[str, str],
    options: Mapping[str, GatewayOptions],
    headers: Headers,
    *,
    runs: int,
    customers: int,
    samples: int,
    replays: int,
    direct_samples: int,
) -> dict[str, Any]:
    """(b) Latency of ``customer(email:)`` per gateway variant and hop depth, against
    (1) the replayed critical path of the same customers and (2) depth × a direct call."""
    answer_key = [c for c in sandbox_customers(sandbox_url, 200) if c.get("in_all")]
    emails = [c["email"] for c in answer_key]
    first = next(iter(gateways.values()))
    parent, none = classify_by_parent(first, emails, headers)
    picked = parent[:customers] + none[:customers]
    warmup_email = none[customers] if len(none) > customers else emails[-1]

    classes: list[_Class] = []
    for variant, url in gateways.items():
        plans = capture(sandbox_url, options[variant], picked, headers or {}, warmup_email)
        by_depth: dict[int, list[HopPlan]] = {}
        for email in picked:
            by_depth.setdefault(plans[email].depth, []).append(plans[email])
        for depth, group in sorted(by_depth.items(), reverse=True):
            reqs = [graphql_request(url, FULL_QUERY, {"email": p.email}, headers) for p in group]
            classes.append(_Class(variant, depth, group, reqs))

    token = SANDBOX_CREDENTIALS["stripe"]["token"]
    stripe_ids = [c["systems"]["stripe"][0] for c in answer_key if c["systems"]["stripe"]]
    direct_url = f"{sandbox_url}/stripe/v1/customers"
    direct_reqs = [
        raw_request(f"{direct_url}/{cid}", headers={"Authorization": f"Bearer {token}"})
        for cid in stripe_ids
    ]
    # Warm up every path: connections, the gateway's first-call work.
    for cls in classes:
        sequential_latencies(gateways[cls.variant], cls.requests, 3)
        replay_latencies(sandbox_url, cls.plans, 2)
    sequential_latencies(direct_url, direct_reqs, 5)

    direct_runs: list[list[float]] = []
    offset = 0
    for _ in range(runs):
        direct: list[float] = []
        for cls in classes:
            cls.gateway.append([])
            cls.replay.append([])
        # Interleave the probes so that drift on a noisy machine hits all alike.
        for half in (0, 1):
            d = direct_samples // 2 + (direct_samples % 2 if half else 0)
            direct += sequential_latencies(direct_url, _rotate(direct_reqs, offset), d)
            for cls in classes:
                g = samples // 2 + (samples % 2 if half else 0)
                r = replays // 2 + (replays % 2 if half else 0)
                k = offset % len(cls.plans)
                cls.gateway[-1] += sequential_latencies(
                    gateways[cls.variant], _rotate(cls.requests, k), g
                )
                cls.replay[-1] += replay_latencies(sandbox_url, _rotate(cls.plans, k), r)
            offset += 3
        direct_runs.append(direct)

    rows = []
    for cls in classes:
        per_run = []
        for run, (gw, rp) in enumerate(zip(cls.gateway, cls.replay, strict=True)):
            d = median(direct_runs[run])
            med, p99, floor = median(gw), percentile(gw, 99), median(rp)
            per_run.append(
                {
                    "median_ms": med * 1000,
                    "p99_ms": p99 * 1000,
                    "replay_ms": floor * 1000,
                    "simple_ms": cls.depth * d * 1000,
                    "ratio_replay": med / floor,
                    "ratio_simple": med / (cls.depth * d),
                    "p99_ratio_replay": p99 / floor,
                    "over_replay_ms": (med - floor) * 1000,
                }
            )
        row: dict[str, Any] = {k: median([r[k] for r in per_run]) for k in per_run[0]}
        pooled = [x for run in cls.gateway for x in run]
        row.update(
            {
                "variant": cls.variant,
                "depth": cls.depth,
                "customers": len(cls.plans),
                "calls": median([p.calls for p in cls.plans]),
                "shape": _modal_shape(cls.plans),
                "per_run_ratio_replay": [round(r["ratio_replay"], 3) for r in per_run],
                "per_run_ratio_simple": [round(r["ratio_simple"], 3) for r in per_run],
                "pooled_p99_ms": percentile(pooled, 99) * 1000,
                "samples": samples,
                "replays": replays,
            }
        )
        rows.append(row)
    return {
        "runs": runs,
        "variants": {k: _describe(v) for k, v in options.items()},
        "direct_ms": median([median(r) for r in direct_runs]) * 1000,
        "direct_p99_ms": median([percentile(r, 99) for r in direct_runs]) * 1000,
        "direct_samples": direct_samples,
        "classes": rows,
    }


def _describe(options: GatewayOptions) -> str:
    rounds = options.max_rounds or 3
    return f"identity.max_rounds {rounds}" + ("" if options.max_rounds else " (default)")


def _rotate(items: Sequence[Any], offset: int) -> list[Any]:
    k = offset % len(items)
    return [*items[k:], *items[:k]]


# ------------------------------------------------------------------ (c), (d2), (f)


@dataclass
class Target:
    label: str
    server: Server
    bodies: list[bytes]
    kind: str  # "gateway" | "hello"
    workers: int
    transport: str | None = None
    headers: Headers = None
    cache: str = "off"
    auth: bool = True


class _Window:
    """CPU and upstream-call readings at the edges of a measured load window."""

    def __init__(self, server_pid: int, sandbox: Server) -> None:
        self.server_pid = server_pid
        self.sandbox = sandbox
        self.marks: dict[str, tuple[float, float, float, float, int]] = {}
        self.per_pid: dict[str, dict[int, float]] = {}

    def mark(self, edge: str) -> None:
        per_pid = {p: process_cpu(p) for p in descendants(self.server_pid)}
        self.per_pid[edge] = per_pid
        self.marks[edge] = (
            time.perf_counter(),
            sum(per_pid.values()),
            tree_cpu(self.sandbox.pid),
            machine_busy(),
            int(stats(self.sandbox.url)["total"]),
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


def warm_cache(
    sandbox_url: str, url: str, bodies: Sequence[bytes], headers: Headers, max_passes: int = 6
) -> dict[str, Any]:
    """Send every body until one whole pass makes no upstream call (each worker of a
    multi-worker gateway holds its own memory cache, so that can take a few passes)."""
    graphql = f"{url}/graphql"
    raws = [raw_request(graphql, "POST", b, headers) for b in bodies]
    calls = []
    for _ in range(max_passes):
        before = int(stats(sandbox_url)["total"])
        answers = each_once(graphql, raws, 16)
        bad = [a for a in answers if a.status != 200 or b'"errors"' in a.body]
        if bad:
            raise RuntimeError(f"warm-up of {url}: {bad[0].status} {bad[0].body[:300]!r}")
        calls.append(int(stats(sandbox_url)["total"]) - before)
        if calls[-1] == 0:
            break
    return {"passes": len(calls), "calls_per_pass": calls, "warm": calls[-1] == 0}


def throughput(
    sandbox: Server,
    targets: Sequence[Target],
    *,
    runs: int,
    concurrency: int,
    warmup: float,
    duration: float,
    tool: str = "python",
    probe: int = 30,
    ratios: Sequence[tuple[str, str, str, str]] = (),
) -> dict[str, Any]:
    """Each target under closed-loop load, ``runs`` rounds, order rotated per round.

    Cache-on targets are warmed first (:func:`warm_cache`). After the load,
    ``probe`` requests one at a time on one keep-alive connection give each
    target's unloaded latency (this is what exposes a missing TCP_NODELAY:
    ~40 ms of delayed ACK on every request after the first). ``ratios`` are
    ``(name, numerator label, denominator label, key)``: medians of per-run ratios.
    """
    warmed = {
        t.label: warm_cache(sandbox.url, t.server.url, t.bodies, t.headers)
        for t in targets
        if t.cache != "off"
    }
    samples: dict[str, list[dict[str, float]]] = {t.label: [] for t in targets}
    latencies: dict[str, list[list[float]]] = {t.label: [] for t in targets}
    tools: set[str] = set()
    for r in range(runs):
        order = [*targets[r % len(targets) :], *targets[: r % len(targets)]]
        for target in order:
            window = _Window(target.server.pid, sandbox)
            result = run_load(
                f"{target.server.url}/graphql",
                target.bodies,
                concurrency=concurrency,
                warmup=warmup,
                duration=duration,
                on_window=window.mark,
                tool=tool,
                headers=target.headers,
            )
            tools.add(result.tool)
            (t0, cpu0, sb0, busy0, n0) = window.marks["start"]
            (t1, cpu1, sb1, busy1, n1) = window.marks["end"]
            split = window.busiest_worker_share()
            n = max(1, result.requests)
            # Everything else the machine did meanwhile: load generator, other tenants.
            other = (busy1 - busy0) - (cpu1 - cpu0) - (sb1 - sb0)
            latencies[target.label].append(result.latencies)
            samples[target.label].append(
                {
                    "rps": result.rps,
                    "requests": result.requests,
                    "errors": result.errors,
                    "cpu_ms": (cpu1 - cpu0) * 1000 / n,
                    "sandbox_cpu_ms": (sb1 - sb0) * 1000 / n,
                    "upstream_per_req": (n1 - n0) / n,
                    "client_cpu_ms": (result.client_cpu or math.nan) * 1000 / n,
                    "server_cores": (cpu1 - cpu0) / (t1 - t0),
                    "other_cores": max(0.0, other) / (t1 - t0),
                    "busiest_worker": split,
                    "p50_ms": percentile(result.latencies, 50) * 1000,
                    "p99_ms": percentile(result.latencies, 99) * 1000,
                }
            )
    unloaded = {
        t.label: sequential_latencies(
            f"{t.server.url}/graphql",
            [raw_request(f"{t.server.url}/graphql", "POST", b, t.headers) for b in t.bodies],
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
        "warmed": warmed,
        "targets": {},
    }
    keys = list(next(iter(samples.values()))[0]) if samples else []
    for target in targets:
        rows = samples[target.label]
        entry: dict[str, Any] = {k: median([s[k] for s in rows]) for k in keys}
        pooled = [x for run in latencies[target.label] for x in run]
        entry.update(
            {
                "kind": target.kind,
                "workers": target.workers,
                "transport": target.transport,
                "cache": target.cache,
                "auth": target.auth,
                "errors": sum(int(s["errors"]) for s in rows),
                "requests": sum(int(s["requests"]) for s in rows),
                "cpu_ms_runs": [round(s["cpu_ms"], 2) for s in rows],
                "rps_runs": [round(s["rps"], 1) for s in rows],
                "upstream_per_req_runs": [s.get("upstream_per_req") for s in rows],
                "pooled_p99_ms": percentile(pooled, 99) * 1000,
                "unloaded_ms": median(unloaded[target.label]) * 1000,
                "unloaded_p99_ms": percentile(unloaded[target.label], 99) * 1000,
            }
        )
        summary["targets"][target.label] = entry

    out: dict[str, float] = {}
    for name, a, b, key in ratios:
        if a in samples and b in samples:
            pairs = zip(samples[a], samples[b], strict=True)
            out[name] = median([x[key] / y[key] for x, y in pairs if y[key] > 0])
    summary["ratios"] = out
    return summary


# ------------------------------------------------------------------------- (f)


def cold_emails(sandbox_url: str, skip: int = 200, count: int = 40) -> list[str]:
    """Customers in all four systems that no benchmark query has touched: the
    load tests rotate over the in_all customers among the first 200."""
    found = [
        c["email"]
        for c in sandbox_customers(sandbox_url, 1000)[skip:]
        if c.get("in_all") and c.get("email")
    ]
    if len(found) < count:
        raise RuntimeError(f"only {len(found)} cold in_all customers past the first {skip}")
    return found[:count]


# Read once per worker process for its lifetime (Mailchimp's list names), not per
# customer: a worker's first lookup pays it whatever the cache holds.
ONCE_PER_PROCESS = frozenset({"mailchimp GET /3.0/lists"})

# gateway/cache.py logs "cache store failed (redis: <ExceptionName>); <connector> ..."
_STORE_ERROR = re.compile(
    r"cache store failed \(redis: (\w+)\)|cache store redis breaker is now (opened)"
)


def _store_errors(text: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for error, opened in _STORE_ERROR.findall(text):
        found["breaker opened" if opened else error] += 1
    return found


_CACHE_EVENT = re.compile(
    r'^c360_cache_events_total\{connector="([^"]+)",event="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE
)


def cache_events(url: str, workers: int) -> tuple[Counter[str], int]:
    """Cache events (hit, miss, wait, redis_error, fail_open, ...) summed over the
    gateway's worker processes, and how many workers answered. Each worker has
    its own /metrics registry and a new connection reaches one of them at
    random: ask until ``workers`` different answers came back (or give up)."""
    texts: set[str] = set()
    for _ in range(8 * workers):
        texts.add(httpx.get(f"{url}/metrics", timeout=10).text)
        if len(texts) >= workers:
            break
    out: Counter[str] = Counter()
    for text in texts:
        for _connector, event, value in _CACHE_EVENT.findall(text):
            out[event] += int(float(value))
    return out, len(texts)


def burst_calls(
    sandbox_url: str,
    baseline_url: str,
    targets: Mapping[str, tuple[Server, int]],
    emails: list[str],
    *,
    count: int,
    runs: int,
    headers: Headers,
) -> dict[str, Any]:
    """``count`` concurrent identical queries for a cold customer, per target:
    upstream calls per route vs what one query for that customer costs on the
    cache-off gateway (``baseline_url``). A fresh customer for every burst.
    ``targets`` maps a label to (gateway, worker processes). Also counted: the
    gateway's cache events (/metrics) and the cache-store errors its log names."""
    out: dict[str, Any] = {}
    with _client(headers) as client:
        for label, (server, workers) in targets.items():
            url = server.url
            # Per-process first-call work (connection pools, Mailchimp's list names) is
            # not what a burst measures: uncounted queries for other cold customers
            # first, on connections opened one at a time so that every worker gets some.
            warm = [emails.pop() for _ in range(2 * workers + 2)]
            reqs = [graphql_request(url, FULL_QUERY, {"email": e}, headers) for e in warm]
            each_once(f"{url}/graphql", reqs, len(reqs))
            single_runs: list[dict[str, int]] = []
            burst_runs: list[dict[str, int]] = []
            times: list[float] = []
            errors = 0
            events0, seen0 = cache_events(url, workers)
            log0 = _store_errors(server.log_text())
            for _ in range(runs):
                email = emails.pop()
                reset_stats(sandbox_url)
                _post(client, baseline_url, FULL_QUERY, {"email": email})
                single_runs.append(stats(sandbox_url)["routes"])
                reset_stats(sandbox_url)
                raw = graphql_request(url, FULL_QUERY, {"email": email}, headers)
                answers = burst(f"{url}/graphql", raw, count)
                burst_runs.append(stats(sandbox_url)["routes"])
                times += [a.seconds for a in answers]
                errors += sum(1 for a in answers if a.status != 200 or b'"errors"' in a.body)
            events1, seen1 = cache_events(url, workers)
            events1.subtract(events0)
            store_errors = _store_errors(server.log_text())
            store_errors.subtract(log0)
            routes = sorted({r for s in single_runs + burst_runs for r in s})
            out[label] = {
                "workers": workers,
                "cache_events": dict(+events1),
                "store_errors": dict(+store_errors),
                "workers_seen": min(seen0, seen1),
                "routes": {
                    r: {
                        "single": median([s.get(r, 0) for s in single_runs]),
                        "burst": median([s.get(r, 0) for s in burst_runs]),
                        "burst_max": max(s.get(r, 0) for s in burst_runs),
                    }
                    for r in routes
                },
                "single_total": median([sum(s.values()) for s in single_runs]),
                "burst_total": median([sum(s.values()) for s in burst_runs]),
                "burst_total_max": max(sum(s.values()) for s in burst_runs),
                "met": all(
                    b.get(r, 0) <= s.get(r, 0)
                    for s, b in zip(single_runs, burst_runs, strict=True)
                    for r in routes
                    if r not in ONCE_PER_PROCESS
                ),
                "p50_ms": percentile(times, 50) * 1000,
                "p99_ms": percentile(times, 99) * 1000,
                "max_ms": max(times) * 1000,
                "errors": errors,
                "requests": len(times),
                "runs": runs,
            }
    return {"count": count, "targets": out}


_FIELDS = ("account", "tickets", "subscriptions", "invoices", "marketing")


def hang(
    sandbox_url: str,
    gateway: Server,
    emails: Sequence[str],
    *,
    vendor: str,
    requests: int,
    headers: Headers,
    deadline: float,
    profile: bool = False,
) -> dict[str, Any]:
    """The full query, one at a time, while ``vendor`` holds every request.

    Also the gateway's CPU per request, and with ``profile`` (py-spy installed)
    where that CPU went: which packages, e.g. traceback formatting for logs."""
    import profile_gateway

    url = gateway.url
    raws = [graphql_request(url, FULL_QUERY, {"email": e}, headers) for e in emails]
    sequential_latencies(url, raws[:2], 2)  # warm: connections, first-call work
    set_faults(sandbox_url, {vendor: {"hang": True}})
    spy: dict[str, Any] = {}
    try:
        with ExitStack() as stack:
            if profile:
                spy = stack.enter_context(
                    profile_gateway.recording(
                        gateway.pid, requests * (deadline + 0.1) + 0.5, rate=1000
                    )
                )
            cpu0 = tree_cpu(gateway.pid)
            answers = sequential_answers(url, [raws[i % len(raws)] for i in range(requests)])
            cpu1 = tree_cpu(gateway.pid)
    finally:
        set_faults(sandbox_url, {})
    fields: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    with_customer = 0
    for a in answers:
        body = json.loads(a.body)
        customer = (body.get("data") or {}).get("customer")
        if customer:
            with_customer += 1
            fields.update(f for f in _FIELDS if customer.get(f) is not None)
        for err in body.get("errors") or []:
            path = ".".join(str(p) for p in err.get("path") or [])
            codes[f"{path} {err.get('extensions', {}).get('code', '?')}"] += 1
    seconds = [a.seconds for a in answers]
    groups = {g["group"]: g["pct"] for g in spy.get("groups", [])}
    return {
        "cpu_ms": (cpu1 - cpu0) * 1000 / max(1, len(answers)),
        "profile_groups": groups,
        "profile_samples": spy.get("samples", 0),
        "vendor": vendor,
        "requests": len(answers),
        "statuses": dict(Counter(a.status for a in answers)),
        "latencies_ms": [round(s * 1000, 1) for s in seconds],
        "median_ms": median(seconds) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000,
        "min_ms": min(seconds) * 1000,
        "with_customer": with_customer,
        "fields_present": {f: fields.get(f, 0) for f in _FIELDS},
        "errors": dict(codes.most_common()),
    }
