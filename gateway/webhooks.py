"""Live invalidation: vendor webhooks evict exactly the cached answers they spoil,
here and -- over Redis pub/sub -- in every other gateway process.

Routes (:func:`webhook_routes`)::

    POST /webhooks/{connector}            signed deliveries (Stripe, Zendesk) or the
                                          X-C360-Webhook-Secret header (Salesforce)
    POST /webhooks/{connector}/{secret}   the secret as the last URL segment (Mailchimp)
    GET  /webhooks/{connector}/{secret}   Mailchimp's check of a newly saved URL

A connector receives webhooks once its config names a secret, and its
package has a ``webhook`` module (:mod:`connectors.sdk.webhooks`)::

    connectors:
      stripe:
        webhook_secret: env:STRIPE_WEBHOOK_SECRET    # or file:PATH; 16+ characters
      mailchimp:
        webhook_secret: env:MAILCHIMP_WEBHOOK_SECRET
        webhook_signature: c360    # only X-C360-Signature from a relay (default: vendor)
    webhooks:                                        # optional
      redis_url: redis://cache:6379/0                # default: --redis-url, then cache.redis_url
      channel: c360:invalidate
      max_body_bytes: 65536

Answers are JSON: 200 ``{"received": true, "evicted": n}``; 200 ``{"received":
true, "duplicate": true, "evicted": 0}`` for an event already handled (a replay,
or the vendor sending it twice: 200, not 409, because Stripe and Zendesk retry
any other answer for days); 400 a payload that cannot be read; 401 not
authentic (bad or missing signature or secret, stale timestamp); 404 no
webhook at that URL; 413 too large; 503 the eviction, its broadcast or the
replay check failed, so the vendor should retry. Errors never echo a secret.

Each event is handled once per connector within a day (:mod:`gateway._deliveries`):
in Redis when webhooks have one, so across every process, else per process.
Vendors that sign nothing (Salesforce callouts, Mailchimp) have no event id:
their deliveries can be replayed by whoever saw one, unless the connector
requires ``webhook_signature: c360`` (``X-C360-Signature: t=<unix>,v1=<hex
HMAC-SHA256(secret, "<t>.<body>")>``, 300 s tolerance), which a relay in front
of the vendor adds.

After the local eviction the other processes are told over Redis pub/sub
(:class:`Invalidator`, in :mod:`gateway._invalidator`).

Errors::

    ConfigError    (gateway.config) at startup: a webhook setting or secret is unusable
    (a delivery never raises: every failure is one of the answers above)
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sdk.webhooks import (
    SECRET_HEADER,
    C360Signed,
    Invalidation,
    WebhookHandler,
    WebhookRejected,
)
from gateway._cache_policy import cache_settings
from gateway._invalidator import CHANNEL, Invalidator
from gateway._stores import StoreError
from gateway.config import ConfigError, ConnectorConfig, Settings, resolve_secret

__all__ = ["CHANNEL", "Invalidator", "WebhookSettings", "load_handler", "webhook_routes",
           "webhook_settings"]  # fmt: skip

log = logging.getLogger("c360.webhooks")
_SECTION = frozenset({"redis_url", "channel", "max_body_bytes"})
_SIGNATURES = ("vendor", "c360")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    redis_url: str | None = None
    channel: str = CHANNEL
    max_body_bytes: int = 64 * 1024


def webhook_settings(settings: Settings, *, redis_url: str | None = None) -> WebhookSettings:
    """The ``webhooks:`` section; its ``redis_url`` wins, then ``redis_url``, then the cache's."""
    raw = settings.raw.get("webhooks") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError("webhooks must be a mapping")
    if unknown := sorted(str(key) for key in raw if key not in _SECTION):
        raise ConfigError(
            f"webhooks: unknown key(s) {unknown}; expected some of {sorted(_SECTION)}"
        )
    url = raw.get("redis_url")
    if isinstance(url, str) and url.startswith(("env:", "file:")):
        url = resolve_secret(url, where="webhooks.redis_url")
    if url is not None and not isinstance(url, str):
        raise ConfigError("webhooks.redis_url must be a string")
    channel = raw.get("channel", CHANNEL)
    limit = raw.get("max_body_bytes", 64 * 1024)
    if not isinstance(channel, str) or not channel:
        raise ConfigError("webhooks.channel must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10 * 2**20:
        raise ConfigError("webhooks.max_body_bytes must be an integer from 1 to 10 MiB")
    url = url or redis_url or cache_settings(settings).redis_url
    return WebhookSettings(redis_url=url or None, channel=channel, max_body_bytes=limit)


def load_handler(kind: str) -> WebhookHandler | None:
    """``handler`` of the ``webhook`` module next to connector type ``kind``; None if none."""
    found = [ep for ep in entry_points(group="c360.connectors") if ep.name == kind]
    module_name = found[0].module if found else f"connectors.{kind}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    package = module_name if hasattr(module, "__path__") else module_name.rpartition(".")[0]
    try:
        webhook = importlib.import_module(f"{package}.webhook")
    except ModuleNotFoundError as exc:
        if exc.name == f"{package}.webhook":
            return None
        raise
    handler = getattr(webhook, "handler", None)
    return handler if isinstance(handler, WebhookHandler) else None


@dataclass(frozen=True, slots=True)
class _Hook:
    handler: WebhookHandler
    secret: str


def _hooks(connectors: Iterable[ConnectorConfig]) -> dict[str, _Hook]:
    hooks: dict[str, _Hook] = {}
    for config in connectors:
        reference = config.raw.get("webhook_secret")
        signature = config.raw.get("webhook_signature", "vendor")
        if signature not in _SIGNATURES:
            raise ConfigError(
                f"connectors.{config.name}.webhook_signature must be 'vendor' or 'c360'"
            )
        if reference is None:
            if "webhook_signature" in config.raw:
                raise ConfigError(
                    f"connectors.{config.name}.webhook_signature needs a webhook_secret"
                )
            continue
        where = f"connectors.{config.name}.webhook_secret"
        secret = resolve_secret(str(reference), where=where)
        if len(secret) < 16:
            raise ConfigError(f"{where} must be at least 16 characters")
        handler = load_handler(config.kind)
        if handler is None:
            raise ConfigError(f"{where}: connector type {config.kind!r} has no webhook handler")
        hooks[config.name] = _Hook(C360Signed(handler) if signature == "c360" else handler, secret)
    return hooks


def _event_id(handler: WebhookHandler, headers: Mapping[str, str], body: bytes) -> str | None:
    """The handler's id for this delivery; None when it has none (or no ``event_id``)."""
    event_id = getattr(handler, "event_id", None)
    if event_id is None:
        return None
    found = event_id(headers, body)
    return found if isinstance(found, str) and found else None


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _body(request: Request, limit: int) -> bytes | None:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def webhook_routes(
    invalidator: Invalidator,
    connectors: Iterable[ConnectorConfig],
    *,
    max_body_bytes: int = 64 * 1024,
    clock: Callable[[], float] = time.time,
) -> list[Route]:
    """The webhook routes of every connector whose config names a ``webhook_secret``.

    Secrets are read now: a missing one is a :class:`ConfigError` at startup.
    """
    hooks = _hooks(connectors)

    async def receive(request: Request) -> Response:
        name = request.path_params["connector"]
        in_url = request.path_params.get("secret")
        hook = hooks.get(name)
        if hook is None or (in_url is not None and not hook.handler.url_secret):
            return _error(404, "unknown_webhook", "no webhook is configured at this URL")
        if request.method == "GET" and not hook.handler.url_secret:
            return _error(405, "method_not_allowed", "webhooks are POSTed")
        body = await _body(request, max_body_bytes)
        if body is None:
            return _error(413, "body_too_large", f"the body exceeds {max_body_bytes} bytes")
        headers = {key.lower(): value for key, value in request.headers.items()}
        if in_url is not None:
            headers[SECRET_HEADER.lower()] = in_url
        try:
            hook.handler.verify(headers, body, hook.secret, clock())
            if request.method == "GET":
                return JSONResponse({"ok": True})
            invalidations = hook.handler.invalidations(headers, body)
            event_id = _event_id(hook.handler, headers, body)
        except WebhookRejected as exc:
            log.warning("webhook for %s refused: %s", name, exc.reason)
            return _error(exc.status, exc.reason, str(exc))
        if event_id is None:
            return await _evict(name, invalidations)
        deliveries = invalidator.deliveries
        try:
            claim = await deliveries.claim(name, event_id)
        except StoreError as exc:
            log.warning("webhook for %s: replay check failed: %s", name, exc)
            return _error(
                503, "replay_check_failed", "cannot tell if this event was handled; retry"
            )
        if claim is None:
            log.info("webhook for %s: an event already handled came again; ignored", name)
            return JSONResponse({"received": True, "duplicate": True, "evicted": 0})
        handled = False
        try:
            response = await _evict(name, invalidations)
            handled = response.status_code == 200
            return response
        finally:
            if not handled:  # failed or cancelled: the vendor's retry must go through
                with contextlib.suppress(StoreError):
                    await deliveries.release(name, event_id, claim)

    async def _evict(name: str, invalidations: list[Invalidation]) -> Response:
        if not await invalidator.invalidate(name, invalidations):
            return _error(503, "invalidation_failed", "the cache did not take the eviction; retry")
        return JSONResponse({"received": True, "evicted": len(invalidations)})

    methods = ["GET", "POST"]
    return [
        Route("/webhooks/{connector}", receive, methods=methods),
        Route("/webhooks/{connector}/{secret}", receive, methods=methods),
    ]
