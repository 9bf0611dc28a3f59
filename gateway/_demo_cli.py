"""``c360 demo``: the vendor sandboxes, a development token issuer and the
gateway, in one process.

Every port is bound before anything starts: a port the user named that cannot
be bound is one line on stderr and exit 2, naming the port and its flag; a
port left out is the conventional one when it is free, else any free port.
The banner (URLs, tokens, an example) is printed only once all three servers
listen. One Ctrl-C stops all three.

Errors::

    Exception
    └── PortUnavailable   a port the user named cannot be bound (exit 2)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from connectors.sdk.sandbox import SandboxState
from gateway.config import ConfigError, Settings
from gateway.demo import DEMO_AUDIT_KEY_TEXT, SANDBOX_VENDORS, example_customer, sandbox_settings

__all__ = ["EXAMPLE_QUERY", "PortUnavailable", "run_demo"]

#: The conventional ports, used when free and the user named none.
DEFAULT_PORT = 8000
DEFAULT_SANDBOX_PORT = 8700

EXAMPLE_QUERY = """query Customer360($email: String!) {
  customer(email: $email) {
    id name email phone
    sources { system id url updatedAt }
    account { id name industry parent { id name } }
    tickets { id subject status priority createdAt updatedAt }
    subscriptions { id status plan amount currency interval currentPeriodEnd }
    invoices { id status amountDue amountPaid currency createdAt }
    marketing { status lists { id name status } consents { channel status updatedAt } }
  }
}"""


class PortUnavailable(Exception):
    """A port the user named cannot be bound; the message says which and why."""


@dataclass(frozen=True, slots=True)
class _Port:
    flag: str
    requested: int | None  # what the user named; None: not set
    preferred: int  # tried first when not set


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a port left in TIME_WAIT by the last demo is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError):
        sock.close()
        raise
    return sock


def bind_ports(host: str, ports: list[_Port]) -> list[socket.socket]:
    """One bound socket per port, in order; closes them all if one fails.
    Ports the user named are bound first, so a fallback never takes one."""
    bound: dict[int, socket.socket] = {}
    order = sorted(range(len(ports)), key=lambda i: ports[i].requested is None)
    try:
        for i in order:
            bound[i] = _bind_one(host, ports[i])
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return [bound[i] for i in range(len(ports))]


def _bind_one(host: str, want: _Port) -> socket.socket:
    if want.requested is not None:
        try:
            return _bind(host, want.requested)
        except OSError as exc:
            reason = (
                "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            )
            raise PortUnavailable(
                f"port {want.requested} {reason} ({want.flag} {want.requested}); "
                f"name another, or leave {want.flag} out to use a free one"
            ) from exc
    try:
        return _bind(host, want.preferred)
    except (OSError, OverflowError):  # taken, or past 65535 (the sandbox port + 1)
        try:
            return _bind(host, 0)
        except OSError as exc:
            raise PortUnavailable(f"cannot listen on {host} ({want.flag}): {exc.strerror}") from exc


class _Server(uvicorn.Server):
    """One of the demo's servers. Signals are the demo's to handle, so that
    one Ctrl-C stops every server (uvicorn's own handler would stop only the
    server that installed it last)."""

    def __init__(self, app: Starlette, sock: socket.socket, on_stop: Callable[[], None]) -> None:
        # No proxy in front of a demo: a local client's X-Forwarded-For is not trusted.
        super().__init__(
            uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False)
        )
        self.sock = sock
        self.listening = asyncio.Event()
        self._on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()

    async def shutdown(self, sockets: Any = None) -> None:
        self._on_stop()
        await super().shutdown(sockets)


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_demo(args: argparse.Namespace, sandbox_app: Starlette, state: SandboxState) -> int:
    from gateway.app import create_app
    from gateway.auth import BUILTIN_ROLES, AuthSettings
    from gateway.issuer import DevIssuer

    sandbox_preferred = args.sandbox_port or DEFAULT_SANDBOX_PORT
    try:
        gateway_sock, sandbox_sock, issuer_sock = bind_ports(
            args.host,
            [
                _Port("--port", args.port, DEFAULT_PORT),
                _Port("--sandbox-port", args.sandbox_port, sandbox_preferred),
                _Port("--issuer-port", args.issuer_port, sandbox_preferred + 1),
            ],
        )
    except PortUnavailable as exc:
        print(f"c360 demo: {exc}", file=sys.stderr)
        return 2
    gateway_url, sandbox_url = _url(args.host, gateway_sock), _url(args.host, sandbox_sock)
    issuer_url = _url(args.host, issuer_sock)
    issuer = DevIssuer(issuer_url)
    # The sandbox's /_sandbox/mutate delivers signed webhooks to this gateway,
    # so live invalidation can be tried end to end.
    secrets_by_vendor = {v: secrets.token_urlsafe(24) for v in SANDBOX_VENDORS}
    for vendor, secret in secrets_by_vendor.items():
        os.environ[f"C360_DEMO_WEBHOOK_SECRET_{vendor.upper()}"] = secret
    state.mutations.set_webhooks(
        {
            vendor: {
                "url": f"{gateway_url}/webhooks/{vendor}"
                + (f"/{secret}" if vendor == "mailchimp" else ""),
                "secret": secret,
            }
            for vendor, secret in secrets_by_vendor.items()
        }
    )
    settings = sandbox_settings(
        sandbox_url,
        webhook_secrets={v: f"env:C360_DEMO_WEBHOOK_SECRET_{v.upper()}" for v in SANDBOX_VENDORS},
    )
    try:
        gateway_app = create_app(
            settings,
            redis_url=args.redis_url,
            auth=AuthSettings(issuer=issuer_url, audience=("c360",)),
            hardened=args.hardened,
        )
    except ConfigError:  # the demo's settings are fixed: only --redis-url can be wrong
        print(
            "c360 demo: --redis-url is not a usable Redis URL (redis://, rediss://, "
            "redis+sentinel:// or redis+cluster://)",
            file=sys.stderr,
        )
        for sock in (gateway_sock, sandbox_sock, issuer_sock):
            sock.close()
        return 2
    tokens = {
        role: issuer.mint_token(role, mfa=role in ("billing_admin", "admin"), ttl=12 * 3600)
        for role in BUILTIN_ROLES
    }
    servers = [
        _Server(gateway_app, gateway_sock, lambda: None),
        _Server(sandbox_app, sandbox_sock, state.shutdown),
        _Server(issuer.app, issuer_sock, lambda: None),
    ]
    banner = _banner(args, gateway_url, sandbox_url, issuer_url, settings, tokens, state)
    try:
        return asyncio.run(_serve(servers, banner))
    except SystemExit:
        # uvicorn exits this way when an app's startup fails; it logged why.
        print("c360 demo: a server failed to start; see above", file=sys.stderr)
        return 1


async def _serve(servers: list[_Server], banner: str) -> int:
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(s.serve(sockets=[s.sock])) for s in servers]

    def stop() -> None:
        for server in servers:
            server.force_exit = server.should_exit  # a second Ctrl-C: do not wait
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    listening: asyncio.Future[list[bool]] = asyncio.ensure_future(
        asyncio.gather(*(s.listening.wait() for s in servers))
    )
    either: list[asyncio.Future[Any]] = [listening, *tasks]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    started = listening.done()
    if started:
        print(banner, flush=True)
    else:
        listening.cancel()
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    for server in servers:
        server.sock.close()
    if not started or any(isinstance(r, BaseException) for r in results):
        print("c360 demo: a server failed to start or stopped; see above", file=sys.stderr)
        return 1
    return 0


def _banner(
    args: argparse.Namespace,
    url: str,
    sandbox_url: str,
    issuer_url: str,
    settings: Settings,
    tokens: dict[str, str],
    state: SandboxState,
) -> str:
    example = example_customer(state.world)
    graphql = f"{url}/graphql"
    body = {"query": EXAMPLE_QUERY.replace("\n", " "), "variables": {"email": example.email}}
    mode = "hardened (no GraphiQL, no introspection)" if args.hardened else "GraphiQL on"
    return (
        f"c360 demo, {mode}\n"
        f"  GraphQL:   {graphql}\n"
        f"  sandbox:   {sandbox_url}  (stats: {sandbox_url}/_sandbox/stats, "
        f"answer key: {sandbox_url}/_sandbox/customers)\n"
        f"  issuer:    {issuer_url}  (c360 token --role R --issuer {issuer_url})\n"
        f"  metrics:   {url}/metrics\n"
        f"  audit:     {settings.raw['audit']['path']}\n"
        f"  keys:      fixed, public development keys sign customer ids, cursors and the\n"
        f"             audit trail (C360_AUDIT_KEY={DEMO_AUDIT_KEY_TEXT} verifies it);\n"
        f"             never use them outside the demo: `c360 serve` requires your own\n\n"
        f"Tokens (send as 'Authorization: Bearer <token>'; in GraphiQL, the Headers tab):\n"
        + "".join(f"  {role}: {token}\n" for role, token in tokens.items())
        + f"\nExample: a customer in all four systems ({example.email}):\n\n"
        f"{EXAMPLE_QUERY}\n\nvariables: {json.dumps({'email': example.email})}\n\n"
        f"curl -s {graphql} -H 'content-type: application/json' "
        f"-H 'authorization: Bearer {tokens['admin']}' -d '{json.dumps(body)}'\n"
    )
