"""The starlette app factory: routes, middleware, lifespan.

Routes::

    POST /graphql                              the customer-360 schema (bearer token required)
    GET  /graphql                              GraphiQL, only when enabled (the demo)
    GET  /graphiql/{name}                      its files, from the package (gateway/ide.py)
    GET  /healthz                              liveness: {"status": "ok", "connectors": [...]}
    GET  /readyz                               readiness: 503 while the audit trail cannot
                                               take events (PII would be withheld)
    GET  /metrics                              Prometheus text format
    GET  /.well-known/oauth-protected-resource RFC 9728: which issuer signs our tokens
    POST /webhooks/{connector}[/{secret}]      vendor webhooks: verify, evict, broadcast
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.schema import BaseSchema

from gateway._graphql_http import GRAPHQL_RESPONSE, JSON, GraphQLOverHTTP, is_json_body, negotiate
from gateway._limits import BodyLimit
from gateway._proxies import TrustedProxies, proxy_settings
from gateway._ratelimit import rate_limit_from_mapping
from gateway.auth import AuthSettings, principal_or_response, resource_metadata
from gateway.config import Settings
from gateway.context import Context, Loaders
from gateway.ide import GraphiQLPage
from gateway.runtime import DEV_PRINCIPAL, Runtime, auth_from_settings
from gateway.telemetry import CONTENT_TYPE_LATEST, Telemetry, logger
from gateway.webhooks import Invalidator, webhook_routes, webhook_settings
from schema import build_schema
from schema.extensions import limits_from_mapping

__all__ = ["GraphQLView", "create_app"]

_UNSET: Any = object()


class GraphQLView(GraphQLOverHTTP):
    def __init__(self, schema: BaseSchema, runtime: Runtime, *, graphiql: bool) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql else None,
            allow_queries_via_get=False,
        )
        self._runtime = runtime
        #: GraphiQL's page and files (``None`` when GraphiQL is off); create_app
        #: serves its routes.
        self.ide = GraphiQLPage() if graphiql else None

    async def render_graphql_ide(self, request: Request) -> Response:
        # strawberry's own page loads React and GraphiQL from a CDN, so it never
        # loads offline: serve the package's page, under its CSP, instead.
        if self.ide is None:  # strawberry asks only when graphql_ide is set
            return Response(status_code=404)
        return self.ide.page()

    async def get_context(self, request: Any, response: Any) -> Context:
        rt = self._runtime
        context = Context(
            request=request,
            response=response,
            settings=rt.settings,
            connectors=rt.connectors,
            loaders=Loaders(
                rt.connectors,
                rt.pipeline,
                rt.new_scope(request_id=getattr(request.state, "request_id", None)),
                fresh=rt.cache.fresh,
            ),
            ids=rt.ids,
            identity=rt.identity,
            cursors=rt.cursors,
            principal=getattr(request.state, "principal", None),
            request_id=getattr(request.state, "request_id", None),
            policy=rt.policy,
            audit=rt.audit,
        )
        request.state.c360_context = context
        return context


def _request_id(request: Request) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one."""
    given = request.headers.get("x-request-id", "")
    if 8 <= len(given) <= 64 and all(c.isalnum() or c in "-_." for c in given):
        return given
    return uuid.uuid4().hex


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


