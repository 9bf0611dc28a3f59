"""Throughput while a vendor answers 429: the full customer query under closed-loop load.

One sandbox, one gateway (cache off, so every query reaches the vendors; the
vendors' default resilience settings except the client-side rate limit, as in
every bench config), and three windows of load on the same gateway: no faults,
Stripe answering 429 with ``Retry-After`` to every call, and to a share of
calls. For each window: requests/s, latency percentiles, Stripe calls per
second (from the sandbox's ``/_sandbox/stats``) and what the Stripe fields of
a few sequential queries said (error code and ``retryAfter``).

    python bench/rate_limit_bench.py [--concurrency 16] [--seconds 8] [--retry-after 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from common import (
    FULL_QUERY,
    GatewayOptions,
    gateway,
    in_all_emails,
    median,
    percentile,
    reset_stats,
    sandbox,
    set_faults,
    stats,
)
from loadgen import run_load


def _bodies(emails: Sequence[str]) -> list[bytes]:
    return [json.dumps({"query": FULL_QUERY, "variables": {"email": e}}).encode() for e in emails]


def _stripe_outcomes(url: str, emails: Sequence[str]) -> tuple[Counter[str], list[float]]:
    """What the Stripe fields of sequential queries said, and how long each query took."""
    codes: Counter[str] = Counter()
    seconds: list[float] = []
    with httpx.Client(timeout=60) as client:
        for email in emails:
            started = time.perf_counter()
            body = client.post(
                f"{url}/graphql", json={"query": FULL_QUERY, "variables": {"email": email}}
            ).json()
            seconds.append(time.perf_counter() - started)
            stripe = [
                e["extensions"] for e in body.get("errors") or []
                if e.get("extensions", {}).get("source") == "stripe"
            ]  # fmt: skip
            if not stripe:
                codes["ok"] += 1
            for ext in stripe:
                after = ext.get("retryAfter")
                codes[ext["code"] + ("" if after is None else f" retryAfter<={after:g}")] += 1
    return codes, seconds


def _window(
    name: str,
    gw: str,
    sb: str,
    faults: Mapping[str, Any],
    emails: Sequence[str],
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    set_faults(sb, faults)
    reset_stats(sb)
    started = time.monotonic()
    result = run_load(
        f"{gw}/graphql",
        _bodies(emails),
        concurrency=concurrency,
        warmup=1.0,
        duration=seconds,
        tool="python",
    )
    elapsed = time.monotonic() - started
    stripe_calls = stats(sb)["by_vendor"].get("stripe", 0)
    codes, sequential = _stripe_outcomes(gw, emails[:5])
    set_faults(sb, {})
    lat = sorted(result.latencies)
    return {
        "window": name,
        "faults": dict(faults),
        "requests_per_s": round(result.rps, 1),
        "requests": result.requests,
        "with_errors": result.errors,
        "p50_ms": round(median(lat) * 1000, 1) if lat else None,
        "p95_ms": round(percentile(lat, 95) * 1000, 1) if lat else None,
        "stripe_calls_per_s": round(stripe_calls / elapsed, 1),
        "sequential_stripe_outcomes": dict(codes),
        "sequential_max_s": round(max(sequential), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--retry-after", type=float, default=2.0)
    args = parser.parse_args(argv)
    windows = {
        "no faults": {},
        "stripe 429 on every call": {"stripe": {"status": 429, "retry_after": args.retry_after}},
        "stripe 429 on 30% of calls": {
            "stripe": {"status": 429, "retry_after": args.retry_after, "rate": 0.3}
        },
    }
    rows = []
    with sandbox(customers=300, seed=2) as sb, gateway(sb.url, GatewayOptions()) as gw:
        emails = in_all_emails(sb.url, 300)[:50]
        for name, faults in windows.items():
            rows.append(
                _window(name, gw.url, sb.url, faults, emails, args.concurrency, args.seconds)
            )
    print(f"concurrency {args.concurrency}, {args.seconds:g} s per window, cache off, no auth")
    print("| window | requests/s | p50 ms | p95 ms | stripe calls/s | stripe fields (5 queries) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        outcomes = ", ".join(
            f"{k}: {v}" for k, v in sorted(row["sequential_stripe_outcomes"].items())
        )
        print(
            f"| {row['window']} | {row['requests_per_s']} | {row['p50_ms']} | {row['p95_ms']} "
            f"| {row['stripe_calls_per_s']} | {outcomes} (slowest {row['sequential_max_s']} s) |"
        )
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
