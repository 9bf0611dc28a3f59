"""(b)'s floor: the gateway's own upstream requests, replayed hop by hop.

The critical path of ``customer(email:)`` is a chain of dependent hops (email
lookups -> phone/link lookups -> account, tickets, invoices -> account.parent;
one hop less without a parent account, one less again with
``identity.max_rounds: 1``). Its floor is what those upstream requests cost
with no gateway in between.

:func:`capture` runs the gateway app in this process (same code, same config
as the ``c360 serve`` being measured) once per customer, records every request
its connectors send to the sandbox (method, URL, headers incl. credentials,
body, connector operation, start and end time) and groups them into hops: a
request that starts before any request of the current hop has answered is
part of that hop; one that starts after is the first of the next hop (with
50 ms per sandbox call, the requests of one hop start within a few ms of
each other and the next hop 50+ ms later).

:func:`replay_latencies` sends those exact requests with the lean raw-socket
client of bench/loadgen.py, hop after hop, the requests of one hop in
parallel on pre-opened keep-alive connections, and times the whole chain:
the sandbox's latency, its processing of parallel requests, and nothing of
the gateway's. (The gateway starts ``account.parent`` as soon as the account
answers, not after the whole hop; replaying hop after hop overstates the
floor by the spread of one hop's answers, about a millisecond.)
"""

from __future__ import annotations

import asyncio
import contextvars
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from common import FULL_QUERY, GatewayOptions, in_process_settings
from loadgen import _Conn

_OPERATION: contextvars.ContextVar[str] = contextvars.ContextVar("c360_bench_op", default="?")


@dataclass
class Call:
    source: str
    operation: str
    start: float
    end: float
    raw: bytes  # the HTTP/1.1 request as sent


@dataclass
class HopPlan:
    """One customer's upstream requests, grouped into dependent hops."""

    email: str
    hops: list[list[Call]] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.hops)

    def shape(self) -> list[list[str]]:
        return [sorted(f"{c.source}.{c.operation}" for c in hop) for hop in self.hops]

    @property
    def calls(self) -> int:
        return sum(len(h) for h in self.hops)

    @property
    def width(self) -> int:
        return max((len(h) for h in self.hops), default=0)


def _raw(request: httpx.Request) -> bytes:
    target = request.url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1".encode()]
    lines += [k + b": " + v for k, v in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.content


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, source: str, log: list[Call]) -> None:
        self.inner = inner
        self.source = source
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        end = time.perf_counter()
        self.log.append(Call(self.source, _OPERATION.get(), start, end, _raw(request)))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def group_hops(calls: Sequence[Call]) -> list[list[Call]]:
    hops: list[list[Call]] = []
    for call in sorted(calls, key=lambda c: c.start):
        if hops and call.start < min(c.end for c in hops[-1]):
            hops[-1].append(call)
        else:
            hops.append([call])
    return hops


def capture(
    sandbox_url: str,
    options: GatewayOptions,
    emails: Sequence[str],
    headers: Mapping[str, str],
    warmup_email: str,
) -> dict[str, HopPlan]:
    """Each customer's hop plan, from the gateway app run in this process."""
    from connectors.sdk.http import VendorClient
    from gateway.app import create_app

    log: list[Call] = []
    original_send = VendorClient._send
    original_request_json = VendorClient.request_json

    async def recording_send(self: Any, request: httpx.Request) -> Any:
        if not isinstance(self._transport, _Recorder):
            self._transport = _Recorder(self._transport, self.source, log)
        return await original_send(self, request)

    async def request_json(self: Any, *args: Any, operation: str, **kwargs: Any) -> Any:
        token = _OPERATION.set(operation)
        try:
            return await original_request_json(self, *args, operation=operation, **kwargs)
        finally:
            _OPERATION.reset(token)

    plans: dict[str, HopPlan] = {}
    with tempfile.TemporaryDirectory(prefix="c360-capture-") as tmp:
        app = create_app(in_process_settings(sandbox_url, options, Path(tmp)))

        async def main() -> None:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                client = httpx.AsyncClient(
                    transport=transport, base_url="http://gw", headers=dict(headers), timeout=60
                )
                async with client:
                    for email in [warmup_email, *emails]:
                        log.clear()
                        resp = await client.post(
                            "/graphql", json={"query": FULL_QUERY, "variables": {"email": email}}
                        )
                        body = resp.json()
                        if resp.status_code != 200 or body.get("errors"):
                            raise RuntimeError(f"capture of {email}: {resp.text[:400]}")
                        if email != warmup_email:
                            plans[email] = HopPlan(email, group_hops(log))

        VendorClient._send = recording_send  # type: ignore[method-assign]
        VendorClient.request_json = request_json  # type: ignore[method-assign]
        try:
            asyncio.run(main())
        finally:
            VendorClient._send = original_send  # type: ignore[method-assign]
            VendorClient.request_json = original_request_json  # type: ignore[method-assign]
    return plans


async def _replay(sandbox_url: str, plans: Sequence[HopPlan], count: int) -> list[float]:
    parts = urlsplit(sandbox_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    width = max(p.width for p in plans)
    pool = [await _Conn.open(host, port) for _ in range(width)]
    out: list[float] = []
    try:
        for i in range(count):
            plan = plans[i % len(plans)]
            t0 = time.perf_counter()
            for hop in plan.hops:
                answers = await asyncio.gather(
                    *(conn.send(call.raw) for conn, call in zip(pool, hop, strict=False))
                )
                for (status, body), call in zip(answers, hop, strict=True):
                    if status != 200:
                        where = f"{call.source}.{call.operation}"
                        raise RuntimeError(f"replay of {where}: HTTP {status} {body[:200]!r}")
            out.append(time.perf_counter() - t0)
    finally:
        for conn in pool:
            await conn.close()
    return out


def replay_latencies(sandbox_url: str, plans: Sequence[HopPlan], count: int) -> list[float]:
    """Seconds per replayed chain, ``count`` chains rotating over ``plans``."""
    return asyncio.run(_replay(sandbox_url, plans, count))
