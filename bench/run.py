"""c360 benchmarks: ``python bench/run.py [--quick]`` writes bench/REPORT.md.

What it measures (everything on 127.0.0.1, bounded in count and time; every
process it starts -- sandboxes, gateways, hello apps, redis-server -- is
stopped in a ``finally`` block). Unless a row says otherwise the gateway runs
with auth ON: every request carries a real RS256 bearer token minted by
``gateway.issuer.DevIssuer``, which this process serves on 127.0.0.1.

(a) upstream calls per sandbox route (and per connector operation) for
    ``customers(emails: [...])`` with 1, 10, 50, 200 customers, cache off;
(b) latency of the full ``customer(email:)`` query with the sandbox at 50 ms
    per call, against the critical-path floor measured in the same run: the
    gateway's own upstream requests replayed hop by hop (critical_path.py),
    and hops × one direct sandbox call; also with ``identity.max_rounds: 1``;
(c) requests/s and gateway CPU per request (utime+stime of the gateway process
    tree from /proc) of that query at 0 ms, 1 and 2 workers, cache off and
    cache on (warm, memory), next to a strawberry ``{ hello }`` app;
(d) httpx's transports: client CPU per call (transport_bench.py) and the
    gateway's numbers from (c) with ``C360_TRANSPORT=httpcore`` vs ``aiohttp``;
(e) upstream calls of identity resolution for 50 customers (full resolution
    vs one round) and of one page of 20 accounts with children and contacts;
(f) at 50 ms: the full query fully cached (memory; Redis) vs uncached under
    load; 100 concurrent identical queries for a cold customer; the full query
    while Mailchimp hangs, with ``gateway.request_deadline: 1.0``; requests/s
    of the full query under load while Mailchimp hangs vs healthy, default
    settings (hang_throughput.py; ``--sections h`` runs only that);
plus, when (c) misses its CPU target, a profile of the cached and the
uncached path (profile_gateway.py).

Load comes from a small asyncio HTTP/1.1 client (bench/loadgen.py) that opens
its connections one at a time, so that with several uvicorn workers on one
listening socket each worker gets its share. ``--tool wrk`` uses wrk instead
for (c) (``apt-get install -y wrk``). The profile uses ``py-spy`` when it is
installed (``pip install py-spy``) and cProfile otherwise. (f)'s Redis rows
need ``redis-server`` on PATH (``apt-get install -y redis-server``); without
it they are skipped and the report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import loadgen  # noqa: E402
import transport_bench  # noqa: E402
from common import GatewayOptions  # noqa: E402

SIZES = (1, 10, 50, 200)
IDENTITY_N = 50
#: Issue 11: recording every PII read before the response may cost this much CPU.
AUDIT_TARGET = 1.05
CPU_TARGET_MS = 3.0
LATENCY_TARGET = 1.10
BURST = 100
DEADLINE = 1.0
DEADLINE_SLACK_MS = 10.0  # "deadline + a few ms"
HANG_VENDOR = "mailchimp"
HANG_FIELD = "marketing"  # HANG_VENDOR's field in the full query
#: Issue 12: a hanging vendor costs its own fields, not the others' throughput.
HANG_RPS_TARGET = 0.8
TUNED = "Redis, 2 workers, `?max_connections=1000`, `cache.timeout: 2`"
PACKAGES = (
    "strawberry-graphql", "graphql-core", "starlette", "uvicorn", "uvloop", "httptools",
    "httpx", "httpcore", "anyio", "sniffio", "aiohttp", "httpx-aiohttp", "aiodataloader",
    "redis", "joserfc", "cryptography", "prometheus-client", "phonenumbers",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    runs: int
    transport_calls: int
    load_warmup: float
    load_seconds: float
    concurrency: int
    lat_customers: int  # per kind (account with / without a parent)
    lat_samples: int  # gateway requests per class per run
    lat_replays: int  # replayed critical paths per class per run
    lat_direct: int  # direct sandbox calls per run
    probe: int  # unloaded (sequential) requests per load target
    hang_requests: int  # per run, breaker out of the way
    breaker_requests: int  # with the default breaker (opens after 5 failures)
    customers: int | None  # (c) and (f1) rotate over this many customers (None: all)
    profile_seconds: float
    profile: bool  # profile when (c) misses its CPU target (--profile / --no-profile win)


FULL = Plan(3, 600, 1.0, 4.0, 16, 6, 16, 8, 16, 20, 8, 8, None, 8.0, True)
QUICK = Plan(1, 100, 0.4, 1.2, 16, 2, 4, 2, 6, 5, 3, 6, 40, 3.0, False)


# ---------------------------------------------------------------------- metadata


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _first_line(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (proc.stdout or proc.stderr).strip()
    return out.splitlines()[0].strip() if out else None


def source_fingerprint() -> dict[str, Any]:
    """A hash of the gateway's Python source (gateway/, schema/, connectors/) and its
    newest change: the report warns when the code changed while the bench ran."""
    digest = hashlib.sha256()
    newest = 0.0
    for top in ("gateway", "schema", "connectors"):
        for path in sorted((common.REPO / top).rglob("*.py")):
            digest.update(str(path.relative_to(common.REPO)).encode() + b"\0")
            digest.update(path.read_bytes())
            newest = max(newest, path.stat().st_mtime)
    changed = dt.datetime.fromtimestamp(newest, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"sha256": digest.hexdigest()[:12], "newest_change": changed}


def cpu_probe(rounds: int = 5) -> float:
    """ms of CPU for a fixed pure-Python loop (median of ``rounds``): how fast this
    shared box's CPU is right now. Compare it across reports before comparing CPU/request."""
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        x = 0
        for i in range(1_000_000):
            x += i * i
        times.append((time.process_time() - t0) * 1000)
    return common.median(times)


def metadata(argv: list[str]) -> dict[str, Any]:
    import profile_gateway

    config_args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    wrk = loadgen.wrk_path()
    redis = common.redis_path()
    pyspy = profile_gateway.pyspy_path()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/run.py" + ("" if not argv else " " + shlex.join(argv)),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "python_build": {
            "pgo": "--enable-optimizations" in config_args,
            "lto": "--with-lto" in config_args,
            "shared": "--enable-shared" in config_args,
        },
        "kernel": platform.release(),
        "versions": _versions(),
        "wrk": _first_line([wrk, "--version"]) if wrk else None,
        "redis": _first_line([redis, "--version"]) if redis else None,
        "pyspy": _first_line([pyspy, "--version"]) if pyspy else None,
        "loadavg_start": _loadavg(),
        "cpu_probe_start_ms": cpu_probe(),
        "source_start": source_fingerprint(),
        "uvicorn_stack": " + ".join(
            [
                "uvloop" if importlib.util.find_spec("uvloop") else "asyncio loop",
                "httptools" if importlib.util.find_spec("httptools") else "h11",
            ]
        ),
    }


def connectors_ready() -> bool:
    try:
        for vendor in common.VENDORS:
            importlib.import_module(f"connectors.{vendor}")
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------- running

_T0 = time.perf_counter()


