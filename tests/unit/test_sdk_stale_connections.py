"""A pooled connection the server had closed: VendorClient sends the read again, once.

Against a real HTTP/1.1 server on 127.0.0.1 (asyncio streams), over both
transports: the server answers the first request of each connection with
keep-alive and drops the connection when another request arrives on it, which
is what a client sees when it reuses a pooled connection the server closed
(its idle timeout, a restart) just before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from connectors.sdk import UpstreamTimeout, UpstreamUnavailable, VendorClient
from connectors.sdk.http import make_transport
from gateway.telemetry import Telemetry

TRANSPORTS = ["aiohttp", "httpcore"]
BODY = b'{"ok": true}'


class DroppingServer:
    """``answers`` requests per connection are answered; the next one is dropped
    (closed, or reset with ``reset``) without a word. The first ``pool``
    requests are held until that many connections are open, so a client ends
    up with that many pooled connections."""

    def __init__(self, *, answers: int = 1, pool: int = 1, reset: bool = False) -> None:
        self.answers = answers
        self.pool = pool
        self.reset = reset
        self.connections = 0
        self.requests = 0
        self.mode = "answer"  # or "hang", "cut_body"
        self._pooled = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[None]] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append(task)
        if self.connections >= self.pool:
            self._pooled.set()
        served = 0
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                if served >= self.answers:
                    self._drop(writer)
                    return
                await self._pooled.wait()
                if self.mode == "hang":
                    await asyncio.Event().wait()
                if self.mode == "cut_body":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + BODY)
                    await writer.drain()
                    self._drop(writer)
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
                )
                await writer.drain()
                served += 1
        finally:
            writer.close()

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        if self.reset:
            sock = writer.get_extra_info("socket")
            # SO_LINGER 0: close sends RST, as a server that discarded the socket does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def aclose(self) -> None:
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in self._writers:
            writer.close()


@contextlib.asynccontextmanager
async def serving(server: DroppingServer) -> AsyncIterator[DroppingServer]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await server.aclose()
        listener.close()
        await listener.wait_closed()


def client(url: str, transport: str, telemetry: Telemetry, timeout: float = 5.0) -> VendorClient:
    return VendorClient(
        source="acme",
        base_url=url,
        transport=make_transport(transport),  # type: ignore[arg-type]
        observer=telemetry.observe_upstream,
        timeout=timeout,
    )


def outcomes(telemetry: Telemetry) -> dict[str, int]:
    return {k[2]: v for k, v in telemetry.upstream_requests.counts.items()}


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_read_on_pooled_connections_the_server_closed_is_answered(transport, reset):
    telemetry = Telemetry()
    async with serving(DroppingServer(pool=2, reset=reset)) as server:
        vendor = client(server.url, transport, telemetry)
        try:
            # Two reads at once leave two pooled connections, both dropped by now
            # as far as the server is concerned.
            first = await asyncio.gather(*(vendor.get_json("/x", operation="op") for _ in "ab"))
            assert first == [{"ok": True}] * 2
            assert server.connections == 2
            assert await vendor.get_json("/x", operation="op") == {"ok": True}
        finally:
            await vendor.aclose()
    assert outcomes(telemetry) == {"ok": 3, "stale_connection": 1}
    assert b'outcome="stale_connection"} 1.0' in telemetry.render()
    # The read that was sent again went over a connection of its own.
    assert server.connections == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_server_that_drops_every_request_fails_after_one_more_try(transport):
    telemetry = Telemetry()
    async with serving(DroppingServer(answers=0)) as server:
        vendor = client(server.url, transport, telemetry)
        try:
            with pytest.raises(UpstreamUnavailable) as caught:
                await vendor.get_json("/x", operation="op")
        finally:
            await vendor.aclose()
    assert caught.value.source == "acme" and caught.value.retryable
    assert outcomes(telemetry) == {"stale_connection": 1, "unavailable": 1}
    # Ours sends it twice; aiohttp itself tries each of those twice.
    assert server.requests == (4 if transport == "aiohttp" else 2)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_timeout_is_not_sent_again(transport):
    telemetry = Telemetry()
    async with serving(DroppingServer()) as server:
        server.mode = "hang"
        vendor = client(server.url, transport, telemetry, timeout=0.1)
        try:
            with pytest.raises(UpstreamTimeout):
                await vendor.get_json("/x", operation="op")
        finally:
            await vendor.aclose()
    assert server.requests == 1
    assert outcomes(telemetry) == {"timeout": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_answer_cut_short_is_not_sent_again(transport):
    telemetry = Telemetry()
    async with serving(DroppingServer()) as server:
        server.mode = "cut_body"
        vendor = client(server.url, transport, telemetry)
        try:
            with pytest.raises(UpstreamUnavailable):
                await vendor.get_json("/x", operation="op")
        finally:
            await vendor.aclose()
    # The server had begun to answer: not a connection it had closed before.
    assert server.requests == 1
    assert outcomes(telemetry) == {"unavailable": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_connection_is_not_sent_again_and_says_so(transport):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    telemetry = Telemetry()
    vendor = client(f"http://127.0.0.1:{port}", transport, telemetry)
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await vendor.get_json("/x", operation="op")
    finally:
        await vendor.aclose()
    assert str(caught.value) == "acme could not be reached"
    assert outcomes(telemetry) == {"unavailable": 1}
