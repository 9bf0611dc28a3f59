"""What every vendor sandbox shares: the world, request stats, latency, control routes.

A vendor sandbox (``connectors/<vendor>/sandbox.py``) exposes
``create_app(state: SandboxState) -> Starlette`` built with :func:`vendor_app`
and :func:`vendor_route`. Every vendor route is counted per
``"<vendor> <METHOD> <path template>"`` and delayed by ``latency_ms``, then
answered through the fault knobs (see :mod:`connectors.sdk._faults`): an
error status in the vendor's own error body (the ``error_response`` hook of
:func:`vendor_app`), 429 + ``Retry-After``, added latency, a hang, a body that
is not JSON, or a connection dropped mid-answer. The control routes (not
delayed, not counted, never faulted) are::

    GET  /_sandbox/stats            {"total", "by_vendor", "routes"}
    POST /_sandbox/reset-stats      zero the counters
    GET  /_sandbox/customers        answer key: ?limit=N&offset=M
    GET  /_sandbox/faults           the faults in force, as POST takes them
    POST /_sandbox/faults           replace every fault; {} clears; 400 if invalid
    POST /_sandbox/mutate           change a record, deliver its signed webhook
    POST /_sandbox/webhooks         where each vendor's webhooks go (see _mutations)

:func:`create_combined_app` serves several vendors on one port under
``/<vendor>`` prefixes, which is what ``c360 sandbox`` and ``c360 demo`` run.
The world itself is generated in :mod:`connectors.sdk.world`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from connectors.sdk._faults import (
    ERROR_RESPONSE_ATTR,
    ErrorResponse,
    Faults,
    FaultSpec,
    FaultTable,
    HoldEnd,
    answer,
    hold,
    parse_faults,
)
from connectors.sdk._mutations import Mutations, mutation_routes
from connectors.sdk.errors import ConfigurationError
from connectors.sdk.world import World

__all__ = [
    "SANDBOX_CREDENTIALS",
    "Endpoint",
    "ErrorResponse",
    "FaultSpec",
    "Faults",
    "SandboxState",
    "World",
    "control_routes",
    "create_combined_app",
    "load_vendor_app",
    "parse_faults",
    "vendor_app",
    "vendor_route",
]

Endpoint = Callable[[Request], Awaitable[Response]]

#: The secrets each vendor sandbox accepts; ``c360 demo`` configures these.
SANDBOX_CREDENTIALS: dict[str, dict[str, str]] = {
    "salesforce": {
        "token": "sandbox-salesforce-token",
        # The connected app's client credentials: POST /services/oauth2/token.
        "client_id": "3MVG9c360sandboxConsumerKey",
        "client_secret": "sandbox-salesforce-consumer-secret",
    },
    "zendesk": {"email": "agent@c360.example", "token": "sandbox-zendesk-token"},
    "stripe": {"token": "sk_test_c360sandbox"},
    "mailchimp": {"token": "sandboxkey-us1"},
}


class SandboxState:
    """One sandbox server's world, latency, faults and per-route request counts.

    ``faults`` takes the JSON ``POST /_sandbox/faults`` takes, or what
    :func:`parse_faults` returned. ``vendors`` fills in as vendor routes are
    built; ``hanging`` counts requests a ``hang`` fault is holding.
    """

    def __init__(
        self,
        world: World,
        *,
        latency_ms: float = 0.0,
        faults: Faults | Mapping[str, Any] | None = None,
        webhooks: Mapping[str, Any] | None = None,
    ) -> None:
        self.world = world
        # Vendor apps register their mutators here; webhooks: {vendor: {url, secret}}.
        self.mutations = Mutations(webhooks)
        self.latency_ms = latency_ms
        self.stats: Counter[str] = Counter()
        self.vendors: set[str] = set()
        self.hanging = 0
        self._table = FaultTable(world.seed, Faults())
        self._generation = 0
        self._stopping = False
        if faults is not None:
            self.set_faults(faults)

    @property
    def faults(self) -> Faults:
        return self._table.faults

    def set_faults(self, faults: Faults | Mapping[str, Any]) -> None:
        """Replace every fault (``{}`` clears) and restart their seeded coins.

        Requests held by a ``hang`` fault are let through to the vendor route.
        """
        parsed = faults if isinstance(faults, Faults) else parse_faults(faults)
        self._table = FaultTable(self.world.seed, parsed)
        self._generation += 1

    def shutdown(self) -> None:
        """Drop every held request's connection and hang no more: call before
        stopping the server, which otherwise waits for held requests."""
        self._stopping = True

    def pick_fault(self, vendor: str, template: str, path: str) -> FaultSpec | None:
        return self._table.pick(vendor, template, path)

    async def hold(self, request: Request) -> HoldEnd:
        """Keep ``request`` unanswered; why the wait ended."""
        # Read the body now: if the faults change, the route still needs it.
        await request.body()
        generation = self._generation

        def release() -> HoldEnd | None:
            if self._stopping:
                return HoldEnd.STOPPED
            return HoldEnd.RELEASED if self._generation != generation else None

        self.hanging += 1
        try:
            return await hold(request.receive, release)
        finally:
            self.hanging -= 1

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
    """A counted, delayed, faultable route; ``path`` is a starlette template."""
    state.vendors.add(vendor)

    async def handle(request: Request) -> Response:
        state.record(vendor, request.method, path)
        if state.latency_ms > 0:
            await asyncio.sleep(state.latency_ms / 1000)
        fault = state.pick_fault(vendor, path, _path_in_app(request))
        if fault is None:
            return await endpoint(request)
        return await answer(fault, request, endpoint, hold_request=state.hold)

    return Route(path, handle, methods=list(methods))


def _path_in_app(request: Request) -> str:
    """The path under the vendor's mount (``/v1/customers``, not ``/stripe/v1/…``)."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


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

    async def faults(_: Request) -> Response:
        return JSONResponse(state.faults.to_json())

    async def set_faults(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _invalid_faults("the body must be a JSON object keyed by vendor")
        try:
            parsed = parse_faults(body, vendors=state.vendors or None)
        except ConfigurationError as exc:
            return _invalid_faults(str(exc))
        state.set_faults(parsed)
        return JSONResponse(state.faults.to_json())

    return [
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/reset-stats", reset, methods=["POST"]),
        Route("/_sandbox/customers", customers, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        *mutation_routes(state.mutations),
    ]


def _invalid_faults(message: str) -> Response:
    return JSONResponse({"error": "invalid_faults", "message": message}, status_code=400)


def vendor_app(
    state: SandboxState,
    routes: Iterable[BaseRoute],
    *,
    not_found: Endpoint | None = None,
    error_response: ErrorResponse | None = None,
) -> Starlette:
    """A vendor sandbox app: its routes, the control routes, a vendor-shaped 404.

    ``error_response`` builds the vendor's error answer for a status; the
    ``status`` and ``retry_after`` faults answer with it.
    """
    app = Starlette(routes=[*control_routes(state), *routes])
    if error_response is not None:
        setattr(app.state, ERROR_RESPONSE_ATTR, error_response)
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
