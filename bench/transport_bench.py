"""httpx's transports side by side: client CPU per upstream call.

A tiny HTTP/1.1 server (raw asyncio protocol, one fixed JSON answer) runs in
its own process; a client process makes N GETs at concurrency 1, 10 and 50
through ``httpx.AsyncClient`` with

* ``httpcore`` -- httpx's default transport (``make_transport("httpcore")``),
* ``aiohttp``  -- ``make_transport("aiohttp")`` (httpx-aiohttp),
* ``httpcore`` with ``sniffio`` hidden -- a meta-path finder makes
  ``import sniffio`` fail after the same path scan a missing package costs.

and reports ``time.process_time()`` per call (the client's own CPU; the server
is another process). Standalone::

    python bench/transport_bench.py [--runs 5] [--calls 3000]

This module imports only the standard library at its top, so that the client
subprocess can hide ``sniffio`` before httpx/httpcore/anyio are imported.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import importlib.machinery
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CONCURRENCY = (1, 10, 50)
VARIANTS: tuple[tuple[str, str, bool], ...] = (
    # (label, transport, hide sniffio)
    ("httpcore", "httpcore", False),
    ("aiohttp", "aiohttp", False),
    ("httpcore, sniffio hidden", "httpcore", True),
    # Reference: aiohttp's own client, no httpx layer on top.
    ("aiohttp.ClientSession, no httpx", "raw-aiohttp", False),
)

RATIOS = {
    "**httpcore ÷ aiohttp**": ("httpcore", "aiohttp"),
    "httpcore sniffio-hidden ÷ httpcore": ("httpcore, sniffio hidden", "httpcore"),
    "httpx+aiohttp ÷ bare aiohttp": ("aiohttp", "aiohttp.ClientSession, no httpx"),
}

_BODY = json.dumps(
    {
        "object": "customer",
        "id": "cus_RuIR8MJusD0V51",
        "email": "chloe.sato.0@quartzhealth.example",
        "name": "Chloe Sato",
        "metadata": {"tier": "gold"},
        "created": 1700000000,
    }
).encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


# ------------------------------------------------------------------------ server


class _Answer(asyncio.Protocol):
    """Answers every request head (GETs, no bodies) with the fixed response."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4 :]
            assert self.transport is not None
            self.transport.write(_RESPONSE)


