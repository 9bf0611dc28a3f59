"""The audit trail's append cost: events/s and fsyncs per event under concurrency.

Each row runs C concurrent "requests", each recording events one after
another (as a request awaits its audit event before its response), until
``--events`` are stored, into a fresh trail:

* ``file``  -- :class:`gateway.audit.JsonlSink` in a temporary directory (on
  the disk ``--dir`` names; fsync cost depends on it). Counted: ``os.fsync``
  calls (the batch, the checkpoint's temporary file, the checkpoint's
  directory) and appends (batches).
* ``redis`` -- :class:`gateway.audit.RedisStreamSink` against a redis-server
  this script starts (skipped without ``redis-server``); no fsync is counted
  (Redis's own persistence decides).

Concurrent records share one append, so fsyncs per event fall as concurrency
rises. Latency is one ``record`` call's wall time. Standalone::

    python bench/audit_bench.py [--events 5000] [--concurrency 1,10,100,1000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.audit import AuditKey, AuditSink, AuditTrail, JsonlSink, RedisStreamSink

KEY = AuditKey(b"c360 audit bench key, not secret")
FIELDS = {"Customer.email": "full", "Customer.phone": "masked", "Customer.name": "full"}


class Counting:
    """Counts appends (batches) of the sink it wraps."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self.appends = 0

    async def append(self, drafts: Any) -> Any:
        self.appends += 1
        return await self.sink.append(drafts)

    async def probe(self, *, write: bool = False) -> str | None:
        return await self.sink.probe(write=write)

    async def aclose(self) -> None:
        await self.sink.aclose()


class FsyncCounter:
    def __init__(self) -> None:
        self.calls = 0
        self._real: Callable[[int], None] = os.fsync

    def __enter__(self) -> FsyncCounter:
        def counting(fd: int) -> None:
            self.calls += 1
            self._real(fd)

        os.fsync = counting
        return self

    def __exit__(self, *_: object) -> None:
        os.fsync = self._real


async def run(sink: AuditSink, events: int, concurrency: int) -> dict[str, Any]:
    counted = Counting(sink)
    trail = AuditTrail(counted)
    per_worker = max(1, events // concurrency)
    latencies: list[float] = []

    async def worker(w: int) -> None:
        for i in range(per_worker):
            start = time.perf_counter()
            await trail.record(
                subject=f"agent-{w}", customer_id=f"c360_{w}_{i}", fields=FIELDS,
                client_id="bench", operation="Customer360", request_id=f"r{w}-{i}",
                source_ip="10.0.0.7",
            )  # fmt: skip
            latencies.append(time.perf_counter() - start)

    with FsyncCounter() as fsyncs:
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await trail.aclose()
    stored = per_worker * concurrency
    latencies.sort()
    return {
        "concurrency": concurrency,
        "events": stored,
        "events_per_s": stored / wall,
        "appends": counted.appends,
        "events_per_append": stored / counted.appends,
        "fsyncs_per_event": fsyncs.calls / stored,
        "cpu_us_per_event": cpu / stored * 1e6,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
    }


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    if shutil.which("redis-server") is None:
        return None
    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    proc = subprocess.Popen([*args, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", default="1,10,100,1000")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the file trail goes")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for level in levels:
            path = Path(tmp) / f"audit-{level}.jsonl"
            rows.append(("file", asyncio.run(run(JsonlSink(path, key=KEY), args.events, level))))
        redis_server = start_redis(Path(tmp))
        if redis_server is not None:
            proc, url = redis_server
            try:
                for level in levels:
                    sink = RedisStreamSink(url, f"bench:{level}", key=KEY)
                    rows.append(("redis", asyncio.run(run(sink, args.events, level))))
            finally:
                proc.kill()
                proc.wait()
    print("| sink | concurrency | events | events/s | events/append | fsyncs/event "
          "| CPU µs/event | p50 ms | p99 ms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sink_name, row in rows:
        fsyncs = f"{row['fsyncs_per_event']:.3f}" if sink_name == "file" else "–"
        print(
            f"| {sink_name} | {row['concurrency']} | {row['events']} | {row['events_per_s']:,.0f} "
            f"| {row['events_per_append']:.1f} | {fsyncs} | {row['cpu_us_per_event']:.0f} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