def create_app(
    settings: Settings,
    *,
    schema: BaseSchema | None = None,
    redis_url: str | None = None,
    auth: AuthSettings | None = _UNSET,
    hardened: bool = True,
) -> Starlette:
    """The gateway app.

    ``redis_url`` overrides the config's ``cache.redis_url``; ``auth`` overrides
    the config's ``auth:`` section (``None`` only where the config allows it);
    ``hardened=False`` (``c360 demo`` only) allows introspection and GraphiQL.
    """
    telemetry = Telemetry()
    runtime = Runtime(
        settings,
        telemetry,
        redis_url=redis_url,
        auth=auth_from_settings(settings) if auth is _UNSET else auth,
    )
    if settings.id_key_is_ephemeral:
        logger.warning("C360_ID_KEY is not set: customer ids will change when the gateway restarts")
    if runtime.auth is None:
        logger.warning(
            "gateway.insecure_no_auth: every request is an admin; never do this in production"
        )
    hooks = webhook_settings(settings, redis_url=redis_url)
    invalidator = Invalidator(
        lambda: runtime.cache, redis_url=hooks.redis_url, channel=hooks.channel
    )
    limiter = rate_limit_from_mapping((settings.raw.get("gateway") or {}).get("rate_limit"))
    if schema is None:
        schema = build_schema(limits_from_mapping(settings.raw.get("graphql")), hardened=hardened)
    view = GraphQLView(schema, runtime, graphiql=settings.graphiql and not hardened)

    async def graphql(request: Request) -> Response:
        started = time.perf_counter()
        request.state.request_id = _request_id(request)
        if request.method == "POST":
            refused = await _admit(request)
            if refused is not None:
                refused.headers["x-request-id"] = request.state.request_id
                return refused
        try:
            response = await view.run(request)
        except HTTPException as exc:
            response = JSONResponse(
                {"errors": [{"message": exc.reason, "extensions": {"code": "BAD_REQUEST"}}]},
                status_code=exc.status_code,
            )
        telemetry.graphql_latency.observe(time.perf_counter() - started)
        telemetry.graphql_requests.labels("ok" if response.status_code == 200 else "error").inc()
        response.headers["x-request-id"] = request.state.request_id
        return response

    async def _admit(request: Request) -> Response | None:
        """CSRF-safe content type, an answer the client accepts, a valid token,
        and the principal's rate limit."""
        if not is_json_body(request.headers.get("content-type", "")):
            telemetry.graphql_requests.labels("refused").inc()
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", f"POST a UTF-8 JSON body ({JSON})")
        if negotiate(request.headers.get("accept", "")) is None:
            telemetry.graphql_requests.labels("refused").inc()
            return _error(406, "NOT_ACCEPTABLE", f"accept {GRAPHQL_RESPONSE} or {JSON}")
        authenticator = runtime.authenticator
        if authenticator is None:
            request.state.principal = DEV_PRINCIPAL
        else:
            outcome = await principal_or_response(authenticator, request)
            if isinstance(outcome, Response):
                telemetry.graphql_requests.labels("unauthenticated").inc()
                return outcome
            request.state.principal = outcome
        if limiter is not None:
            allowed, wait = limiter.allow(request.state.principal.subject)
            if not allowed:
                telemetry.graphql_requests.labels("rate_limited").inc()
                response = _error(429, "RATE_LIMITED", "too many requests for this principal")
                response.headers["retry-after"] = str(max(1, math.ceil(wait)))
                return response
        return None

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "connectors": runtime.connectors.names})

    async def readyz(_: Request) -> Response:
        # Liveness stays green (a restart does not fix a full disk); readiness
        # takes the replica out of rotation while it cannot serve PII.
        reason = await runtime.audit.probe()
        if reason is not None:
            return JSONResponse({"status": "unavailable", "audit": reason}, status_code=503)
        return JSONResponse({"status": "ready", "audit": "ok"})

    async def metrics(_: Request) -> Response:
        return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)

    async def protected_resource(request: Request) -> Response:
        if runtime.auth is None:
            return JSONResponse({"error": "no authorization server configured"}, status_code=404)
        return JSONResponse(resource_metadata(runtime.auth, str(request.base_url).rstrip("/")))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        runtime.start()
        await invalidator.start()
        try:
            yield
        finally:
            await invalidator.aclose()
            await runtime.aclose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *(view.ide.routes() if view.ide is not None else ()),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/.well-known/oauth-protected-resource", protected_resource, methods=["GET"]),
            # Vendors sign their webhooks (or hold a URL secret): no bearer token here.
            *webhook_routes(invalidator, settings.connectors, max_body_bytes=hooks.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outermost, so everything sees the client a trusted proxy named, or the peer.
    app.add_middleware(TrustedProxies, settings=proxy_settings(settings.raw.get("gateway")))
    app.state.c360 = runtime
    return app
