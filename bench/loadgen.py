"""Closed-loop HTTP load: a lean asyncio client, or wrk when asked for and installed.

The Python client is a small HTTP/1.1 keep-alive client on raw asyncio streams
(no httpx: its per-request cost would eat into the server's CPU); it opens its
connections one at a time so that several uvicorn workers sharing one
listening socket each get a share. ``wrk`` (C, epoll; ``apt-get install -y
wrk`` on Debian) costs less CPU per request but connects in one burst, which
one worker may accept whole; ``tool="auto"`` uses it when it is on PATH.

Both keep ``concurrency`` connections busy for a warm-up period and then for
the measured window, rotate through the given request bodies, and count a
response as an error when it is not 200 or its body carries ``"errors"``.
``on_window(start|end)`` is called right at the window edges so the caller
can sample server CPU there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

WindowHook = Callable[[str], None]
# No benchmark request may take longer than this: a stuck server fails the run
# instead of hanging it.
REQUEST_TIMEOUT = 60.0


@dataclass
class LoadResult:
    tool: str
    requests: int
    errors: int
    seconds: float
    client_cpu: float | None = None  # seconds, when the client is this process
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


# ------------------------------------------------------------------ asyncio client


class _Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        match = _CONTENT_LENGTH.search(head)
        if match is None:
            raise RuntimeError("response without content-length")
        body = await self.reader.readexactly(int(match.group(1)))
        return status, body

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def raw_request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"errors"' not in body


async def _python_load(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    warmup: float,
    duration: float,
    on_window: WindowHook | None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [raw_request(url, "POST", b, headers) for b in bodies]
    latencies: list[float] = []
    ramp = min(0.02, warmup / (2 * concurrency))
    measuring = False
    stop = False
    done = 0
    errors = 0

    async def worker(offset: int) -> None:
        nonlocal done, errors
        # Connect one at a time, each once the previous one is busy: with several
        # uvicorn workers on one listening socket, connections opened in a burst
        # are all accepted by whichever worker wakes first (asyncio accepts in a
        # loop), and keep-alive then pins the whole load to that worker.
        await asyncio.sleep(offset * ramp)
        conn = await _Conn.open(host, port)
        i = offset
        try:
            while not stop:
                t0 = time.perf_counter()
                status, body = await conn.send(requests[i % len(requests)])
                i += concurrency
                if measuring:
                    latencies.append(time.perf_counter() - t0)
                    done += 1
                    if not _ok(status, body):
                        errors += 1
        finally:
            await conn.close()

    tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        if on_window:
            on_window("start")
        cpu0, t0 = time.process_time(), time.perf_counter()
        measuring = True
        await asyncio.sleep(duration)
        measuring = False
        t1, cpu1 = time.perf_counter(), time.process_time()
        if on_window:
            on_window("end")
        count, bad = done, errors
        stop = True
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    finally:
        for task in tasks:
            task.cancel()
    return LoadResult(
        "python", count, bad, t1 - t0, client_cpu=cpu1 - cpu0, latencies=latencies[:count]
    )


# ---------------------------------------------------------------------------- wrk

_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
bodies = { %(bodies)s }
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("offset", #threads)
end
init = function(args)
  i = offset or 0
  bad = 0
end
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    bad = bad + 1
  end
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("C360_BAD %%d\n", total))
end
"""


def _lua_script(bodies: Sequence[bytes], headers: Mapping[str, str] | None = None) -> str:
    quoted = ",\n".join("[==[" + b.decode() + "]==]" for b in bodies)
    lines = "\n".join(f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in (headers or {}).items())
    return _LUA % {"bodies": quoted, "headers": lines}


