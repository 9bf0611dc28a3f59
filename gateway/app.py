"""The starlette app factory: routes, middleware, lifespan.

Routes::

    POST /graphql     the customer-360 schema (GraphiQL on GET only when enabled)
    GET  /healthz     liveness: {"status": "ok", "connectors": [...]}
    GET  /metrics     Prometheus text format
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.schema import BaseSchema

from gateway.cache import CacheLayer, cache_from_settings
from gateway.config import Settings
from gateway.context import Context, Loaders
from gateway.cursors import CursorCodec
from gateway.identity import CustomerIds, identity_settings_from_mapping
from gateway.registry import ConnectorSet
from gateway.resilience import Resilience, policies_from_settings
from gateway.telemetry import CONTENT_TYPE_LATEST, Telemetry, logger
from gateway.upstream import RequestScope, UpstreamCall, direct_call
from schema import build_schema

__all__ = ["GraphQLView", "create_app"]


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: BaseSchema, state: _State, *, graphiql: bool) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql else None,
            allow_queries_via_get=False,
        )
        self._state = state

    async def get_context(self, request: Any, response: Any) -> Context:
        state = self._state
        return Context(
            request=request,
            response=response,
            settings=state.settings,
            connectors=state.connectors,
            loaders=Loaders(state.connectors, state.pipeline, state.new_scope()),
            ids=state.ids,
            identity=state.identity,
            cursors=state.cursors,
        )


class _State:
    def __init__(self, settings: Settings, telemetry: Telemetry, redis_url: str | None) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.ids = CustomerIds(settings.id_key)
        self.identity = identity_settings_from_mapping(settings.raw.get("identity"))
        self.cursors = CursorCodec(settings.id_key)
        self._connectors: ConnectorSet | None = None
        self._pipeline: UpstreamCall | None = None
        self._cache: CacheLayer | None = None
        self._redis_url = redis_url

    def new_scope(self) -> RequestScope:
        loop = asyncio.get_running_loop()
        return RequestScope(deadline=loop.time() + self.settings.request_deadline)

    @property
    def pipeline(self) -> UpstreamCall:
        """Loaders ─▶ cache ─▶ resilience ─▶ connector; built inside the serving
        loop because semaphores, limiters and Redis connections bind to it."""
        if self._pipeline is None:
            resilience = Resilience(
                policies_from_settings(self.settings),
                direct_call,
                observer=self.telemetry.observe_resilience,
            )
            self._cache = cache_from_settings(
                self.settings,
                resilience,
                redis_url=self._redis_url,
                on_event=self.telemetry.observe_cache,
            )
            self._pipeline = self._cache
        return self._pipeline

    @property
    def cache(self) -> CacheLayer:
        _ = self.pipeline
        assert self._cache is not None
        return self._cache

    @property
    def connectors(self) -> ConnectorSet:
        if self._connectors is None:
            self._connectors = ConnectorSet.build(
                self.settings.connectors,
                transport=self.settings.transport,
                observer=self.telemetry.observe_upstream,
            )
        return self._connectors

    async def aclose(self) -> None:
        if self._cache is not None:
            await self._cache.aclose()
            self._cache = None
        if self._connectors is not None:
            await self._connectors.aclose()
            self._connectors = None
        self._pipeline = None


class _BodyLimit:
    """Refuse request bodies over the limit before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse(
                {
                    "errors": [
                        {
                            "message": "request body too large",
                            "extensions": {"code": "REQUEST_TOO_LARGE", "limit": self.max_bytes},
                        }
                    ]
                },
                status_code=413,
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            response = JSONResponse(
                {
                    "errors": [
                        {
                            "message": "request body too large",
                            "extensions": {"code": "REQUEST_TOO_LARGE"},
                        }
                    ]
                },
                status_code=413,
            )
            await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(
    settings: Settings, *, schema: BaseSchema | None = None, redis_url: str | None = None
) -> Starlette:
    """The gateway app; ``redis_url`` overrides the config's ``cache.redis_url``."""
    telemetry = Telemetry()
    state = _State(settings, telemetry, redis_url)
    if settings.id_key_is_ephemeral:
        logger.warning("C360_ID_KEY is not set: customer ids will change when the gateway restarts")
    view = GraphQLView(schema or build_schema(), state, graphiql=settings.graphiql)

    async def graphql(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await view.run(request)
        except HTTPException as exc:
            response = JSONResponse(
                {"errors": [{"message": exc.reason, "extensions": {"code": "BAD_REQUEST"}}]},
                status_code=exc.status_code,
            )
        telemetry.graphql_latency.observe(time.perf_counter() - started)
        telemetry.graphql_requests.labels("ok" if response.status_code == 200 else "error").inc()
        return response

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "connectors": state.connectors.names})

    async def metrics(_: Request) -> Response:
        return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.connectors  # noqa: B018  # build now: fail fast on bad connector config
        state.pipeline  # noqa: B018
        try:
            yield
        finally:
            await state.aclose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.c360 = state
    return app
