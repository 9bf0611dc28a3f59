"""What every vendor sandbox shares: the world, request stats, latency, control routes.

A vendor sandbox (``connectors/<vendor>/sandbox.py``) exposes
``create_app(state: SandboxState) -> Starlette`` built with :func:`vendor_app`
and :func:`vendor_route`. Every vendor route is counted per
``"<vendor> <METHOD> <path template>"`` and delayed by ``latency_ms``. The
control routes (not delayed, not counted) are::

    GET  /_sandbox/stats            {"total", "by_vendor", "routes"}
    POST /_sandbox/reset-stats      zero the counters
    GET  /_sandbox/customers        answer key: ?limit=N&offset=M

:func:`create_combined_app` serves several vendors on one port under
``/<vendor>`` prefixes, which is what ``c360 sandbox`` and ``c360 demo`` run.
The world itself is generated in :mod:`connectors.sdk.world`.
"""

from __future__ import annotations

import asyncio
import importlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from connectors.sdk.world import World

__all__ = [
    "SANDBOX_CREDENTIALS",
    "Endpoint",
    "SandboxState",
    "World",
    "control_routes",
    "create_combined_app",
    "load_vendor_app",
    "vendor_app",
    "vendor_route",
]

Endpoint = Callable[[Request], Awaitable[Response]]

#: The secrets each vendor sandbox accepts; ``c360 demo`` configures these.
SANDBOX_CREDENTIALS: dict[str, dict[str, str]] = {
    "salesforce": {"token": "sandbox-salesforce-token"},
    "zendesk": {"email": "agent@c360.example", "token": "sandbox-zendesk-token"},
    "stripe": {"token": "sk_test_c360sandbox"},
    "mailchimp": {"token": "sandboxkey-us1"},
}


class SandboxState:
    """One sandbox server's world, latency and per-route request counts."""

    def __init__(self, world: World, *, latency_ms: float = 0.0) -> None:
        self.world = world
        self.latency_ms = latency_ms
        self.stats: Counter[str] = Counter()

    def record(self, vendor: str, method: str, template: str) -> None:
        self.stats[f"{vendor} {method} {template}"] += 1

    def snapshot(self) -> dict[str, Any]:
        by_vendor: Counter[str] = Counter()
        for key, count in self.stats.items():
            by_vendor[key.split(" ", 1)[0]] += count
        return {
            "total": sum(self.stats.values()),
            "by_vendor": dict(sorted(by_vendor.items())),
            "routes": dict(sorted(self.stats.items())),
        }


def vendor_route(
    state: SandboxState,
    vendor: str,
    path: str,
    endpoint: Endpoint,
    methods: Sequence[str] = ("GET",),
) -> Route:
    """A counted, delayed route; ``path`` is a starlette template."""

    async def handle(request: Request) -> Response:
        state.record(vendor, request.method, path)
        if state.latency_ms > 0:
            await asyncio.sleep(state.latency_ms / 1000)
        return await endpoint(request)

    return Route(path, handle, methods=list(methods))


def _int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return max(low, min(high, value))


def control_routes(state: SandboxState) -> list[BaseRoute]:
    async def stats(_: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def reset(_: Request) -> Response:
        state.stats.clear()
        return JSONResponse(state.snapshot())

    async def customers(request: Request) -> Response:
        world = state.world
        limit = _int_param(request, "limit", 100, low=1, high=10_000)
        offset = _int_param(request, "offset", 0, low=0, high=len(world.people))
        page = world.people[offset : offset + limit]
        return JSONResponse(
            {
                "total": len(world.people),
                "seed": world.seed,
                "offset": offset,
                "limit": limit,
                "customers": [world.answer_key(p) for p in page],
            }
        )

    return [
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/reset-stats", reset, methods=["POST"]),
        Route("/_sandbox/customers", customers, methods=["GET"]),
    ]


def vendor_app(
    state: SandboxState,
    routes: Iterable[BaseRoute],
    *,
    not_found: Endpoint | None = None,
) -> Starlette:
    """A vendor sandbox app: its routes, the control routes, a vendor-shaped 404."""
    app = Starlette(routes=[*control_routes(state), *routes])
    # Vendors accept "/query" and "/query/" alike; starlette's slash redirect
    # would turn one of them into a 307 that API clients do not follow.
    app.router.redirect_slashes = False
    if not_found is not None:

        async def handle_404(request: Request, _: Exception) -> Response:
            return await not_found(request)

        app.add_exception_handler(404, handle_404)
    return app


def load_vendor_app(vendor: str, state: SandboxState) -> Starlette:
    """Import ``connectors.<vendor>.sandbox`` and build its app."""
    module = importlib.import_module(f"connectors.{vendor}.sandbox")
    app: Starlette = module.create_app(state)
    return app


def create_combined_app(state: SandboxState, vendors: Sequence[str]) -> Starlette:
    """All ``vendors`` on one server, each under ``/<vendor>``."""
    mounts: list[BaseRoute] = [Mount(f"/{v}", app=load_vendor_app(v, state)) for v in vendors]
    app = Starlette(routes=[*control_routes(state), *mounts])
    app.router.redirect_slashes = False
    return app
