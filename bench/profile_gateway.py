"""Where the gateway's CPU goes, under load with the full single-customer query.

Two profilers, same summary (self time by package, hottest functions, c360's
own functions with what they call):

* ``py-spy`` (preferred when installed: ``pip install py-spy``) samples the
  real ``c360 serve`` process from outside at 200 Hz; busy samples only, so
  the shares are shares of the gateway's CPU, with little observer effect.
* ``cProfile`` (stdlib fallback): the gateway app runs in this process under
  uvicorn with ``cProfile.Profile(time.thread_time)`` (CPU time, not wall
  time). It charges its own per-call overhead to call-heavy code (URL
  parsing, AST visitors), so its shares lean that way.

The sandbox and the load generator (``bench/loadgen.py``) run as separate
processes. Standalone::

    python bench/profile_gateway.py [--seconds 10] [--profiler auto|py-spy|cprofile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    HOST,
    REPO,
    GatewayOptions,
    free_port,
    gateway,
    in_process_settings,
    issuer,
    sandbox,
    table,
    tree_cpu,
)
from gateway_bench import full_query_bodies
from loadgen import each_once, raw_request

OWN = ("gateway", "schema", "connectors")
PYSPY_RATE = 200


def pyspy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"  # pip install py-spy into this venv
    return (
        os.environ.get("C360_BENCH_PYSPY")
        or shutil.which("py-spy")
        or (str(beside) if beside.exists() else None)
    )


def _group(path: str) -> str:
    """A source path (py-spy short form or absolute) -> package / stdlib module."""
    if not path or path.startswith(("~", "<")):
        return "builtins / C"
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(REPO).parts[0]
        except ValueError:
            pass
        parts = p.parts
        if "site-packages" in parts:
            return parts[parts.index("site-packages") + 1].removesuffix(".py")
        for i, part in enumerate(parts):
            if part.startswith("python3") and i + 1 < len(parts):
                return parts[i + 1].removesuffix(".py")
        return path
    return p.parts[0].removesuffix(".py")


def _rel(path: str) -> str:
    p = Path(path)
    if not p.is_absolute():
        return path
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        parts = p.parts
        if "site-packages" in parts:
            return "/".join(parts[parts.index("site-packages") + 1 :])
        return "/".join(parts[-2:])


def _summary(
    self_time: dict[str, float],
    inclusive: dict[str, float],
    where: dict[str, str],
    top: int,
) -> dict[str, Any]:
    total = sum(self_time.values()) or 1.0
    groups: dict[str, float] = defaultdict(float)
    for func, t in self_time.items():
        groups[_group(where[func])] += t
    # Entry frames (cli main, uvicorn.run, ...) include everything: leave them out.
    own = {
        f: t
        for f, t in inclusive.items()
        if _group(where[f]) in OWN and t < 0.99 * total and not where[f].endswith("cli.py")
    }
    own_self = {f: self_time.get(f, 0.0) for f in own}

    def pct(d: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(d.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [
            {
                "function": f,
                "pct": 100 * t / total,
                "self_pct": 100 * self_time.get(f, 0.0) / total,
                "cum_pct": 100 * inclusive.get(f, 0.0) / total,
            }
            for f, t in ranked
        ]

    return {
        "groups": [
            {"group": g, "pct": 100 * t / total}
            for g, t in sorted(groups.items(), key=lambda kv: kv[1], reverse=True)[:top]
        ],
        "own_total_self_pct": 100 * sum(own_self.values()) / total,
        "top_self": pct(self_time),
        "own_cumulative": pct(own),
    }


# ------------------------------------------------------------------------ py-spy

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_pyspy_raw(text: str, top: int = 25) -> dict[str, Any]:
    """Collapsed stacks (``a;b;c N``) -> the common summary."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    where: dict[str, str] = {}
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        names = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame)
            func, path = (m.group("func"), m.group("path")) if m else (frame, "")
            line_no = m.group("line") if m else None
            name = f"{path}:{line_no}({func})" if line_no else f"{path}({func})"
            where[name] = path
            names.append(name)
        self_time[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    result = _summary(dict(self_time), dict(inclusive), where, top)
    result["samples"] = samples
    return result


@contextmanager
def _load(
    url: str,
    bodies: list[bytes],
    seconds: float,
    concurrency: int,
    headers: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="c360-prof-") as tmp:
        path = Path(tmp) / "bodies.jsonl"
        path.write_text("\n".join(b.decode() for b in bodies) + "\n", encoding="utf-8")
        argv = [
            sys.executable, str(BENCH_DIR / "loadgen.py"), url, "--bodies", str(path),
            "--concurrency", str(concurrency), "--warmup", "1", "--seconds", str(seconds),
            "--tool", "python",
        ]  # fmt: skip
        for name, value in (headers or {}).items():
            argv += ["--header", f"{name}: {value}"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _warm(url: str, bodies: list[bytes], headers: Mapping[str, str] | None) -> None:
    """Every body once, so a cache-on gateway is warm before the profile starts."""
    graphql = f"{url}/graphql"
    each_once(graphql, [raw_request(graphql, "POST", b, headers) for b in bodies], 8)


def profile_pyspy(
    sandbox_url: str,
    *,
    seconds: float,
    concurrency: int,
    options: GatewayOptions,
    headers: Mapping[str, str] | None,
    stacks: Path | None = None,
) -> dict[str, Any]:
    pyspy = pyspy_path()
    if pyspy is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    bodies = full_query_bodies(sandbox_url)
    with gateway(sandbox_url, options) as gw:
        _warm(gw.url, bodies, headers)
        with (
            _load(f"{gw.url}/graphql", bodies, seconds + 4, concurrency, headers) as load,
            tempfile.TemporaryDirectory(prefix="c360-spy-") as tmp,
        ):
            time.sleep(2.0)
            out = Path(tmp) / "stacks.txt"
            cpu0, t0 = tree_cpu(gw.pid), time.perf_counter()
            subprocess.run(
                [
                    pyspy, "record", "-p", str(gw.pid), "-d", str(round(seconds)),
                    "-r", str(PYSPY_RATE), "--gil", "--function", "--format", "raw", "-o", str(out),
                ],
                check=True, capture_output=True, timeout=seconds + 60,
            )  # fmt: skip
            cpu1, t1 = tree_cpu(gw.pid), time.perf_counter()
            stdout, _ = load.communicate(timeout=seconds + 60)
            text = out.read_text(encoding="utf-8")
    if stacks is not None:
        stacks.write_text(text, encoding="utf-8")
    load_result = json.loads(stdout.decode().strip().splitlines()[-1])
    result = parse_pyspy_raw(text)
    requests = load_result["rps"] * (t1 - t0)
    result.update(
        {
            "profiler": f"py-spy ({PYSPY_RATE} Hz, `--gil`: samples of the thread holding "
            "the GIL, i.e. Python-level CPU)",
            "transport": options.transport,
            "label": options.label,
            "seconds": seconds,
            "concurrency": concurrency,
            "cpu_ms_per_req": (cpu1 - cpu0) * 1000 / max(1.0, requests),
            "load": load_result,
        }
    )
    return result


@contextmanager
def recording(pid: int, seconds: float, rate: int = 500) -> Iterator[dict[str, Any]]:
    """py-spy (``--gil``) on ``pid`` for about ``seconds`` while the body runs; the
    parsed summary lands in the yielded dict afterwards (empty without py-spy)."""
    found: dict[str, Any] = {}
    pyspy = pyspy_path()
    if pyspy is None:
        yield found
        return
    with tempfile.TemporaryDirectory(prefix="c360-spy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        proc = subprocess.Popen(
            [
                pyspy, "record", "-p", str(pid), "-d", str(max(1, math.ceil(seconds))),
                "-r", str(rate), "--gil", "--function", "--format", "raw", "-o", str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.3)  # py-spy attaches
            yield found
            proc.wait(timeout=seconds + 30)
            if out.exists():
                found.update(parse_pyspy_raw(out.read_text(encoding="utf-8")))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- cProfile


def profile_cprofile(
    sandbox_url: str,
    *,
    seconds: float,
    concurrency: int,
    options: GatewayOptions,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    import uvicorn

    from gateway.app import create_app

    bodies = full_query_bodies(sandbox_url)
    # CPU time of this thread, not wall time: on a busy 2-core box wall time
    # would charge preemption to whatever syscall happened to be running.
    prof = cProfile.Profile(time.thread_time)
    with tempfile.TemporaryDirectory(prefix="c360-prof-") as tmp:
        app = create_app(in_process_settings(sandbox_url, options, Path(tmp)))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False)
        )
        url = f"http://{HOST}:{port}"

        async def main() -> tuple[float, dict[str, Any]]:
            serving = asyncio.create_task(server.serve())
            deadline = time.monotonic() + 30
            while not server.started:
                if serving.done() or time.monotonic() > deadline:
                    raise RuntimeError("in-process gateway did not start")
                await asyncio.sleep(0.05)
            try:
                await asyncio.to_thread(_warm, url, bodies, headers)
                with _load(f"{url}/graphql", bodies, seconds + 3, concurrency, headers) as load:
                    await asyncio.sleep(1.5)
                    prof.enable()
                    await asyncio.sleep(seconds)
                    prof.disable()
                    out, _ = await asyncio.to_thread(load.communicate, timeout=seconds + 60)
            finally:
                server.should_exit = True
                await serving
            return seconds, json.loads(out.decode().strip().splitlines()[-1])

        window, load_result = asyncio.run(main())
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    self_time: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    where: dict[str, str] = {}
    for (filename, line, func), (_, _, tt, ct, _) in raw.items():
        name = func if filename.startswith("~") else f"{_rel(filename)}:{line}({func})"
        where[name] = "" if filename.startswith("~") else filename
        self_time[name] += tt
        inclusive[name] += ct
    result = _summary(dict(self_time), dict(inclusive), where, 25)
    requests = load_result["rps"] * window
    result.update(
        {
            "profiler": "cProfile (thread CPU time; inflates call-heavy code)",
            "transport": options.transport,
            "label": options.label,
            "seconds": seconds,
            "concurrency": concurrency,
            "cpu_ms_per_req": sum(self_time.values()) * 1000 / max(1.0, requests),
            "load": load_result,
        }
    )
    return result


def profile(
    sandbox_url: str,
    *,
    options: GatewayOptions,
    headers: Mapping[str, str] | None = None,
    seconds: float = 10.0,
    concurrency: int = 8,
    profiler: str = "auto",
    stacks: Path | None = None,
) -> dict[str, Any]:
    use_pyspy = profiler == "py-spy" or (profiler == "auto" and pyspy_path() is not None)
    if use_pyspy:
        return profile_pyspy(
            sandbox_url,
            seconds=seconds,
            concurrency=concurrency,
            options=options,
            headers=headers,
            stacks=stacks,
        )
    return profile_cprofile(
        sandbox_url, seconds=seconds, concurrency=concurrency, options=options, headers=headers
    )


def report(result: dict[str, Any], top: int = 12) -> str:
    per_req = result["cpu_ms_per_req"]
    lines = [
        f"Profiler: {result['profiler']}; `{result.get('label', result['transport'])}`, "
        f"full single-customer query at concurrency {result['concurrency']} for "
        f"{result['seconds']:g} s ({result['load']['rps']:.0f} req/s, about {per_req:.1f} ms "
        "of gateway CPU per request while profiled). ms/request = share × that.",
        "",
        table(
            ["package (self time)", "share", "≈ ms/request"],
            [
                [f"`{g['group']}`", f"{g['pct']:.1f}%", f"{g['pct'] * per_req / 100:.2f}"]
                for g in result["groups"][:top]
            ],
        ),
        "",
        table(
            ["hottest functions (self time)", "self", "incl."],
            [
                [f"`{r['function']}`", f"{r['self_pct']:.1f}%", f"{r['cum_pct']:.1f}%"]
                for r in result["top_self"][:top]
            ],
        ),
        "",
        f"c360's own code (gateway/, schema/, connectors/): {result['own_total_self_pct']:.1f}% "
        "self time; by inclusive time (what it does plus what it calls):",
        "",
        table(
            ["c360 function", "incl.", "self"],
            [
                [f"`{r['function']}`", f"{r['cum_pct']:.1f}%", f"{r['self_pct']:.1f}%"]
                for r in result["own_cumulative"][:top]
            ],
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="profile the gateway under load")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--transport", default="aiohttp", choices=["aiohttp", "httpcore"])
    parser.add_argument("--cache", default="off", choices=["off", "memory"])
    parser.add_argument("--no-auth", action="store_true", help="gateway.insecure_no_auth")
    parser.add_argument("--profiler", default="auto", choices=["auto", "py-spy", "cprofile"])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--stacks", type=Path, default=None, help="keep py-spy's collapsed stacks in this file"
    )
    args = parser.parse_args(argv)
    with sandbox(latency_ms=0) as sb, issuer() as iss:
        options = GatewayOptions(
            issuer_url=None if args.no_auth else iss.url,
            cache=args.cache,
            transport=args.transport,
        )
        result = profile(
            sb.url,
            options=options,
            headers=None if args.no_auth else iss.headers(),
            seconds=args.seconds,
            concurrency=args.concurrency,
            profiler=args.profiler,
            stacks=args.stacks,
        )
    print(report(result, top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