def _run_wrk(wrk: str, script: Path, url: str, concurrency: int, seconds: float) -> str:
    argv = [
        wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(script), url,
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    return proc.stdout


def _wrk_load(
    wrk: str,
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    warmup: float,
    duration: float,
    on_window: WindowHook | None,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="c360-wrk-") as tmp:
        script = Path(tmp) / "bodies.lua"
        script.write_text(_lua_script(bodies, headers), encoding="utf-8")
        if warmup > 0:
            _run_wrk(wrk, script, url, concurrency, warmup)
        if on_window:
            on_window("start")
        out = _run_wrk(wrk, script, url, concurrency, duration)
        if on_window:
            on_window("end")
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    bad = re.search(r"C360_BAD (\d+)", out)
    if total is None or bad is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    seconds = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    errors = int(bad.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if non2xx and not errors:
        errors = int(non2xx.group(1))
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return LoadResult("wrk", int(total.group(1)), errors, seconds)


# -------------------------------------------------------------------------- entry


def run_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    on_window: WindowHook | None = None,
    tool: str = "auto",
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Closed-loop load on ``url``; ``tool`` is ``auto`` (wrk if present), ``wrk`` or ``python``."""
    wrk = wrk_path() if tool in ("auto", "wrk") else None
    if tool == "wrk" and wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    if wrk is not None:
        return _wrk_load(wrk, url, bodies, concurrency, warmup, duration, on_window, headers)
    return asyncio.run(_python_load(url, bodies, concurrency, warmup, duration, on_window, headers))


async def _sequential(url: str, raw: Sequence[bytes], count: int) -> list[float]:
    parts = urlsplit(url)
    conn = await _Conn.open(parts.hostname or "127.0.0.1", parts.port or 80)
    out: list[float] = []
    try:
        for i in range(count):
            t0 = time.perf_counter()
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, body = await conn.send(raw[i % len(raw)])
            elapsed = time.perf_counter() - t0
            if not _ok(status, body):
                raise RuntimeError(f"{url}: HTTP {status}: {body[:300]!r}")
            out.append(elapsed)
    finally:
        await conn.close()
    return out


def sequential_latencies(url: str, raw_requests: Sequence[bytes], count: int) -> list[float]:
    """Latency (seconds) of ``count`` requests sent one after another on one connection."""
    return asyncio.run(_sequential(url, raw_requests, count))


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float


async def _burst(url: str, raw: bytes, count: int) -> list[Answer]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conns = [await _Conn.open(host, port) for _ in range(count)]
    gate = asyncio.Event()

    async def one(conn: _Conn) -> Answer:
        await gate.wait()
        t0 = time.perf_counter()
        status, body = await conn.send(raw)
        return Answer(status, body, time.perf_counter() - t0)

    try:
        tasks = [asyncio.create_task(one(c)) for c in conns]
        await asyncio.sleep(0.05)  # every task is parked on the gate
        gate.set()
        return list(await asyncio.wait_for(asyncio.gather(*tasks), timeout=120))
    finally:
        for conn in conns:
            await conn.close()


def burst(url: str, raw: bytes, count: int) -> list[Answer]:
    """``count`` connections opened first, then the same request on all of them at once."""
    return asyncio.run(_burst(url, raw, count))


async def _each_once(url: str, raws: Sequence[bytes], concurrency: int) -> list[Answer]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue = list(enumerate(raws))
    out: list[Answer | None] = [None] * len(raws)

    async def worker(k: int) -> None:
        # Connect one at a time (see _python_load): every worker process gets a share.
        await asyncio.sleep(k * 0.02)
        conn = await _Conn.open(host, port)
        try:
            while queue:
                i, raw = queue.pop()
                t0 = time.perf_counter()
                status, body = await conn.send(raw)
                out[i] = Answer(status, body, time.perf_counter() - t0)
        finally:
            await conn.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(k) for k in range(min(concurrency, len(raws))))), timeout=300
    )
    return [a for a in out if a is not None]


async def _answers(url: str, raws: Sequence[bytes]) -> list[Answer]:
    parts = urlsplit(url)
    conn = await _Conn.open(parts.hostname or "127.0.0.1", parts.port or 80)
    out: list[Answer] = []
    try:
        for raw in raws:
            t0 = time.perf_counter()
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, body = await conn.send(raw)
            out.append(Answer(status, body, time.perf_counter() - t0))
    finally:
        await conn.close()
    return out


def sequential_answers(url: str, raws: Sequence[bytes]) -> list[Answer]:
    """Each request in turn on one keep-alive connection, with its answer (errors kept)."""
    return asyncio.run(_answers(url, raws))


def each_once(url: str, raws: Sequence[bytes], concurrency: int = 8) -> list[Answer]:
    """Every request once, ``concurrency`` keep-alive connections working through them."""
    return asyncio.run(_each_once(url, raws, concurrency))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/loadgen.py URL --bodies FILE``: one load run, JSON on stdout."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="closed-loop POST load on 127.0.0.1")
    parser.add_argument("url")
    parser.add_argument("--bodies", required=True, help="file with one JSON body per line")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tool", default="auto", choices=["auto", "wrk", "python"])
    parser.add_argument(
        "--header", action="append", default=[], help="'Name: value', sent with every request"
    )
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost"):
        parser.error("load targets 127.0.0.1 only")
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines() if line]
    result = run_load(
        args.url,
        bodies,
        concurrency=args.concurrency,
        warmup=args.warmup,
        duration=args.seconds,
        tool=args.tool,
        headers=headers,
    )
    print(json.dumps({"tool": result.tool, "requests": result.requests, "errors": result.errors,
                      "seconds": result.seconds, "rps": result.rps}))  # fmt: skip
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
