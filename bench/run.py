"""c360 benchmarks: ``python bench/run.py [--quick]`` writes bench/REPORT.md.

What it measures (everything on 127.0.0.1, bounded in count and time; every
process it starts is stopped in a ``finally`` block):

(a) upstream calls per sandbox route for ``customers(emails: [...])`` with
    1, 10, 50, 200 customers, all four systems, the full selection;
(b) latency of the full ``customer(email:)`` query with the sandbox at 50 ms
    per call, against the critical-path floor measured in the same run
    (3 dependent hops × the median of a direct sandbox call); target ≤ 1.10;
(c) requests/s and gateway CPU per request (utime+stime of the gateway
    process tree from /proc) of that query at 0 ms, 1 and 2 workers, next to a
    strawberry ``{ hello }`` app with the same workers; target ≤ 3 ms;
(d) httpx's transports: client CPU per call (transport_bench.py) and the
    gateway's numbers from (c) with ``C360_TRANSPORT=httpcore`` vs ``aiohttp``;
plus, when (c) misses its target, a profile of the gateway (profile_gateway.py).

Load comes from a small asyncio HTTP/1.1 client (bench/loadgen.py) that opens
its connections one at a time, so that with several uvicorn workers on one
listening socket each worker gets its share (its own CPU per request is
reported). ``--tool wrk`` uses wrk instead (``apt-get install -y wrk``; the run
falls back to the Python client when it is absent): cheaper per request, but
it opens all connections in one burst and one worker may accept all of them.
The profile uses ``py-spy`` when it is installed (``pip install py-spy``) and
cProfile otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
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

SIZES = (1, 10, 50, 200)
CPU_TARGET_MS = 3.0
LATENCY_TARGET = 1.10
HOPS = 3
PACKAGES = (
    "strawberry-graphql", "graphql-core", "starlette", "uvicorn", "uvloop", "httptools",
    "httpx", "httpcore", "anyio", "sniffio", "aiohttp", "httpx-aiohttp", "aiodataloader",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    runs: int
    transport_calls: int
    load_warmup: float
    load_seconds: float
    concurrency: int
    three_hop: int
    two_hop: int
    direct: int
    profile_seconds: float


FULL = Plan(5, 600, 1.5, 5.0, 16, 40, 16, 24, 10.0)
QUICK = Plan(1, 200, 0.5, 2.0, 16, 10, 4, 8, 4.0)


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


def _wrk_version() -> str | None:
    wrk = loadgen.wrk_path()
    if wrk is None:
        return None
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (
        (proc.stdout or proc.stderr).splitlines()[0].strip()
        if (proc.stdout or proc.stderr)
        else wrk
    )


def metadata(argv: list[str]) -> dict[str, Any]:
    config_args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
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
        "wrk": _wrk_version(),
        "loadavg_start": _loadavg(),
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


def run_all(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    import gateway_bench as gb

    results: dict[str, Any] = {}
    sections = set(args.sections)
    if "d" in sections:
        step("(d1) transport micro benchmark")
        results["transport"] = transport_bench.run(plan.runs, plan.transport_calls)
    if sections & {"a", "c", "d"}:
        with common.sandbox(latency_ms=0) as sb0, ExitStack() as stack:
            step("starting gateways and hello apps (sandbox latency 0 ms)")
            servers: dict[str, common.Server] = {}
            for workers in (1, 2):
                for transport in ("aiohttp", "httpcore"):
                    servers[f"gateway {transport} x{workers}"] = stack.enter_context(
                        common.gateway(sb0.url, workers=workers, transport=transport)
                    )
                servers[f"hello x{workers}"] = stack.enter_context(common.hello(workers))
            if "a" in sections:
                step("(a) upstream calls per route")
                results["calls"] = gb.upstream_calls(
                    sb0.url, servers["gateway aiohttp x1"].url, SIZES, plan.runs
                )
            if sections & {"c", "d"}:
                step("(c)/(d2) throughput and CPU per request")
                full, hello = gb.full_query_bodies(sb0.url), gb.hello_bodies()
                targets = []
                for label, server in servers.items():
                    workers = int(label[-1])
                    if label.startswith("gateway"):
                        transport = label.split()[1]
                        targets.append(
                            gb.Target(label, server, full, "gateway", workers, transport)
                        )
                    else:
                        targets.append(gb.Target(label, server, hello, "hello", workers))
                results["throughput"] = gb.throughput(
                    sb0,
                    targets,
                    runs=plan.runs,
                    concurrency=plan.concurrency,
                    warmup=plan.load_warmup,
                    duration=plan.load_seconds,
                    tool=args.tool,
                )
                results["full_query_customers"] = len(full)
            stack.close()
            cpu = results.get("throughput", {}).get("targets", {}).get("gateway aiohttp x1")
            want_profile = args.profile or (
                args.profile is None and cpu is not None and cpu["cpu_ms"] > CPU_TARGET_MS
            )
            if want_profile and "c" in sections:
                import profile_gateway

                step("profile of the gateway (CPU target missed)")
                results["profile"] = profile_gateway.profile(
                    sb0.url, seconds=plan.profile_seconds, profiler=args.profiler
                )
    if "b" in sections:
        with common.sandbox(latency_ms=50) as sb50, common.gateway(sb50.url) as gw:
            step("(b) latency vs the critical-path floor (sandbox latency 50 ms)")
            results["latency"] = gb.latency(
                sb50.url,
                gw.url,
                runs=plan.runs,
                three_hop_samples=plan.three_hop,
                two_hop_samples=plan.two_hop,
                direct_samples=plan.direct,
            )
    return results


_T0 = time.perf_counter()


def step(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------ report


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def section_meta(meta: dict[str, Any], plan: Plan, results: dict[str, Any]) -> str:
    build = meta["python_build"]
    flags = ", ".join(k for k, v in build.items() if v) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    tool = results.get("throughput", {}).get("tool", "n/a")
    return "\n".join(
        [
            f"- date: {meta['date']}; whole run {meta['elapsed_s']:.0f} s",
            f"- command: `{meta['command']}`",
            f"- machine: {meta['nproc']} CPUs ({meta['cpu']}), Linux {meta['kernel']}, "
            f"shared and noisy; load average {meta['loadavg_start']} at the start, "
            f"{meta['loadavg_end']} at the end",
            f"- Python {meta['python']} (build flags: {flags}; "
            + (
                "no PGO/LTO: expect slower Python than a distro build)"
                if not build["pgo"]
                else "PGO build)"
            ),
            f"- packages: {versions}; uvicorn (gateway, hello app, sandbox) runs on "
            f"{meta['uvicorn_stack']}",
            f"- load generator: {tool}"
            + (f" ({meta['wrk']}, 1 thread)" if tool == "wrk" and meta["wrk"] else "")
            + f"; {plan.runs} run(s) of everything; tables show the median of the runs, "
            "ratios are the median of per-run ratios (both sides measured in the same run)",
        ]
    )


def section_targets(results: dict[str, Any]) -> str:
    rows = []
    lat = results.get("latency")
    if lat:
        r = lat["three"]["ratio"]
        rows.append(
            [
                "(b) full query latency ÷ critical-path floor (median)",
                f"{r:.2f} ({_fmt(lat['three']['median_ms'])} ms ÷ "
                f"{_fmt(lat['three']['floor_ms'])} ms)",
                f"≤ {LATENCY_TARGET:.2f}",
                _met(r <= LATENCY_TARGET),
            ]
        )
    tp = results.get("throughput")
    if tp:
        for label in ("gateway aiohttp x1", "gateway aiohttp x2"):
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
    return common.table(["target", "measured", "target", "verdict"], rows)


def section_calls(calls: dict[str, Any]) -> tuple[str, list[str]]:
    sizes = calls["sizes"]
    big = sizes[-1]
    rows = []
    per_customer = []
    for route, counts in calls["routes"].items():
        if counts[big] >= big:
            per_customer.append(route)
        per_call = big / counts[big] if counts[big] else float("inf")
        rows.append(
            [
                f"`{route}`",
                *(f"{counts[n]:g}" for n in sizes),
                "**1 (floor: one call per customer)**" if per_call <= 1 else f"{per_call:.1f}",
            ]
        )
    rows.append(["**total**", *(f"**{calls['totals'][n]:g}**" for n in sizes), ""])
    rows.append(["calls per customer", *(f"{calls['totals'][n] / n:.2f}" for n in sizes), ""])
    text = [
        common.table(
            ["route \\ N customers", *map(str, sizes), f"customers per call at N={big}"], rows
        ),
        "",
        "Counts were identical in every run."
        if not calls["varied"]
        else "Counts varied between runs (medians shown).",
    ]
    return "\n".join(text), per_customer


def section_latency(lat: dict[str, Any]) -> str:
    three, two = lat["three"], lat["two"]
    rows = [
        [
            f"full query, account with a parent ({lat['customers_three_hop']} customers): 3 hops",
            _fmt(three["median_ms"]),
            _fmt(three["p99_ms"]),
            _fmt(three["floor_ms"]),
            f"**{three['ratio']:.2f}**",
            f"{three['p99_ratio']:.2f}",
        ],
        [
            f"full query, no parent account ({lat['customers_two_hop']} customers): 2 hops",
            _fmt(two["median_ms"]),
            _fmt(two["p99_ms"]),
            _fmt(two["floor_ms"]),
            f"{two['ratio']:.2f}",
            f"{two['p99_ratio']:.2f}",
        ],
        [
            "direct sandbox call (`GET /stripe/v1/customers/{id}`)",
            _fmt(lat["direct_ms"]),
            _fmt(lat["direct_p99_ms"]),
            "",
            "",
            "",
        ],
    ]
    per_run = ", ".join(f"{r['three']['ratio']:.3f}" for r in lat["per_run"])
    s = lat["samples"]
    return "\n".join(
        [
            common.table(
                ["request", "median ms", "p99 ms", "floor ms", "median ÷ floor", "p99 ÷ floor"],
                rows,
            ),
            "",
            f"Per run: {s['three']} three-hop, {s['two']} two-hop and {s['direct']} direct "
            "requests, one at a time on one keep-alive connection each, interleaved in two "
            "halves. p99 is per run (then the median of runs); pooled over all runs it is "
            f"{_fmt(lat['pooled_p99_ms']['three'])} ms (3 hops) and "
            f"{_fmt(lat['pooled_p99_ms']['two'])} ms (2 hops). Per-run 3-hop ratios: {per_run}.",
        ]
    )


def section_throughput(tp: dict[str, Any]) -> str:
    rows = []
    for label, t in tp["targets"].items():
        query = "full 1-customer query" if t["kind"] == "gateway" else "`{ hello }`"
        rows.append(
            [
                f"`{label}`",
                query,
                _fmt(t["rps"]),
                f"**{t['cpu_ms']:.2f}**" if t["kind"] == "gateway" else f"{t['cpu_ms']:.2f}",
                f"{t['sandbox_cpu_ms']:.2f}" if t["kind"] == "gateway" else "",
                f"{t['server_cores']:.2f}",
                f"{t['other_cores']:.2f}",
                f"{t['busiest_worker']:.2f}" if t["workers"] > 1 else "",
                f"{t['unloaded_ms']:.1f}",
                str(t["errors"]),
            ]
        )
    ratios = tp["ratios"]
    ratio_rows = [[k, f"{v:.2f}×"] for k, v in ratios.items()]
    return "\n".join(
        [
            common.table(
                [
                    "server",
                    "query",
                    "req/s",
                    "server CPU ms/req",
                    "sandbox CPU ms/req",
                    "server cores busy",
                    "other cores busy",
                    "busiest worker's CPU share",
                    "unloaded latency ms",
                    "errors",
                ],
                rows,
            ),
            "",
            f"Closed loop, {tp['concurrency']} connections, {tp['warmup']:g} s warm-up then "
            f"{tp['duration']:g} s measured, per target per run (order rotated each run). "
            "Server CPU = utime+stime of the server's process tree (uvicorn's supervisor and "
            'workers) over the measured window ÷ requests completed in it. "Other cores busy" '
            "= the whole machine's busy CPU in the window minus server and sandbox: the load "
            'generator plus whatever else ran on the shared box (2 cores in all). "Unloaded '
            f'latency" = median of {tp["probe"]} requests sent one at a time on one keep-alive '
            "connection after the load.",
            "",
            common.table(["ratio (median of per-run ratios)", "value"], ratio_rows),
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
    per_customer: list[str] = []
    if calls:
        text, per_customer = section_calls(calls)
        out += [
            "## (a) Upstream calls per route, `customers(emails: [...])`, full selection",
            "",
            "One query asking all four systems for N customers (all present in all four "
            "systems); counts from the sandbox's `GET /_sandbox/stats`, reset before each query.",
            "",
            text,
            "",
        ]
    lat = results.get("latency")
    if lat:
        out += [
            "## (b) Latency of `customer(email:)` vs the critical-path floor, sandbox at 50 ms",
            "",
            f"Floor = {HOPS} dependent hops (email lookups → account / tickets / invoices → "
            "account.parent) × the median direct sandbox call of the same run. Only customers "
            "whose account has a parent really have 3 hops; the others need 2, so they are "
            "shown on their own against a 2-hop floor.",
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
            "nothing else) with the same worker count.",
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
            out += [
                "### (d2) The gateway with each transport (from (c))",
                "",
                common.table(
                    [
                        "gateway",
                        "aiohttp: CPU ms/req / req/s",
                        "httpcore: CPU ms/req / req/s",
                        "CPU httpcore ÷ aiohttp",
                        "req/s httpcore ÷ aiohttp",
                    ],
                    rows,
                ),
                "",
            ]
    prof = results.get("profile")
    if prof:
        import profile_gateway

        out += [
            "## Where the gateway's CPU goes",
            "",
            profile_gateway.report(prof),
            "",
        ]
    out += ["## Notes", "", notes(results, per_customer), ""]
    path.write_text("\n".join(out), encoding="utf-8")


def notes(results: dict[str, Any], per_customer: list[str]) -> str:
    items: list[str] = []
    calls = results.get("calls")
    if calls:
        sizes = calls["sizes"]
        n = sizes[-1]
        routes = ", ".join(f"`{r}`" for r in per_customer) or "none"
        by_id = [r for r in calls["routes"] if r.startswith("stripe GET /v1/customers/{")]
        items.append(
            f"(a) For N={n} the gateway made {calls['totals'][n]:g} upstream calls "
            f"({calls['totals'][n] / n:.2f} per customer; N=1: {calls['totals'][sizes[0]]:g}, "
            "the K connector methods the query needs). Every route but the ones listed next "
            "is batched (several customers per call). Routes that keep a floor of one call "
            f"per customer: {routes} -- Mailchimp has no multi-email member read. Stripe has "
            "no multi-id customer read, "
            + (
                "and this query does fetch customers by id there (one call per customer)."
                if by_id
                else "but this query never reads Stripe customers by id: it finds them with "
                "`/v1/customers/search`, whose query OR-combines a bounded number of clauses, "
                "so Stripe costs one call per chunk of customers instead of one per customer."
            )
        )
    lat = results.get("latency")
    if lat:
        three = lat["three"]
        over = three["median_ms"] - three["floor_ms"]
        items.append(
            f"(b) The 3-hop full query took {_fmt(three['median_ms'])} ms against a floor of "
            f"{_fmt(three['floor_ms'])} ms: {_fmt(over)} ms above it, i.e. the gateway's own "
            "work on the critical path (parsing and planning, three rounds of request "
            "building and response mapping, resolving and serializing). The floor charges "
            "the sandbox's own processing per hop too, since it is a real measured call."
        )
    tp = results.get("throughput")
    if tp:
        t = tp["targets"]
        a1, h1 = t.get("gateway aiohttp x1"), t.get("hello x1")
        calls_1 = f"{calls['totals'][1]:g}" if calls and 1 in calls["totals"] else "7-8"
        if a1 and h1:
            items.append(
                f"(c) One full query costs the gateway {a1['cpu_ms']:.1f} ms of CPU "
                f"(1 worker) where the bare stack answers `{{ hello }}` for "
                f"{h1['cpu_ms']:.2f} ms: the stack's own floor on this machine is already "
                f"{100 * h1['cpu_ms'] / CPU_TARGET_MS:.0f}% of the 3 ms budget. The full query "
                f"makes {calls_1} upstream calls (one more when the account has a parent), each "
                "an httpx request plus a JSON parse and a mapping, and resolves ~60 fields; "
                "(d1) prices the HTTP client alone per call."
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
            if label.endswith("x2")
            and (one := t.get(label[:-1] + "1")) is not None
            and x["unloaded_ms"] > one["unloaded_ms"] + 20
        ]
        if nagle:
            items.append(
                "(c) **Multi-worker latency trap**: with 2 workers every request after the first "
                "on a keep-alive connection waited ~40 ms ("
                + ", ".join(
                    f"`{label}` {t[label]['unloaded_ms']:.0f} ms vs "
                    f"{t[label[:-1] + '1']['unloaded_ms']:.0f} ms with 1 worker"
                    for label in nagle
                )
                + "). uvicorn's multi-worker supervisor binds the listening socket with "
                "`proto=0`, asyncio then skips TCP_NODELAY on accepted sockets, and Nagle "
                "waits for the client's delayed ACK (uvicorn issue Kludex/uvicorn#3149; "
                "uvloop sets TCP_NODELAY itself and avoids it). That caps req/s at about "
                f"{tp['concurrency']} connections ÷ ~45 ms, so the 2-worker req/s here measure "
                "the trap more than the CPU (CPU per request is not directly affected). "
                "`c360 serve --workers N` "
                "in production has the same problem unless uvloop is installed or the socket is "
                "bound with IPPROTO_TCP."
            )
    tr = results.get("transport")
    if tr:
        r = tr["ratios"]["**httpcore ÷ aiohttp**"]
        hid = tr["ratios"]["httpcore sniffio-hidden ÷ httpcore"]
        bare = tr["ratios"]["httpx+aiohttp ÷ bare aiohttp"]
        items.append(
            "(d) httpcore costs "
            + ", ".join(f"{r[str(c)]:.1f}×" for c in transport_bench.CONCURRENCY)
            + " the client CPU of httpx-aiohttp per call at concurrency 1/10/50; without "
            "sniffio httpcore costs another "
            + ", ".join(f"{hid[str(c)]:.1f}×" for c in transport_bench.CONCURRENCY)
            + " (each call re-attempts `import sniffio`, a failed import walks sys.path), "
            "which is why sniffio stays a dependency. httpx on top of aiohttp still costs "
            + ", ".join(f"{bare[str(c)]:.1f}×" for c in transport_bench.CONCURRENCY)
            + " aiohttp's own client per call: most of the per-call cost is the httpx layer "
            "(URL parsing, request/response objects, auth flow), not the socket work."
        )
    items.append(
        "Noise: the machine is shared; other sessions' processes ran at times. Medians of "
        "runs and per-run ratios (both sides measured back to back) are what to read; "
        "single numbers can move by 20–30% between runs."
    )
    return "\n".join(f"- {item}" for item in items)


# -------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="c360 benchmarks -> bench/REPORT.md")
    parser.add_argument("--quick", action="store_true", help="one short run of everything")
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument("--out", type=Path, default=BENCH / "REPORT.md")
    parser.add_argument("--json", type=Path, default=BENCH / "results.json")
    parser.add_argument(
        "--sections", default="abcd", help="subset of a, b, c, d to run (default abcd)"
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
    args = parser.parse_args(argv)
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
    args.json.write_text(
        json.dumps({"meta": meta, "plan": dataclasses.asdict(plan), "results": results}, indent=1),
        encoding="utf-8",
    )
    write_report(args.out, meta, plan, results)
    step(f"wrote {args.out} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