def step(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", flush=True)


def run_all(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    sections = set(args.sections)
    with common.issuer() as iss:
        headers = iss.headers()
        auth = GatewayOptions(issuer_url=iss.url)
        results["auth"] = {"algorithm": iss.dev.algorithm, "role": "admin", "mfa": True}
        if "d" in sections:
            step("(d1) transport micro benchmark")
            results["transport"] = transport_bench.run(plan.runs, plan.transport_calls)
        if sections & {"a", "c", "d", "e"}:
            results.update(_at_zero_ms(plan, args, sections, auth, headers))
        if sections & {"b", "f", "h"}:
            results.update(_at_fifty_ms(plan, sections, auth, headers))
    return results


def _at_zero_ms(
    plan: Plan,
    args: argparse.Namespace,
    sections: set[str],
    auth: GatewayOptions,
    headers: dict[str, str],
) -> dict[str, Any]:
    import gateway_bench as gb

    replace = dataclasses.replace
    results: dict[str, Any] = {}
    options = [auth]
    if "e" in sections:
        options.append(replace(auth, max_rounds=1))
    load = bool(sections & {"c", "d"})
    if load:
        options += [
            replace(auth, cache="memory"),
            replace(auth, merge=False),  # what merging concurrent requests' batches saves
            replace(auth, audit=False),  # what the PII audit trail costs
            replace(auth, cache="memory", audit=False),
            GatewayOptions(),  # no auth, for the cost of auth
            replace(auth, transport="httpcore"),
            replace(auth, workers=2),
            replace(auth, workers=2, cache="memory"),
            replace(auth, workers=2, transport="httpcore"),
        ]
    extra = [common.hello_launch(1), common.hello_launch(2)] if load else []
    with common.sandbox(latency_ms=0) as sb0:
        step(f"starting {len(options)} gateways{' and 2 hello apps' if extra else ''} (0 ms)")
        with common.gateways(sb0.url, {o.label: o for o in options}, extra) as servers:
            main = servers[auth.label].url
            if "a" in sections:
                step("(a) upstream calls per route")
                results["calls"] = gb.upstream_calls(sb0.url, main, SIZES, plan.runs, headers)
            if "e" in sections:
                step(f"(e) identity resolution for {IDENTITY_N} customers; a page of accounts")
                one = servers[replace(auth, max_rounds=1).label].url
                results["identity"] = gb.identity_calls(
                    sb0.url, {"3": main, "1": one}, IDENTITY_N, plan.runs, headers
                )
                results["accounts"] = gb.account_page_calls(sb0.url, main, plan.runs, headers)
            if load:
                step("(c)/(d2) throughput and CPU per request (warming the caches first)")
                full, hello = gb.full_query_bodies(sb0.url)[: plan.customers], gb.hello_bodies()
                targets = []
                for o in options:
                    if o.max_rounds is not None:
                        continue
                    targets.append(
                        gb.Target(
                            o.label,
                            servers[o.label],
                            full,
                            "gateway",
                            o.workers,
                            o.transport,
                            headers if o.issuer_url else None,
                            o.cache,
                            o.issuer_url is not None,
                        )
                    )
                for w in (1, 2):
                    targets.append(gb.Target(f"hello x{w}", servers[f"hello x{w}"], hello,
                                             "hello", w, auth=False))  # fmt: skip
                results["throughput"] = gb.throughput(
                    sb0, targets, runs=plan.runs, concurrency=plan.concurrency,
                    warmup=plan.load_warmup, duration=plan.load_seconds, tool=args.tool,
                    probe=plan.probe, ratios=_throughput_ratios(targets),
                )  # fmt: skip
                results["full_query_customers"] = len(full)
        tp = results.get("throughput", {}).get("targets", {})
        cpu = [t["cpu_ms"] for label, t in tp.items() if label.startswith("gateway aiohttp x1")]
        missed = any(c > CPU_TARGET_MS for c in cpu)
        want = args.profile or (args.profile is None and plan.profile and missed)
        if want and "c" in sections:
            import profile_gateway

            results["profiles"] = {}
            for cache in ("off", "memory"):
                step(f"profile of the gateway, cache {cache} (CPU target missed)")
                results["profiles"][cache] = profile_gateway.profile(
                    sb0.url, options=replace(auth, cache=cache), headers=headers,
                    seconds=plan.profile_seconds, profiler=args.profiler,
                )  # fmt: skip
    return results


def _zero_call_floor(merged: dict[str, Any] | None, unmerged: dict[str, Any] | None) -> str:
    """CPU = fixed + per call × calls, through the merging and no-merging rows of
    each run (same queries, same records, only the number of calls differs)."""
    if not merged or not unmerged:
        return ""
    fits = []
    for cm, cu, nm, nu in zip(
        merged["cpu_ms_runs"],
        unmerged["cpu_ms_runs"],
        merged.get("upstream_per_req_runs", []),
        unmerged.get("upstream_per_req_runs", []),
        strict=False,
    ):
        if nm is not None and nu is not None and nu - nm > 1:
            slope = (cu - cm) / (nu - nm)
            fits.append((slope, cm - slope * nm))
    if not fits:
        return ""
    slope = common.median([f[0] for f in fits])
    fixed = common.median([f[1] for f in fits])
    return (
        f" Fitting CPU = fixed + per call × calls through those two rows of each run gives "
        f"{slope:.2f} ms per vendor call and **{fixed:.1f} ms at zero calls** (median of "
        f"{len(fits)} run(s)): even if vendor calls cost the gateway nothing, an uncached "
        "query would still cost that much, for the work done per request and per record "
        "(GraphQL execution, identity resolution, mapping and JSON decoding of the records, "
        "the awaits between hops)."
    )


def _throughput_ratios(targets: list[Any]) -> list[tuple[str, str, str, str]]:
    labels = {t.label for t in targets}
    out = []
    for w in (1, 2):
        hello = f"hello x{w}"
        for t in targets:
            if t.kind == "gateway" and t.workers == w:
                out.append((f"{t.label} / {hello} rps", t.label, hello, "rps"))
                out.append((f"{t.label} / {hello} cpu", t.label, hello, "cpu_ms"))
        a, h, m = (f"gateway aiohttp x{w}", f"gateway httpcore x{w}",
                   f"gateway aiohttp x{w}, cache memory")  # fmt: skip
        out += [
            (f"httpcore / aiohttp x{w} cpu", h, a, "cpu_ms"),
            (f"httpcore / aiohttp x{w} rps", h, a, "rps"),
            (f"cache memory / cache off x{w} cpu", m, a, "cpu_ms"),
            (f"cache memory / cache off x{w} rps", m, a, "rps"),
        ]
    out.append(("auth on / auth off x1 cpu", "gateway aiohttp x1", "gateway aiohttp x1, no auth",
                "cpu_ms"))  # fmt: skip
    for suffix in ("", ", cache memory"):
        on = f"gateway aiohttp x1{suffix}"
        out.append((f"audit on / audit off x1{suffix} cpu", on, f"{on}, audit off", "cpu_ms"))
    unmerged = "gateway aiohttp x1, no merging"
    out.append(("no merging / merging x1 cpu", unmerged, "gateway aiohttp x1", "cpu_ms"))
    out.append(("no merging / merging x1 rps", unmerged, "gateway aiohttp x1", "rps"))
    return [r for r in out if r[1] in labels and r[2] in labels]


def _at_fifty_ms(
    plan: Plan, sections: set[str], auth: GatewayOptions, headers: dict[str, str]
) -> dict[str, Any]:
    import gateway_bench as gb

    replace = dataclasses.replace
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        redis = None
        if "f" in sections:
            if common.redis_path() is None:
                step("redis-server not found: (f)'s Redis rows are skipped")
                results["redis_missing"] = True
            else:
                redis = stack.enter_context(common.redis_server())
        sb50 = stack.enter_context(common.sandbox(latency_ms=50))
        rounds1 = replace(auth, max_rounds=1)
        memory = replace(auth, cache="memory")
        redis1 = replace(auth, cache="redis", redis_url=redis.url) if redis else None
        redis2 = replace(redis1, workers=2) if redis1 else None
        # redis-py's async pool holds 100 connections and raises past that; the store's
        # socket timeout is 0.25 s. A burst needs both raised (see the report).
        redis2_tuned = (
            replace(redis2, redis_url=f"{redis.url}?max_connections=1000", cache_timeout=2.0)
            if redis2 and redis
            else None
        )
        deadline = replace(auth, request_deadline=DEADLINE, breaker_failures=1000)
        deadline_breaker = replace(auth, request_deadline=DEADLINE)
        options = [auth]
        if "b" in sections:
            options.append(rounds1)
        if "f" in sections:
            options += [memory, deadline, deadline_breaker]
            options += [o for o in (redis1, redis2, redis2_tuned) if o is not None]
        step(f"starting {len(options)} gateways (sandbox latency 50 ms)")
        servers = stack.enter_context(common.gateways(sb50.url, {o.label: o for o in options}))
        if "b" in sections:
            step("(b) latency vs the critical-path floor (capturing the critical paths first)")
            results["latency"] = gb.latency(
                sb50.url,
                {"3": servers[auth.label].url, "1": servers[rounds1.label].url},
                {"3": auth, "1": rounds1},
                headers,
                runs=plan.runs,
                customers=plan.lat_customers,
                samples=plan.lat_samples,
                replays=plan.lat_replays,
                direct_samples=plan.lat_direct,
            )
        if "f" in sections:
            step("(f) cached vs uncached under load at 50 ms")
            full = gb.full_query_bodies(sb50.url)[: plan.customers]
            targets = [
                gb.Target("uncached (cache off)", servers[auth.label], full, "gateway", 1,
                          headers=headers),
                gb.Target("cached, memory", servers[memory.label], full, "gateway", 1,
                          headers=headers, cache="memory"),
            ]  # fmt: skip
            if redis1 is not None:
                targets.append(gb.Target("cached, Redis", servers[redis1.label], full, "gateway",
                                         1, headers=headers, cache="redis"))  # fmt: skip
            results["cache_load_customers"] = len(full)
            results["cache_load"] = gb.throughput(
                sb50, targets, runs=plan.runs, concurrency=plan.concurrency,
                warmup=plan.load_warmup, duration=plan.load_seconds, tool="python",
                probe=plan.probe,
                ratios=[(f"{t.label} / uncached rps", t.label, targets[0].label, "rps")
                        for t in targets[1:]],
            )  # fmt: skip
            step(f"(f) bursts of {BURST} identical queries for a cold customer")
            burst_targets = {"memory, 1 worker": (servers[memory.label], 1)}
            if redis1 is not None and redis2 is not None and redis2_tuned is not None:
                burst_targets["Redis, 1 worker"] = (servers[redis1.label], 1)
                burst_targets["Redis, 2 workers"] = (servers[redis2.label], 2)
                burst_targets[TUNED] = (servers[redis2_tuned.label], 2)
            need = sum(plan.runs + 2 * w + 2 for _, w in burst_targets.values())
            cold = gb.cold_emails(sb50.url, count=need + 2)
            results["burst"] = gb.burst_calls(
                sb50.url, servers[auth.label].url, burst_targets, cold,
                count=BURST, runs=plan.runs, headers=headers,
            )  # fmt: skip
            step(f"(f) {HANG_VENDOR} hangs, request_deadline {DEADLINE:g} s")
            emails = common.in_all_emails(sb50.url, 200)
            results["hang"] = {
                "deadline_s": DEADLINE,
                "runs": [
                    gb.hang(
                        sb50.url, servers[deadline.label], emails[i::7], vendor=HANG_VENDOR,
                        requests=plan.hang_requests, headers=headers, deadline=DEADLINE,
                        profile=i == 0,
                    )
                    for i in range(plan.runs)
                ],
                "default_breaker": gb.hang(
                    sb50.url, servers[deadline_breaker.label], emails[3::5], vendor=HANG_VENDOR,
                    requests=plan.breaker_requests, headers=headers, deadline=DEADLINE,
                ),
            }  # fmt: skip
        if sections & {"f", "h"}:
            import hang_throughput

            step(f"(f4) requests/s while {HANG_VENDOR} hangs vs healthy, default settings")
            results["hang_load"] = hang_throughput.hang_throughput(
                sb50, servers[auth.label], gb.full_query_bodies(sb50.url)[: plan.customers],
                headers, vendor=HANG_VENDOR, vendor_field=HANG_FIELD, runs=plan.runs,
                concurrency=plan.concurrency, warmup=plan.load_warmup,
                duration=plan.load_seconds,
            )  # fmt: skip
    return results


# ------------------------------------------------------------------------ report


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _n(x: float) -> str:
    return f"{x:g}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def section_meta(meta: dict[str, Any], plan: Plan, results: dict[str, Any]) -> str:
    build = meta["python_build"]
    flags = ", ".join(k for k, v in build.items() if v) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    tool = results.get("throughput", {}).get("tool", "python")
    tools = [f"redis-server: {meta['redis'] or 'not installed'}",
             f"py-spy: {meta['pyspy'] or 'not installed'}"]  # fmt: skip
    src0, src1 = meta["source_start"], meta["source_end"]
    source = (
        f"- gateway source (gateway/, schema/, connectors/): sha256 {src0['sha256']}, last "
        f"changed {src0['newest_change']}"
        if src0 == src1
        else f"- **warning: the gateway's source changed while the bench ran** (sha256 "
        f"{src0['sha256']} at the start, {src1['sha256']} at the end, last change "
        f"{src1['newest_change']}): sections measured before and after that differ in code"
    )
    return "\n".join(
        [
            f"- date: {meta['date']}; whole run {meta['elapsed_s']:.0f} s",
            source,
            f"- command: `{meta['command']}`",
            f"- machine: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}, "
            f"shared and noisy; load average {meta['loadavg_start']} at the start, "
            f"{meta['loadavg_end']} at the end; CPU speed probe (1M-iteration Python loop, "
            f"CPU ms) {meta['cpu_probe_start_ms']:.0f} at the start, "
            f"{meta['cpu_probe_end_ms']:.0f} at the end",
            f"- Python {meta['python']} (build flags: {flags}; "
            + (
                "no PGO/LTO: expect slower Python than a distro build)"
                if not build["pgo"]
                else "PGO build)"
            ),
            f"- packages: {versions}; uvicorn (gateway, hello app, sandbox) runs on "
            f"{meta['uvicorn_stack']}; {'; '.join(tools)}",
            f"- load generator: {tool}"
            + (f" ({meta['wrk']}, 1 thread)" if tool == "wrk" and meta["wrk"] else "")
            + f"; {plan.runs} run(s) of everything; tables show the median of the runs, "
            "ratios are the median of per-run ratios (both sides measured in the same run)",
            "- **auth ON** unless a row says otherwise: every gateway request carries a real "
            "RS256 bearer token minted by `gateway.issuer.DevIssuer`, which the bench serves on "
            "127.0.0.1 (discovery, JWKS); the gateway verifies signature and claims on every "
            "request. Role `admin` with MFA, so every field of the full query is readable and "
            "unmasked, and each response's PII reads are stored in the audit trail (file sink; "
            "concurrent requests share one append and fsync) before the response is sent; "
            "`audit off` rows run bench/audit_off.py, the same app with recording switched off.",
            "- every gateway config: `gateway: {rate_limit: false}` (one principal sends all "
            "the load), `connectors.*.resilience: {rate_limit: false}` (the sandbox has no "
            "limits; Stripe's 20 searches/s would meter the load, not the gateway), "
            "`graphql: {max_cost: 1000000}` (200 full profiles in one query), `cache: {enabled: "
            "false}` unless a row says cache on, where TTLs are raised to an hour so nothing "
            "turns stale mid-run (default soft TTL 60 s, negative TTL 30 s)",
        ]
    )


def section_targets(results: dict[str, Any]) -> str:
    rows = []
    lat = results.get("latency")
    if lat:
        for cls in lat["classes"]:
            if cls["variant"] != "3":
                continue
            r, s = cls["ratio_replay"], cls["ratio_simple"]
            rows.append(
                [
                    f"(b) {cls['depth']}-hop full query ÷ replayed critical path (median)",
                    f"{r:.3f} ({_fmt(cls['median_ms'])} ÷ {_fmt(cls['replay_ms'])} ms)",
                    f"≤ {LATENCY_TARGET:.2f}",
                    _met(r <= LATENCY_TARGET),
                ]
            )
            rows.append(
                [
                    f"(b) {cls['depth']}-hop full query ÷ {cls['depth']} × direct call (median)",
                    f"{s:.3f} ({_fmt(cls['median_ms'])} ÷ {_fmt(cls['simple_ms'])} ms)",
                    f"≤ {LATENCY_TARGET:.2f}",
                    _met(s <= LATENCY_TARGET),
                ]
            )
    tp = results.get("throughput")
    if tp:
        for label in ("gateway aiohttp x1", "gateway aiohttp x1, cache memory",
                      "gateway aiohttp x2", "gateway aiohttp x2, cache memory"):  # fmt: skip
            t = tp["targets"].get(label)
            if t:
                rows.append(
                    [
                        f"(c) gateway CPU per full query, {label.removeprefix('gateway ')}",
                        f"{t['cpu_ms']:.1f} ms",
                        f"≤ {CPU_TARGET_MS:.0f} ms",
                        _met(t["cpu_ms"] <= CPU_TARGET_MS),
                    ]
                )
        for suffix in ("", ", cache memory"):
            ratio = tp["ratios"].get(f"audit on / audit off x1{suffix} cpu")
            if ratio:
                rows.append(
                    [
                        f"(audit) gateway CPU per full query, audit on ÷ off, aiohttp x1{suffix}",
                        f"{ratio:.2f}×",
                        f"≤ {AUDIT_TARGET:.2f}×",
                        _met(ratio <= AUDIT_TARGET),
                    ]
                )
    burst = results.get("burst")
    if burst:
        for label, b in burst["targets"].items():
            rows.append(
                [
                    f"(f) {burst['count']} identical cold queries, {label}: upstream calls",
                    f"{_n(b['burst_total'])} (one query alone: {_n(b['single_total'])})",
                    "≤ one query's, per route",
                    _met(b["met"]),
                ]
            )
    hang = results.get("hang")
    if hang:
        h = _hang_summary(hang)
        limit = hang["deadline_s"] * 1000
        rows.append(
            [
                f"(f) full query while {HANG_VENDOR} hangs, deadline {hang['deadline_s']:g} s: "
                "p99 latency",
                f"{_fmt(h['p99_ms'])} ms (median {_fmt(h['median_ms'])}, max {_fmt(h['max_ms'])})",
                f"≤ deadline + {DEADLINE_SLACK_MS:g} ms",
                _met(h["p99_ms"] <= limit + DEADLINE_SLACK_MS),
            ]
        )
        rows.append(
            [
                "(f) … never waits for the hang",
                f"max {_fmt(h['max_ms'])} ms",
                f"< 2 × deadline ({2 * limit:.0f} ms)",
                _met(h["max_ms"] < 2 * limit),
            ]
        )
    rows += _hang_load_targets(results.get("hang_load"))
    return common.table(["target", "measured", "target", "verdict"], rows)


def _hang_load_targets(hl: dict[str, Any] | None) -> list[list[str]]:
    if not hl:
        return []
    rows = []
    for key, when in (
        ("onset", f"from the hang's onset ({hl['duration']:g} s window)"),
        ("hanging", "while it goes on hanging"),
    ):
        ratio = hl[f"{key}_ratio"]
        rows.append(
            [
                f"(f4) full query requests/s while {HANG_VENDOR} hangs ÷ healthy, {when}",
                f"{ratio:.2f}× ({_fmt(hl[f'{key}_rps'])} ÷ {_fmt(hl['healthy_rps'])} rps)",
                f"≥ {HANG_RPS_TARGET:.1f}×",
                _met(ratio >= HANG_RPS_TARGET),
            ]
        )
    return rows


def _route_rows(
    routes: dict[str, dict[Any, float]], columns: list[Any], floors: list[str] | None = None
) -> list[list[str]]:
    rows = []
    for route, counts in routes.items():
        name = f"`{route}`" + (" (floor)" if floors and route in floors else "")
        rows.append([name, *(_n(counts.get(c, 0)) for c in columns)])
    return rows


def _floor_routes(calls: dict[str, Any]) -> list[str]:
    """Routes whose calls grow one for one with the customers."""
    sizes = calls["sizes"]
    big = sizes[-1]
    return [r for r, c in calls["routes"].items() if c[big] >= big]


def section_calls(calls: dict[str, Any]) -> str:
    sizes = calls["sizes"]
    big = sizes[-1]
    floors = _floor_routes(calls)
    rows = []
    for route, counts in calls["routes"].items():
        per_call = big / counts[big] if counts[big] else float("inf")
        rows.append(
            [
                f"`{route}`",
                *(_n(counts[n]) for n in sizes),
                "**1 (floor: one call per customer)**"
                if route in floors
                else ("-" if per_call == float("inf") else f"{per_call:.1f}"),
            ]
        )
    rows.append(["**total**", *(f"**{_n(calls['totals'][n])}**" for n in sizes), ""])
    rows.append(["calls per customer", *(f"{calls['totals'][n] / n:.2f}" for n in sizes), ""])
    op_rows = [
        [f"`{op}`", _role(op), *(_n(counts[n]) for n in sizes)]
        for op, counts in calls["operations"].items()
    ]
    return "\n".join(
        [
            common.table(
                ["route \\ N customers", *map(str, sizes), f"customers per call at N={big}"],
                rows,
            ),
            "",
            "The same calls by connector operation (the gateway's `c360_upstream_requests_total` "
            "on /metrics; one HTTP call each, pages included):",
            "",
            common.table(["operation", "role", *(f"N={n}" for n in sizes)], op_rows),
            "",
            "Counts were identical in every run."
            if not calls["varied"]
            else "Counts varied between runs (medians shown).",
        ]
    )


def _role(op: str) -> str:
    method = op.split(".", 1)[1]
    if method.endswith("_by_email"):
        return "identity round 1: email"
    if method.endswith("_by_phone"):
        return "identity round 2+: phone"
    if method == "people_linked_to":
        return "identity round 2+: links"
    if method in ("people_by_id", "requesters_by_id", "customers_by_id", "members_by_id"):
        return "identity: record by id (link target)"
    if method == "lists":
        return "Mailchimp list names (once per process)"
    return "data"


def section_identity(ident: dict[str, Any], accounts: dict[str, Any] | None) -> str:
    labels = ident["labels"]
    head = ["full resolution (max_rounds 3, default)", "one round (max_rounds 1)", "difference"]
    rows = [
        [f"`{r}`", *(_n(c.get(k, 0)) for k in labels), _n(c.get("3", 0) - c.get("1", 0))]
        for r, c in ident["routes"].items()
    ]
    t3, t1 = ident["totals"]["3"], ident["totals"]["1"]
    rows.append(["**total**", f"**{_n(t3)}**", f"**{_n(t1)}**", f"**{_n(t3 - t1)}**"])
    n = ident["n"]
    rows.append(["calls per customer", f"{t3 / n:.2f}", f"{t1 / n:.2f}", f"{(t3 - t1) / n:.2f}"])
    op_rows = [
        [f"`{op}`", _role(op), *(_n(c.get(k, 0)) for k in labels)]
        for op, c in ident["operations"].items()
    ]
    out = [
        f"`customers(emails: [...])`, full selection, {n} customers in all four systems, cache "
        "off. Identity resolution is every call of the email, phone and link rounds; the "
        "second column is the same query with `identity: {max_rounds: 1}` (emails only).",
        "",
        common.table(["route", *head], rows),
        "",
        common.table(["operation", "role", "max_rounds 3", "max_rounds 1"], op_rows),
        "",
    ]
    if accounts:
        ret = accounts["returned"]
        acc_rows = [[f"`{r}`", _n(c)] for r, c in accounts["routes"].items()]
        acc_rows.append(["**total**", f"**{_n(accounts['total'])}**"])
        op_text = ", ".join(f"`{o}` {_n(c)}" for o, c in accounts["operations"].items())
        out += [
            f"One page of accounts with their children and contacts (`{accounts['query']}`), "
            f"cache off: {ret.get('accounts', 0)} accounts, {ret.get('children', 0)} children, "
            f"{ret.get('contacts', 0)} contacts returned.",
            "",
            common.table(["route", "calls"], acc_rows),
            "",
            f"By operation: {op_text}.",
            "",
        ]
    out.append(
        "Counts were identical in every run."
        if not ident["varied"] and not (accounts or {}).get("varied")
        else "Counts varied between runs (medians shown)."
    )
    return "\n".join(out)


def _shape_text(shape: list[list[str]]) -> str:
    def short(op: str) -> str:
        return op.split(".", 1)[1]

    return " → ".join(
        "[" + ", ".join(sorted({short(o) for o in hop})) + f"] ({len(hop)})" for hop in shape
    )


def section_latency(lat: dict[str, Any]) -> str:
    rows = []
    for cls in lat["classes"]:
        rounds = "3 (default)" if cls["variant"] == "3" else cls["variant"]
        bold = cls["variant"] == "3"
        rows.append(
            [
                f"full query, max_rounds {rounds}, {cls['depth']} hops "
                f"({cls['customers']} customers, {_n(cls['calls'])} calls)",
                _fmt(cls["median_ms"]),
                _fmt(cls["p99_ms"]),
                _fmt(cls["replay_ms"]),
                f"**{cls['ratio_replay']:.2f}**" if bold else f"{cls['ratio_replay']:.2f}",
                _fmt(cls["over_replay_ms"]),
                _fmt(cls["simple_ms"]),
                f"{cls['ratio_simple']:.2f}",
                f"{cls['p99_ratio_replay']:.2f}",
            ]
        )
    rows.append(
        [
            "direct sandbox call (`GET /stripe/v1/customers/{id}`)",
            _fmt(lat["direct_ms"]),
            _fmt(lat["direct_p99_ms"]),
            "",
            "",
            "",
            "",
            "",
            "",
        ]
    )
    shapes = [
        f"- max_rounds {c['variant']}, {c['depth']} hops: {_shape_text(c['shape'])}"
        for c in lat["classes"]
    ]
    by = {(c["variant"], c["depth"]): c for c in lat["classes"]}
    extra = []
    for d3, d1 in ((4, 3), (3, 2)):
        a, b = by.get(("3", d3)), by.get(("1", d1))
        if a and b:
            extra.append(
                f"{_fmt(a['median_ms'] - b['median_ms'])} ms for the "
                f"{'customers whose account has a parent' if d3 == 4 else 'others'} "
                f"({_fmt(b['median_ms'])} → {_fmt(a['median_ms'])} ms; replayed floor "
                f"{_fmt(b['replay_ms'])} → {_fmt(a['replay_ms'])} ms)"
            )
    per_run = "; ".join(
        f"max_rounds {c['variant']} {c['depth']} hops "
        + ", ".join(f"{x:.3f}" for x in c["per_run_ratio_replay"])
        for c in lat["classes"]
    )
    return "\n".join(
        [
            common.table(
                [
                    "request",
                    "median ms",
                    "p99 ms",
                    "replayed floor ms",
                    "median ÷ replayed",
                    "above replayed ms",
                    "hops × direct ms",
                    "median ÷ hops × direct",
                    "p99 ÷ replayed",
                ],
                rows,
            ),
            "",
            "The hops, as captured (operation names per hop, number of HTTP calls):",
            "",
            *shapes,
            "",
            "What the second identity round costs (max_rounds 3 vs 1, same customers): "
            + ("; ".join(extra) if extra else "n/a")
            + ".",
            "",
            f"Per run and class: {lat['classes'][0]['samples']} gateway requests (one at a time "
            f"on one keep-alive connection), {lat['classes'][0]['replays']} replays of the "
            f"critical path, and {lat['direct_samples']} direct calls per run, interleaved in "
            "two halves. p99 is per run (then the median of runs). Per-run ratios to the "
            f"replayed floor: {per_run}.",
        ]
    )


def section_throughput(tp: dict[str, Any]) -> str:
    rows = []
    for label, t in tp["targets"].items():
        gw = t["kind"] == "gateway"
        rows.append(
            [
                f"`{label}`",
                "full 1-customer query" if gw else "`{ hello }`",
                _fmt(t["rps"]),
                f"**{t['cpu_ms']:.2f}**" if gw else f"{t['cpu_ms']:.2f}",
                f"{t['sandbox_cpu_ms']:.2f}" if gw else "",
                f"{t['upstream_per_req']:.2f}" if gw else "",
                f"{t['server_cores']:.2f}",
                f"{t['other_cores']:.2f}",
                f"{t['busiest_worker']:.2f}" if t["workers"] > 1 else "",
                _fmt(t["p50_ms"]),
                _fmt(t["p99_ms"]),
                f"{t['unloaded_ms']:.1f}",
                str(t["errors"]),
            ]
        )
    warm = "; ".join(
        f"`{k}` {v['passes']} pass(es), upstream calls per pass {v['calls_per_pass']}"
        for k, v in tp.get("warmed", {}).items()
    )
    return "\n".join(
        [
            common.table(
                [
                    "server",
                    "query",
                    "req/s",
                    "server CPU ms/req",
                    "sandbox CPU ms/req",
                    "upstream calls/req",
                    "server cores busy",
                    "other cores busy",
                    "busiest worker's CPU share",
                    "p50 ms (loaded)",
                    "p99 ms (loaded)",
                    "unloaded latency ms",
                    "errors",
                ],
                rows,
            ),
            "",
            f"Closed loop, {tp['concurrency']} connections, {tp['warmup']:g} s warm-up then "
            f"{tp['duration']:g} s measured, per target per run (order rotated each run). "
            "Server CPU = utime+stime of the server's process tree (uvicorn's supervisor and "
            "workers, audit-writer threads included) over the measured window ÷ requests "
            'completed in it. "Upstream calls/req" = sandbox calls in the window ÷ requests: '
            "0 means every request was served from the cache; below the 12 of a lone query "
            "because concurrent requests share calls (the resilience layer merges batches for "
            "the same connector method that different requests dispatch within two event loop "
            'passes; "no merging" turns that off with `resilience.merge_max_keys: 0`). '
            '"Other cores busy" = the whole '
            "machine's busy CPU in the window minus server and sandbox: the load generator plus "
            'whatever else ran on the shared box (2 cores in all). "Unloaded latency" = median '
            f"of {tp['probe']} requests sent one at a time on one keep-alive connection after "
            "the load. Cache-on gateways were warmed before the runs by sending every query "
            f"until a whole pass made no upstream call: {warm or 'n/a'}.",
            "",
            common.table(
                ["ratio (median of per-run ratios)", "value"],
                [[k, f"{v:.2f}×"] for k, v in tp["ratios"].items()],
            ),
        ]
    )


def section_transport(tr: dict[str, Any]) -> str:
    hidden = tr["variants"]["httpcore, sniffio hidden"]["sniffio_loaded"]
    return "\n".join(
        [
            transport_bench.report(tr),
            "",
            f"{tr['calls']} GETs per concurrency level and run against a raw-asyncio HTTP/1.1 "
            "server in another process; CPU is `time.process_time()` of the client process "
            "over the measured calls ÷ calls. "
            + (
                "In the sniffio-hidden run sniffio was confirmed absent from sys.modules."
                if not hidden
                else "WARNING: sniffio was still imported in the sniffio-hidden run."
            ),
        ]
    )


def section_transport_gateway(tp: dict[str, Any]) -> str:
    rows = []
    ratios = tp["ratios"]
    nan = float("nan")
    for w in (1, 2):
        a = tp["targets"].get(f"gateway aiohttp x{w}")
        h = tp["targets"].get(f"gateway httpcore x{w}")
        if a and h:
            rows.append(
                [
                    f"{w} worker{'s' if w > 1 else ''}",
                    f"{a['cpu_ms']:.2f} / {_fmt(a['rps'])}",
                    f"{h['cpu_ms']:.2f} / {_fmt(h['rps'])}",
                    f"{ratios.get(f'httpcore / aiohttp x{w} cpu', nan):.2f}×",
                    f"{ratios.get(f'httpcore / aiohttp x{w} rps', nan):.2f}×",
                ]
            )
    return common.table(
        ["gateway (cache off)", "aiohttp: CPU ms/req / req/s", "httpcore: CPU ms/req / req/s",
         "CPU httpcore ÷ aiohttp", "req/s httpcore ÷ aiohttp"],
        rows,
    )  # fmt: skip


def section_cache_load(cl: dict[str, Any], customers: int) -> str:
    rows = []
    base = next(iter(cl["targets"].values()))
    for label, t in cl["targets"].items():
        ratio = cl["ratios"].get(f"{label} / uncached rps")
        rows.append(
            [
                label,
                _fmt(t["rps"]),
                f"{ratio:.2f}×" if ratio else "",
                _fmt(t["p50_ms"]),
                _fmt(t["p99_ms"]),
                _fmt(t["unloaded_ms"]),
                _fmt(t["unloaded_p99_ms"]),
                f"{t['cpu_ms']:.2f}",
                f"{t['upstream_per_req']:.2f}",
                str(t["errors"]),
            ]
        )
    return "\n".join(
        [
            common.table(
                [
                    "gateway x1, full 1-customer query",
                    "req/s",
                    "req/s ÷ uncached",
                    "p50 ms (loaded)",
                    "p99 ms (loaded)",
                    "p50 ms (one at a time)",
                    "p99 ms (one at a time)",
                    "gateway CPU ms/req",
                    "upstream calls/req",
                    "errors",
                ],
                rows,
            ),
            "",
            f"Closed loop, {cl['concurrency']} connections, {cl['warmup']:g} s warm-up then "
            f"{cl['duration']:g} s measured, {cl['runs']} run(s), order rotated; loaded p50/p99 "
            "over the requests of a run (median of runs); one-at-a-time figures from "
            f"{cl['probe']} sequential requests after the load. Cached gateways were warmed "
            f"first until a whole pass over the {customers} customers (the query rotates over "
            "them) made no upstream call "
            + "; ".join(f"({k}: {v['passes']} passes)" for k, v in cl["warmed"].items())
            + f". The uncached gateway makes {base['upstream_per_req']:.1f} upstream calls per "
            "query.",
        ]
    )


def section_burst(burst: dict[str, Any]) -> str:
    targets = burst["targets"]
    labels = list(targets)
    routes = sorted({r for t in targets.values() for r in t["routes"]})
    rows = []
    for r in routes:
        cells = []
        for k in labels:
            c = targets[k]["routes"].get(r, {})
            cells.append(f"{_n(c.get('single', 0))} → {_n(c.get('burst', 0))}")
        rows.append([f"`{r}`", *cells])
    rows.append(
        ["**total**", *(f"**{_n(targets[k]['single_total'])} → {_n(targets[k]['burst_total'])}**"
                        for k in labels)]
    )  # fmt: skip
    lat_rows = [
        [k, _fmt(t["p50_ms"]), _fmt(t["p99_ms"]), _fmt(t["max_ms"]), f"{t['errors']}",
         _n(t["burst_total_max"]), _events(t), _met(t["met"])]
        for k, t in targets.items()
    ]  # fmt: skip
    return "\n".join(
        [
            f"{burst['count']} connections opened first, then the same full query for one cold "
            "customer (never queried before: past the first 200 of the answer key) sent on all "
            "of them at once; sandbox at 50 ms. Calls per route from `/_sandbox/stats` (reset "
            "before each burst), next to what one query for the same customer costs on the "
            "cache-off gateway (the target: the burst costs no more than one query, route by "
            "route. Literally one call per route is out of reach even for a single query: it "
            "calls Stripe's and Zendesk's search routes once per lookup kind -- by email, by "
            "phone, for links). `mailchimp GET /3.0/lists` (list names, read once per worker "
            "process) is shown but left out of the verdict. A fresh customer per burst and run, "
            "after a few uncounted queries for other cold customers that reach every worker; "
            "medians of runs.",
            "",
            common.table(["route", *(f"{k}: one query (cache off) → burst" for k in labels)], rows),
            "",
            common.table(
                [
                    "burst",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "errors",
                    "calls (worst run)",
                    "cache events, all bursts, all workers",
                    "≤ one query per route, every run",
                ],
                lat_rows,
            ),
        ]
    )


def _log_share(groups: dict[str, float]) -> float:
    return sum(groups.get(g, 0.0) for g in ("traceback", "ast", "linecache", "logging"))


def _events(t: dict[str, Any]) -> str:
    ev = t.get("cache_events", {})
    keys = ("hit", "miss", "wait", "redis_error", "fail_open")
    text = ", ".join(f"{k} {ev[k]}" for k in keys if ev.get(k))
    errors = t.get("store_errors") or {}
    if errors:
        text += "; gateway log: " + ", ".join(f"`{k}` ×{v}" for k, v in errors.items())
    if t.get("workers_seen", 1) < t.get("workers", 1):
        text += f" ({t['workers_seen']} of {t['workers']} workers' /metrics reached)"
    return text or "none"


def _hang_summary(hang: dict[str, Any]) -> dict[str, Any]:
    runs = hang["runs"]
    pooled = [x for r in runs for x in r["latencies_ms"]]
    return {
        "median_ms": common.median([r["median_ms"] for r in runs]),
        "p99_ms": common.median([r["p99_ms"] for r in runs]),
        "max_ms": max(pooled),
        "min_ms": min(pooled),
        "requests": len(pooled),
        "with_customer": sum(r["with_customer"] for r in runs),
        "fields": {f: sum(r["fields_present"][f] for r in runs) for f in runs[0]["fields_present"]},
        "errors": _merge_counts([r["errors"] for r in runs]),
        "statuses": _merge_counts([r["statuses"] for r in runs]),
    }


def _merge_counts(items: list[dict[Any, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        for k, v in item.items():
            out[str(k)] = out.get(str(k), 0) + v
    return out


def section_hang(hang: dict[str, Any]) -> str:
    h = _hang_summary(hang)
    deadline = hang["deadline_s"] * 1000
    n = h["requests"]
    fields = ", ".join(f"{f} {c}/{n}" for f, c in h["fields"].items())
    errors = ", ".join(f"`{k}` ×{v}" for k, v in h["errors"].items())
    d = hang["default_breaker"]
    cpu = common.median([r["cpu_ms"] for r in hang["runs"]])
    prof = next((r for r in hang["runs"] if r.get("profile_groups")), None)
    d_fields = ", ".join(f"{f} {c}/{d['requests']}" for f, c in d["fields_present"].items())
    rows = [
        [
            f"`{HANG_VENDOR}` hangs, breaker out of the way (`breaker.failures: 1000`)",
            str(n),
            _fmt(h["median_ms"]),
            _fmt(h["p99_ms"]),
            _fmt(h["max_ms"]),
            _fmt(h["median_ms"] - deadline),
            _fmt(h["p99_ms"] - deadline),
        ],
        [
            f"`{HANG_VENDOR}` hangs, default breaker (opens after 5 failures)",
            str(d["requests"]),
            _fmt(d["median_ms"]),
            _fmt(d["p99_ms"]),
            _fmt(d["max_ms"]),
            _fmt(d["median_ms"] - deadline),
            _fmt(d["p99_ms"] - deadline),
        ],
    ]
    return "\n".join(
        [
            f'Sandbox at 50 ms; `POST /_sandbox/faults {{"{HANG_VENDOR}": {{"hang": true}}}}` '
            f"holds every {HANG_VENDOR} request until the fault is cleared; gateway with "
            f"`gateway.request_deadline: {hang['deadline_s']:g}`, cache off; the full query one "
            "request at a time on one keep-alive connection.",
            "",
            common.table(
                [
                    "case",
                    "requests",
                    "median ms",
                    "p99 ms",
                    "max ms",
                    "median − deadline ms",
                    "p99 − deadline ms",
                ],
                rows,
            ),
            "",
            f"What came back with the breaker out of the way: HTTP {h['statuses']}; "
            f"`customer` present in {h['with_customer']}/{n}; fields present: {fields}. "
            f"Errors (path, code): {errors or 'none'}.",
            "",
            f"Gateway CPU per request while {HANG_VENDOR} hangs: {cpu:.1f} ms (median of runs)"
            + (
                f"; where it goes (py-spy `--gil`, {prof['profile_samples']} samples): "
                + ", ".join(f"`{g}` {p:.0f}%" for g, p in list(prof["profile_groups"].items())[:8])
                + f"; log formatting (`traceback`, `ast`, `linecache`, `logging`) "
                f"{_log_share(prof['profile_groups']):.0f}%."
                if prof
                else "."
            ),
            "",
            "With the default breaker, request by request (ms): "
            + ", ".join(f"{x:.0f}" for x in d["latencies_ms"])
            + f"; fields present: {d_fields}; errors: "
            + (", ".join(f"`{k}` ×{v}" for k, v in d["errors"].items()) or "none")
            + ".",
        ]
    )


def section_hang_load(hl: dict[str, Any]) -> str:
    runs = hl["runs"]

    def med(window: str, key: str) -> float:
        return common.median([r[window][key] for r in runs])

    rows = [
        [
            label,
            _fmt(med(window, "rps")),
            _fmt(med(window, "p50_ms")),
            _fmt(med(window, "p99_ms")),
            _fmt(max(r[window]["max_ms"] for r in runs)),
            "1"
            if window == "healthy"
            else f"{common.median([r[f'{window}_ratio'] for r in runs]):.2f}",
        ]
        for window, label in (
            ("healthy", "healthy"),
            ("onset", f"{HANG_VENDOR} starts hanging as the window opens"),
            ("hanging", f"{HANG_VENDOR} goes on hanging"),
        )
    ]
    seen = runs[-1]["answers"]
    n = seen["requests"]
    fields = ", ".join(f"{f} {c}/{n}" for f, c in seen["fields_present"].items())
    errors = ", ".join(f"`{k}` ×{v}" for k, v in seen["errors"].items()) or "none"
    recovery = ", ".join(f"{r['recovery_s']:.1f}" for r in runs)
    return "\n".join(
        [
            f"Sandbox at 50 ms; the gateway with its defaults (request deadline 8 s, breaker "
            f"opening on a stall, probing after 2–5 s), auth on, cache off; the full query "
            f"under closed-loop load, {hl['concurrency']} connections, {hl['warmup']:g} s "
            f"warm-up, {hl['duration']:g} s window, per run: healthy, then a window that opens "
            f"as `{HANG_VENDOR}` starts to hang (so it holds the time it takes to judge the "
            f"hang), then one while it goes on hanging. Medians of {len(runs)} runs; the ratio "
            "is per run.",
            "",
            common.table(["window", "rps", "p50 ms", "p99 ms", "max ms", "rps ÷ healthy"], rows),
            "",
            f"What a request got while {HANG_VENDOR} hung ({n} read in full, last run): fields "
            f"present: {fields}; errors (path, code): {errors}.",
            "",
            f"After the hang was cleared, {HANG_FIELD} came back after (s, per run): {recovery} "
            "(the breaker's next probe: 2–5 s after it opened, doubling after each failed "
            "probe, at most 10 s).",
        ]
    )


def write_report(path: Path, meta: dict[str, Any], plan: Plan, results: dict[str, Any]) -> None:
    out = [
        "# c360 benchmarks",
        "",
        "Generated by `bench/run.py`; raw numbers in `bench/results.json`. "
        "Reproduce with the command below (add `--quick` for a smoke run).",
        "",
        section_meta(meta, plan, results),
        "",
        "## Targets",
        "",
        section_targets(results),
        "",
    ]
    calls = results.get("calls")
    if calls:
        out += [
            "## (a) Upstream calls per route, `customers(emails: [...])`, full selection",
            "",
            "One query asking all four systems for N customers (all present in all four "
            "systems), cache off, identity resolution at its default (up to 3 rounds: email, "
            "then phones and explicit links); counts from the sandbox's `GET /_sandbox/stats`, "
            "reset before each query.",
            "",
            section_calls(calls),
            "",
        ]
    ident = results.get("identity")
    if ident:
        out += [
            "## (e) Identity resolution and account pages: upstream calls",
            "",
            section_identity(ident, results.get("accounts")),
            "",
        ]
    lat = results.get("latency")
    if lat:
        out += [
            "## (b) Latency of `customer(email:)` vs the critical-path floor, sandbox at 50 ms",
            "",
            "The critical path is a chain of dependent hops: email lookups → phone/link "
            "lookups (identity round 2) → account, tickets, invoices → account.parent: 4 hops "
            "when the customer's account has a parent, 3 without; one fewer with "
            "`identity: {max_rounds: 1}`. Customers are grouped by the hops their query really "
            "took. Two floors, both measured in the same run: **replayed** = the gateway's own "
            "upstream requests for the same customers (captured from the gateway app run in the "
            "bench process with the same config), sent hop after hop by a raw-socket client, "
            "the requests of a hop in parallel -- sandbox latency and sandbox work included, "
            "gateway work excluded (bench/critical_path.py); **hops × direct** = the number of "
            "hops × the median of one direct sandbox call (the old floor; it ignores that a hop "
            "of 5 parallel calls to one single-threaded sandbox takes longer than one call).",
            "",
            section_latency(lat),
            "",
        ]
    tp = results.get("throughput")
    if tp:
        out += [
            "## (c) Throughput and CPU per request, sandbox at 0 ms",
            "",
            f"The full single-customer query rotating over {results.get('full_query_customers')} "
            "real customers (`in_all` in `GET /_sandbox/customers?limit=200`), next to the "
            "strawberry `{ hello }` app (bench/hello_app.py: uvicorn ▸ starlette ▸ strawberry, "
            "no auth, nothing else) with the same worker count. Cache off: every request goes "
            "upstream; cache memory: warm, every request is served from the gateway's memory "
            "cache.",
            "",
            section_throughput(tp),
            "",
        ]
    tr = results.get("transport")
    if tr or tp:
        out += ["## (d) httpx transports: httpcore vs aiohttp (httpx-aiohttp)", ""]
        if tr:
            out += ["### (d1) Client CPU per upstream call", "", section_transport(tr), ""]
        if tp:
            out += [
                "### (d2) The gateway with each transport (from (c))",
                "",
                section_transport_gateway(tp),
                "",
            ]
    if any(results.get(k) for k in ("cache_load", "burst", "hang", "hang_load")):
        out += ["## (f) Cache, single-flight and the request deadline, sandbox at 50 ms", ""]
        if results.get("redis_missing"):
            out += ["redis-server was not installed: the Redis rows are missing.", ""]
        if results.get("cache_load"):
            out += [
                "### (f1) Fully cached vs uncached",
                "",
                section_cache_load(results["cache_load"], results["cache_load_customers"]),
                "",
            ]
        if results.get("burst"):
            out += ["### (f2) A burst of identical queries for a cold customer", ""]
            out += [section_burst(results["burst"]), ""]
        if results.get("hang"):
            out += [f"### (f3) The full query while {HANG_VENDOR} hangs", ""]
            out += [section_hang(results["hang"]), ""]
        if results.get("hang_load"):
            out += [f"### (f4) Requests/s while {HANG_VENDOR} hangs vs healthy", ""]
            out += [section_hang_load(results["hang_load"]), ""]
    profiles = results.get("profiles")
    if profiles:
        import profile_gateway

        out += ["## Where the gateway's CPU goes", ""]
        for cache, prof in profiles.items():
            title = "uncached (cache off)" if cache == "off" else "fully cached (memory, warm)"
            out += [f"### {title}", "", profile_gateway.report(prof), ""]
    out += ["## Notes", "", notes(results), ""]
    path.write_text("\n".join(out), encoding="utf-8")


def notes(results: dict[str, Any]) -> str:
    items: list[str] = []
    calls = results.get("calls")
    if calls:
        sizes = calls["sizes"]
        n = sizes[-1]
        floors = _floor_routes(calls)
        ops = calls["operations"]
        by_id = {o: c for o, c in ops.items() if o == "stripe.customers_by_id"}
        items.append(
            f"(a) For N={n} the gateway made {_n(calls['totals'][n])} upstream calls "
            f"({calls['totals'][n] / n:.2f} per customer; N=1: {_n(calls['totals'][sizes[0]])}). "
            "Routes at a floor of one call per customer: "
            + (", ".join(f"`{r}`" for r in floors) or "none")
            + " -- Mailchimp has no multi-email member read, so one search per email is its "
            "floor. Stripe has no multi-id customer read either (customer-by-id would be one "
            "call per id), "
            + (
                "and this query read Stripe customers by id "
                f"({_n(by_id['stripe.customers_by_id'][n])} calls at N={n})."
                if by_id
                else "but this query never reads Stripe customers by id: it finds them with "
                "`/v1/customers/search` (by email, by phone and by the CRM id in their metadata), "
                "whose query OR-combines a bounded number of clauses, so Stripe costs one call "
                "per chunk of keys instead of one per customer."
            )
        )
    ident = results.get("identity")
    if ident:
        t3, t1, n = ident["totals"]["3"], ident["totals"]["1"], ident["n"]
        items.append(
            f"(e) Full identity resolution for {n} customers costs {_n(t3 - t1)} more upstream "
            f"calls than emails alone ({_n(t3)} vs {_n(t1)}, {(t3 - t1) / n:.2f} per customer); "
            "the phone and link lookups are batched like the email ones (several keys per "
            "call), so the extra round costs calls per chunk, not per customer."
        )
    acc = results.get("accounts")
    if acc:
        ret = acc["returned"]
        items.append(
            f"(e) A page of {ret.get('accounts', 0)} accounts with children and contacts costs "
            f"{_n(acc['total'])} upstream call(s) in all: the page, then every account's "
            "children and contacts batched into one query each, not one per account."
        )
    lat = results.get("latency")
    if lat:
        by = {(c["variant"], c["depth"]): c for c in lat["classes"]}
        main = by.get(("3", 4)) or next(c for c in lat["classes"] if c["variant"] == "3")
        per_hop = main["over_replay_ms"] / main["depth"]
        items.append(
            f"(b) The {main['depth']}-hop full query took {_fmt(main['median_ms'])} ms against "
            f"a replayed critical path of {_fmt(main['replay_ms'])} ms: "
            f"{_fmt(main['over_replay_ms'])} ms above it (~{per_hop:.0f} ms per hop), i.e. the "
            "gateway's own work on the critical path (auth, parsing and validation, per hop "
            "request building, response mapping and identity bookkeeping, resolving, "
            "serializing). Against hops × one direct call "
            f"({_fmt(main['simple_ms'])} ms) it is {main['ratio_simple']:.2f}: that floor also "
            "leaves out the sandbox's queueing of a hop's parallel calls, which the replay "
            f"measures ({_fmt(main['replay_ms'] - main['simple_ms'])} ms over {main['depth']} "
            "hops)."
        )
    tp = results.get("throughput")
    if tp:
        t = tp["targets"]
        a1, h1 = t.get("gateway aiohttp x1"), t.get("hello x1")
        m1, na1 = t.get("gateway aiohttp x1, cache memory"), t.get("gateway aiohttp x1, no auth")
        un1 = t.get("gateway aiohttp x1, no merging")
        hello_x = {
            "uncached": tp["ratios"].get("gateway aiohttp x1 / hello x1 cpu", 0.0),
            "cached": tp["ratios"].get("gateway aiohttp x1, cache memory / hello x1 cpu", 0.0),
        }
        if a1 and h1:
            items.append(
                f"(c) One full query costs the gateway {a1['cpu_ms']:.1f} ms of CPU uncached "
                f"(1 worker, {a1['upstream_per_req']:.1f} upstream calls per query)"
                + (f" and {m1['cpu_ms']:.1f} ms fully cached" if m1 else "")
                + f", where the bare stack answers `{{ hello }}` for {h1['cpu_ms']:.2f} ms "
                f"({100 * h1['cpu_ms'] / CPU_TARGET_MS:.0f}% of the 3 ms budget)."
                + (
                    f" Without auth the uncached query costs {na1['cpu_ms']:.1f} ms "
                    f"(auth on ÷ off: {tp['ratios'].get('auth on / auth off x1 cpu', 0):.2f}×)."
                    if na1
                    else ""
                )
                + (
                    f" Going upstream costs the gateway {a1['cpu_ms'] - m1['cpu_ms']:.1f} ms of "
                    f"CPU per query, {(a1['cpu_ms'] - m1['cpu_ms']) / a1['upstream_per_req']:.1f}"
                    " ms per call ((uncached − cached) ÷ calls; a merged call carries several "
                    "requests' keys, so their records and mapping too): request building, "
                    "httpx + aiohttp, the resilience layer, JSON decoding, mapping."
                    if m1 and a1["upstream_per_req"]
                    else ""
                )
                + (
                    f" Merging concurrent requests' batches: without it (`merge_max_keys: 0`) "
                    f"the same load costs {un1['upstream_per_req']:.1f} upstream calls and "
                    f"{un1['cpu_ms']:.1f} ms of CPU per query "
                    "(no merging ÷ merging: "
                    f"{tp['ratios'].get('no merging / merging x1 cpu', 0):.2f}× CPU)."
                    if un1
                    else ""
                )
                + _zero_call_floor(a1, un1)
                + (" The profiles below say where it goes." if results.get("profiles") else "")
                + " Absolute CPU per request "
                "drifts by ±30% over minutes on this shared box (another tenant's load slows "
                "every CPU-second; see the speed probe above): read it next to `{ hello }` "
                f"measured in the same run ({hello_x['uncached']:.1f}× uncached"
                + (f", {hello_x['cached']:.1f}× cached" if m1 else "")
                + ")."
            )
        a2 = t.get("gateway aiohttp x2")
        if a1 and a2:
            items.append(
                f"(c) Two workers: {_fmt(a2['rps'])} vs {_fmt(a1['rps'])} req/s "
                f"({a2['rps'] / a1['rps']:.2f}×), CPU per request {a2['cpu_ms']:.1f} vs "
                f"{a1['cpu_ms']:.1f} ms. The 2 cores also run the sandbox (its CPU per query is "
                "in the table) and the load generator, so the second worker competes with them; "
                "req/s is this box's throughput, CPU per request is the gateway's own cost."
            )
        nagle = [
            label
            for label, x in t.items()
            if x["workers"] == 2
            and (one := t.get(label.replace("x2", "x1"))) is not None
            and x["unloaded_ms"] > one["unloaded_ms"] + 20
        ]
        if nagle:
            items.append(
                "(c) **Multi-worker latency trap**: with 2 workers every request after the first "
                "on a keep-alive connection waited ~40 ms ("
                + ", ".join(
                    f"`{label}` {t[label]['unloaded_ms']:.0f} ms vs "
                    f"{t[label.replace('x2', 'x1')]['unloaded_ms']:.0f} ms with 1 worker"
                    for label in nagle
                )
                + "): Nagle plus delayed ACK on sockets without TCP_NODELAY (uvicorn's "
                "multi-worker supervisor binds with `proto=0`; Kludex/uvicorn#3149)."
            )
        elif any(x["workers"] == 2 for x in t.values()):
            items.append(
                "(c) No multi-worker latency trap this time: 2-worker unloaded latencies are "
                "within 20 ms of 1 worker's (uvloop sets TCP_NODELAY on accepted sockets; the "
                "old report's ~40 ms Nagle stall came from plain asyncio)."
            )
    tr = results.get("transport")
    if tr:
        r = tr["ratios"]["**httpcore ÷ aiohttp**"]
        hid = tr["ratios"]["httpcore sniffio-hidden ÷ httpcore"]
        bare = tr["ratios"]["httpx+aiohttp ÷ bare aiohttp"]
        cs = transport_bench.CONCURRENCY
        items.append(
            "(d) httpcore costs "
            + ", ".join(f"{r[str(c)]:.1f}×" for c in cs)
            + " the client CPU of httpx-aiohttp per call at concurrency 1/10/50; without "
            "sniffio httpcore costs another "
            + ", ".join(f"{hid[str(c)]:.1f}×" for c in cs)
            + " (each call re-attempts `import sniffio`), which is why sniffio stays a "
            "dependency. httpx on top of aiohttp still costs "
            + ", ".join(f"{bare[str(c)]:.1f}×" for c in cs)
            + " aiohttp's own client per call."
        )
    cl = results.get("cache_load")
    if cl:
        tg = cl["targets"]
        unc = tg.get("uncached (cache off)")
        mem = tg.get("cached, memory")
        red = tg.get("cached, Redis")
        if unc and mem:
            items.append(
                f"(f1) At 50 ms upstream latency the fully cached query serves "
                f"{_fmt(mem['rps'])} req/s (memory)"
                + (f" and {_fmt(red['rps'])} req/s (Redis)" if red else "")
                + f" vs {_fmt(unc['rps'])} uncached, p50 {_fmt(mem['p50_ms'])}"
                + (f" / {_fmt(red['p50_ms'])}" if red else "")
                + f" vs {_fmt(unc['p50_ms'])} ms under load; one at a time "
                f"{_fmt(mem['unloaded_ms'])}"
                + (f" / {_fmt(red['unloaded_ms'])}" if red else "")
                + f" vs {_fmt(unc['unloaded_ms'])} ms. Cached throughput is bounded by the "
                f"gateway's CPU ({mem['cpu_ms']:.1f} ms per cached query"
                + (f", {red['cpu_ms']:.1f} ms with Redis" if red else "")
                + "), not by the upstreams."
            )
    burst = results.get("burst")
    if burst:
        failing = [k for k, t in burst["targets"].items() if t["cache_events"].get("fail_open")]
        tuned = burst["targets"].get(TUNED)
        if failing:
            kinds = sorted({e for k in failing for e in burst["targets"][k]["store_errors"]})
            items.append(
                "(f2) **The Redis cache failed open under the burst** in "
                + ", ".join(f"`{k}`" for k in failing)
                + ": the cache counted `redis_error` and then `fail_open` events"
                + (
                    " (the gateway log names " + ", ".join(f"`{e}`" for e in kinds) + ")"
                    if kinds
                    else ""
                )
                + ". redis-py's async pool raises `MaxConnectionsError` past its size (100 by "
                "default), and an event loop busy with 100 requests reads Redis replies late, "
                "past a short socket timeout. A few such errors open the store's breaker, and "
                "while it is open every lookup skips Redis (no cross-process lock, no write): "
                "each worker process fetches on its own; its in-process single-flight still "
                "holds, so one worker still costs one query's calls."
            )
        default2 = burst["targets"].get("Redis, 2 workers")
        if default2 and default2["met"] and not default2["cache_events"].get("fail_open"):
            items.append(
                f"(f2) Two workers sharing Redis: the burst cost {_n(default2['burst_total'])} "
                f"upstream calls (one query alone: {_n(default2['single_total'])}; cache events "
                f"{_events(default2)}): the cross-process lock held, the second worker waited "
                "for the first one's fetch."
            )
        if tuned:
            items.append(
                f"(f2) With `?max_connections=1000` on the Redis URL and `cache.timeout: 2`, the "
                f"2-worker burst cost {_n(tuned['burst_total'])} calls (one query: "
                f"{_n(tuned['single_total'])}; cache events {_events(tuned)}): "
                + (
                    "the cross-process lock holds once Redis answers."
                    if tuned["met"]
                    else "still more than one query."
                )
            )
    hang = results.get("hang")
    if hang:
        h = _hang_summary(hang)
        n = h["requests"]
        # Lost = a field that failed (an error on its path), not one the customer lacks.
        errored = {k.split()[0].removeprefix("customer.") for k in h["errors"]}
        lost = [f for f in h["fields"] if f in errored]
        deadline_ms = 1000 * hang["deadline_s"]
        when = (
            f"in {_fmt(h['min_ms'])}–{_fmt(h['max_ms'])} ms, before the deadline "
            f"({deadline_ms:.0f} ms)"
            if h["max_ms"] < deadline_ms
            else f"after {_fmt(h['min_ms'])}–{_fmt(h['max_ms'])} ms: the deadline "
            f"({deadline_ms:.0f} ms) plus {_fmt(h['median_ms'] - deadline_ms)} ms (median)"
        )
        present = [f for f, c in h["fields"].items() if c > 0]
        items.append(
            f"(f3) With {HANG_VENDOR} hanging, every full query answered {when}, never the "
            "hang. "
            + (
                f"But only {', '.join(present) or 'nothing'} came back: "
                + ", ".join(lost)
                + " were lost, not only marketing. Identity round 1 waits for every "
                "system's email lookup, so the hung one holds the whole resolution until the "
                "deadline, and the calls that depend on it (phones/links, account, tickets, "
                "invoices) then fail at once with 'the request deadline had passed'."
                if lost != ["marketing"] and lost
                else "Only marketing failed (account is null only where the customer has "
                "none): the other three systems' data came back."
                if lost == ["marketing"] or not lost
                else ""
            )
        )
        prof = next((r for r in hang["runs"] if r.get("profile_groups")), None)
        cpu = common.median([r["cpu_ms"] for r in hang["runs"]])
        over = h["median_ms"] > 1000 * hang["deadline_s"]
        if prof and over and _log_share(prof["profile_groups"]) >= 15:
            items.append(
                f"(f3) The {_fmt(h['median_ms'] - 1000 * hang['deadline_s'])} ms past the "
                "deadline are CPU work done after it, on the way to the response. A hang "
                f"request costs the gateway {cpu:.0f} ms of CPU, "
                f"{_log_share(prof['profile_groups']):.0f}% of it formatting tracebacks for "
                "the log: every failed field is logged with its full chained traceback, and "
                "Python 3.11's traceback module re-parses source files with `ast` for the "
                "`^^^` markers. Logging one line per failed upstream call (the traceback at "
                "debug level) would take that part off the path to the response."
            )
        d = hang["default_breaker"]
        fast = [x for x in d["latencies_ms"] if x < 500]
        slow = [x for x in d["latencies_ms"] if x >= 500]
        if fast and slow:
            items.append(
                f"(f3) With the default breaker (5 failures), {len(slow)} requests waited "
                f"{min(slow):.0f}–{max(slow):.0f} ms for {HANG_VENDOR} to time out, then the "
                f"breaker opened and the next {len(fast)} answered in "
                f"{min(fast):.0f}–{max(fast):.0f} ms without asking it."
            )
    items.append(
        "Noise: the machine is shared; other sessions' processes ran at times. Medians of "
        "runs and per-run ratios (both sides measured back to back) are what to read; "
        "single numbers can move by 20–30% between runs."
    )
    return "\n".join(f"- {item}" for item in items)


# -------------------------------------------------------------------------- main


def _int_keys(results: dict[str, Any]) -> dict[str, Any]:
    """JSON turned (a)'s per-N keys into strings: turn them back."""
    calls = results.get("calls")
    if calls:
        for part in ("routes", "operations"):
            calls[part] = {k: {int(n): v for n, v in c.items()} for k, c in calls[part].items()}
        calls["totals"] = {int(n): v for n, v in calls["totals"].items()}
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="c360 benchmarks -> bench/REPORT.md")
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument("--out", type=Path, default=BENCH / "REPORT.md")
    parser.add_argument("--json", type=Path, default=BENCH / "results.json")
    parser.add_argument(
        "--sections",
        default="abcdef",
        help="subset of a, b, c, d, e, f to run (default all); h: only (f4), the "
        "requests/s while a vendor hangs",
    )
    parser.add_argument(
        "--tool",
        default="python",
        choices=["auto", "wrk", "python"],
        help="load generator for (c): python (default), wrk, or auto (wrk when installed)",
    )
    prof = parser.add_mutually_exclusive_group()
    prof.add_argument("--profile", action="store_true", default=None, help="always profile")
    prof.add_argument("--no-profile", dest="profile", action="store_false", help="never profile")
    parser.add_argument("--profiler", default="auto", choices=["auto", "py-spy", "cprofile"])
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite --out from --json, measure nothing"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads(args.json.read_text(encoding="utf-8"))
        write_report(args.out, saved["meta"], Plan(**saved["plan"]), _int_keys(saved["results"]))
        step(f"wrote {args.out} from {args.json}")
        return 0
    if not connectors_ready():
        print("the four vendor connectors are not importable yet", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = dataclasses.replace(plan, runs=args.runs)
    if args.tool != "python" and loadgen.wrk_path() is None:
        step("wrk not found (apt-get install -y wrk): using the Python load generator")
        args.tool = "python"
    meta = metadata(argv)
    started = time.perf_counter()
    results = run_all(plan, args)
    meta["elapsed_s"] = time.perf_counter() - started
    meta["loadavg_end"] = _loadavg()
    meta["cpu_probe_end_ms"] = cpu_probe()
    meta["source_end"] = source_fingerprint()
    args.json.write_text(
        json.dumps({"meta": meta, "plan": dataclasses.asdict(plan), "results": results}, indent=1),
        encoding="utf-8",
    )
    write_report(args.out, meta, plan, results)
    step(f"wrote {args.out} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
