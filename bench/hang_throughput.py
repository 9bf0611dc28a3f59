"""(f4) Throughput of the full query while one vendor hangs, against the same gateway healthy.

Per run, on one gateway (defaults: request deadline, breaker, stall bound),
closed-loop load at ``concurrency``, each window after the same warm-up:

1. healthy: no fault;
2. onset: the warm-up is healthy, and the hang starts as the measured window
   opens -- the window holds the time until the gateway judges the vendor
   hung, when requests still wait for it;
3. hanging: the hang goes on; warm-up, then the window;
4. the fault is cleared and the time until the vendor's fields come back is
   taken (one request at a time), before the next run starts healthy.

Ratios are per run (both sides measured back to back), medians of runs. A
few requests during the hang are read in full: which fields came back.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from common import Server, median, percentile, set_faults
from loadgen import raw_request, run_load, sequential_answers

FIELDS = ("account", "tickets", "subscriptions", "invoices", "marketing")
RECOVERY_LIMIT = 60.0


def _window(result: Any) -> dict[str, Any]:
    lat = result.latencies
    return {
        "rps": result.rps,
        "requests": result.requests,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat) * 1000 if lat else float("nan"),
    }


def _answers(url: str, raws: Sequence[bytes]) -> dict[str, Any]:
    fields: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    answers = sequential_answers(url, raws)
    for answer in answers:
        body = json.loads(answer.body)
        customer = (body.get("data") or {}).get("customer") or {}
        fields.update(f for f in FIELDS if customer.get(f) is not None)
        for err in body.get("errors") or []:
            path = ".".join(str(p) for p in err.get("path") or [])
            codes[f"{path} {err.get('extensions', {}).get('code', '?')}"] += 1
    return {
        "requests": len(answers),
        "fields_present": {f: fields.get(f, 0) for f in FIELDS},
        "errors": dict(codes.most_common()),
    }


def _recovery(url: str, raw: bytes, vendor_field: str) -> float:
    """Seconds until ``vendor_field`` comes back, asking one request at a time."""
    started = time.perf_counter()
    while time.perf_counter() - started < RECOVERY_LIMIT:
        [answer] = sequential_answers(url, [raw])
        customer = (json.loads(answer.body).get("data") or {}).get("customer") or {}
        if customer.get(vendor_field) is not None:
            return time.perf_counter() - started
    return float("inf")


def hang_throughput(
    sandbox: Server,
    gateway: Server,
    bodies: Sequence[bytes],
    headers: Mapping[str, str] | None,
    *,
    vendor: str,
    vendor_field: str,
    runs: int,
    concurrency: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    url = f"{gateway.url}/graphql"
    hang = {vendor: {"hang": True}}

    def start_hang(edge: str) -> None:
        if edge == "start":
            set_faults(sandbox.url, hang)

    def load(on_window: Any = None) -> Any:
        return run_load(
            url, bodies, concurrency=concurrency, warmup=warmup, duration=duration,
            on_window=on_window, tool="python", headers=headers,
        )  # fmt: skip

    raws = [raw_request(url, "POST", b, headers) for b in bodies[:5]]
    samples = []
    for _ in range(runs):
        healthy = load()
        try:
            onset = load(start_hang)
            hanging = load()
            during = _answers(url, raws)
        finally:
            set_faults(sandbox.url, {})
        recovered = _recovery(url, raws[0], vendor_field)
        samples.append(
            {
                "healthy": _window(healthy),
                "onset": _window(onset),
                "hanging": _window(hanging),
                "onset_ratio": onset.rps / healthy.rps if healthy.rps else float("nan"),
                "hanging_ratio": hanging.rps / healthy.rps if healthy.rps else float("nan"),
                "answers": during,
                "recovery_s": recovered,
            }
        )
    return {
        "vendor": vendor,
        "concurrency": concurrency,
        "warmup": warmup,
        "duration": duration,
        "runs": samples,
        "onset_ratio": median([s["onset_ratio"] for s in samples]),
        "hanging_ratio": median([s["hanging_ratio"] for s in samples]),
        "healthy_rps": median([s["healthy"]["rps"] for s in samples]),
        "onset_rps": median([s["onset"]["rps"] for s in samples]),
        "hanging_rps": median([s["hanging"]["rps"] for s in samples]),
        "recovery_s": median([s["recovery_s"] for s in samples]),
    }