def serve(port: int, seconds: float) -> None:
    """Serve on 127.0.0.1:port; exit by itself after ``seconds``."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Answer, "127.0.0.1", port, backlog=1024)
        async with server:
            await asyncio.sleep(seconds)

    asyncio.run(main())


# ------------------------------------------------------------------------ client


class _HideSniffio(importlib.abc.MetaPathFinder):
    """Make ``import sniffio`` fail as if it were not installed.

    It still runs the normal path scan first, so a failed import costs what it
    costs when the package is really absent.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "sniffio" or fullname.startswith("sniffio."):
            importlib.machinery.PathFinder.find_spec(fullname, path)
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def client(url: str, transport: str, calls: int, levels: Sequence[int]) -> dict[str, Any]:
    if transport == "raw-aiohttp":
        return _raw_aiohttp_client(url, calls, levels)
    import httpx

    from connectors.sdk.http import make_transport

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"sniffio_loaded": "sniffio" in sys.modules}
        async with httpx.AsyncClient(transport=make_transport(transport)) as http:

            async def worker(n: int) -> None:
                for _ in range(n):
                    resp = await http.get(url)
                    if resp.status_code != 200 or not resp.content:
                        raise RuntimeError(f"bad answer {resp.status_code}")

            for level in levels:
                per = max(1, calls // level)
                await asyncio.gather(*(worker(max(1, 200 // level)) for _ in range(level)))
                cpu0, t0 = time.process_time(), time.perf_counter()
                await asyncio.gather(*(worker(per) for _ in range(level)))
                t1, cpu1 = time.perf_counter(), time.process_time()
                total = per * level
                out[str(level)] = {
                    "calls": total,
                    "cpu_per_call": (cpu1 - cpu0) / total,
                    "rps": total / (t1 - t0),
                }
        out["sniffio_loaded"] = out["sniffio_loaded"] or "sniffio" in sys.modules
        return out

    return asyncio.run(main())


def _raw_aiohttp_client(url: str, calls: int, levels: Sequence[int]) -> dict[str, Any]:
    import aiohttp

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"sniffio_loaded": "sniffio" in sys.modules}
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(n: int) -> None:
                for _ in range(n):
                    async with session.get(url) as resp:
                        body = await resp.read()
                        if resp.status != 200 or not body:
                            raise RuntimeError(f"bad answer {resp.status}")

            for level in levels:
                per = max(1, calls // level)
                await asyncio.gather(*(worker(max(1, 200 // level)) for _ in range(level)))
                cpu0, t0 = time.process_time(), time.perf_counter()
                await asyncio.gather(*(worker(per) for _ in range(level)))
                t1, cpu1 = time.perf_counter(), time.process_time()
                total = per * level
                out[str(level)] = {
                    "calls": total,
                    "cpu_per_call": (cpu1 - cpu0) / total,
                    "rps": total / (t1 - t0),
                }
        return out

    return asyncio.run(main())


# ------------------------------------------------------------------- orchestrator


def run(runs: int, calls: int) -> dict[str, Any]:
    """Start the server, run every variant ``runs`` times (interleaved), return raw results."""
    import os

    sys.path.insert(0, str(BENCH_DIR))
    from common import REPO, free_port, median

    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/customers/cus_RuIR8MJusD0V51"
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", "--port", str(port), "--seconds", "900"]
    )
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in VARIANTS}
    try:
        _wait_port(port, server)
        for _ in range(runs):
            for label, transport, hide in VARIANTS:
                argv = [
                    sys.executable, __file__, "client", "--url", url, "--transport", transport,
                    "--calls", str(calls),
                ]  # fmt: skip
                if hide:
                    argv.append("--hide-sniffio")
                proc = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"transport client failed: {proc.stderr}")
                results[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    summary: dict[str, Any] = {"runs": runs, "calls": calls, "variants": {}}
    for label, samples in results.items():
        per_level = {}
        for level in CONCURRENCY:
            key = str(level)
            per_level[key] = {
                "cpu_us": median([s[key]["cpu_per_call"] * 1e6 for s in samples]),
                "rps": median([s[key]["rps"] for s in samples]),
                "cpu_us_runs": [round(s[key]["cpu_per_call"] * 1e6, 1) for s in samples],
            }
        summary["variants"][label] = {
            "levels": per_level,
            "sniffio_loaded": any(s["sniffio_loaded"] for s in samples),
        }
    # Per-run CPU ratios, then their median.
    summary["ratios"] = {
        name: {
            str(level): median(
                [
                    a[str(level)]["cpu_per_call"] / b[str(level)]["cpu_per_call"]
                    for a, b in zip(results[num], results[den], strict=True)
                ]
            )
            for level in CONCURRENCY
        }
        for name, (num, den) in RATIOS.items()
    }
    return summary


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("transport bench server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("transport bench server did not start")


def report(summary: dict[str, Any]) -> str:
    sys.path.insert(0, str(BENCH_DIR))
    from common import table

    rows = []
    for label, data in summary["variants"].items():
        levels = data["levels"]
        rows.append(
            [
                f"`{label}`",
                *(f"{levels[str(c)]['cpu_us']:.0f} µs" for c in CONCURRENCY),
                *(f"{levels[str(c)]['rps']:.0f}" for c in CONCURRENCY),
            ]
        )
    for name, values in summary["ratios"].items():
        rows.append([f"{name} (CPU, median of per-run ratios)",
                     *(f"{values[str(c)]:.2f}×" for c in CONCURRENCY), "", "", ""])  # fmt: skip
    headers = [
        "transport",
        *(f"CPU/call c={c}" for c in CONCURRENCY),
        *(f"calls/s c={c}" for c in CONCURRENCY),
    ]
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--seconds", type=float, default=600)
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--transport", required=True, choices=["httpcore", "aiohttp", "raw-aiohttp"])
    c.add_argument("--calls", type=int, default=3000)
    c.add_argument("--hide-sniffio", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.port, args.seconds)
    elif args.mode == "client":
        if args.hide_sniffio:
            sys.modules.pop("sniffio", None)
            sys.meta_path.insert(0, _HideSniffio())
        print(json.dumps(client(args.url, args.transport, args.calls, CONCURRENCY)))
    else:
        summary = run(args.runs, args.calls)
        print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
