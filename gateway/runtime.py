"""What one gateway process holds for its lifetime, built lazily inside the serving loop.

Connectors (and their HTTP pools), the upstream pipeline (cache ▸ resilience),
the authenticator and the audit trail bind to the event loop that serves
requests, so they are built on first use (the app's lifespan touches them at
startup to fail fast) and closed at shutdown.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.audit import AuditTrail, audit_from_settings
from gateway.auth import (
    ALL_SCOPES,
    Authenticator,
    AuthSettings,
    Principal,
    auth_settings_from_mapping,
)
from gateway.cache import CacheLayer, cache_from_settings
from gateway.config import ConfigError, Settings
from gateway.cursors import CursorCodec
from gateway.identity import CustomerIds, identity_settings_from_mapping
from gateway.policy import policy_from_mapping
from gateway.registry import ConnectorSet
from gateway.resilience import Resilience, policies_from_settings
from gateway.telemetry import Telemetry
from gateway.upstream import RequestScope, UpstreamCall, direct_call

__all__ = ["DEV_PRINCIPAL", "Runtime", "auth_from_settings"]

#: Who every request is when ``gateway.insecure_no_auth`` is set (local development only).
DEV_PRINCIPAL = Principal(
    subject="insecure-dev",
    roles=frozenset({"admin"}),
    scopes=frozenset(ALL_SCOPES),
    tenant=None,
    mfa=True,
    client_id=None,
    claims={},
)


def auth_from_settings(settings: Settings) -> AuthSettings | None:
    """The ``auth:`` section; ``None`` only with an explicit ``insecure_no_auth``."""
    gateway = settings.raw.get("gateway") or {}
    if settings.raw.get("auth") is not None:
        return auth_settings_from_mapping(settings.raw["auth"])
    if gateway.get("insecure_no_auth") is True:
        return None
    raise ConfigError(
        "no auth configured: add an auth: section (issuer, audience), or set "
        "gateway.insecure_no_auth: true for local development only"
    )


class Runtime:
    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry,
        *,
        redis_url: str | None = None,
        auth: AuthSettings | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.auth = auth
        # auth.roles is the one place that gives a role its scopes.
        self.policy = policy_from_mapping(
            settings.raw.get("policy"), role_scopes=auth.role_scopes if auth is not None else None
        )
        self.ids = CustomerIds(settings.id_key)
        self.identity = identity_settings_from_mapping(settings.raw.get("identity"))
        self.cursors = CursorCodec(settings.id_key)
        self.audit: AuditTrail = audit_from_settings(settings.raw)
        self._redis_url = redis_url
        self._connectors: ConnectorSet | None = None
        self._cache: CacheLayer | None = None
        self._authenticator: Authenticator | None = None

    @property
    def connectors(self) -> ConnectorSet:
        if self._connectors is None:
            self._connectors = ConnectorSet.build(
                self.settings.connectors,
                transport=self.settings.transport,
                observer=self.telemetry.observe_upstream,
            )
        return self._connectors

    @property
    def pipeline(self) -> UpstreamCall:
        """Loaders ─▶ cache ─▶ resilience ─▶ connector."""
        return self.cache

    @property
    def cache(self) -> CacheLayer:
        if self._cache is None:
            resilience = Resilience(
                policies_from_settings(self.settings),
                direct_call,
                observer=self.telemetry.observe_resilience,
            )
            self._cache = cache_from_settings(
                self.settings, resilience, redis_url=self._redis_url,
                on_event=self.telemetry.observe_cache,
            )  # fmt: skip
        return self._cache

    @property
    def authenticator(self) -> Authenticator | None:
        if self.auth is not None and self._authenticator is None:
            self._authenticator = Authenticator(self.auth)
        return self._authenticator

    def new_scope(self, request_id: str | None = None) -> RequestScope:
        loop = asyncio.get_running_loop()
        return RequestScope(
            deadline=loop.time() + self.settings.request_deadline, request_id=request_id
        )

    def start(self) -> None:
        """Build everything now, so bad config fails at startup, not on a request."""
        _: Any = (self.connectors, self.cache, self.authenticator)

    async def aclose(self) -> None:
        if self._cache is not None:
            await self._cache.aclose()
            self._cache = None
        if self._authenticator is not None:
            await self._authenticator.aclose()
            self._authenticator = None
        if self._connectors is not None:
            await self._connectors.aclose()
            self._connectors = None
        await self.audit.aclose()
