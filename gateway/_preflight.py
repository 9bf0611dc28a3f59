"""What ``c360 serve`` checks once, in the parent process, before any worker starts.

The config is read exactly as a worker reads it -- the app is built and its
runtime started and closed here -- so a config that cannot run is one line
and exit 2, never workers that fail at start and are respawned forever. On top
of what a worker checks, ``serve`` requires what every process must share or
decide on purpose: ``C360_ID_KEY`` (customer ids, cursors, cache keys),
``audit.key`` (required by the audit section itself), for the file audit
sink an explicit ``audit.path`` (a trail is never written into whatever
directory the gateway happened to start in), and, for several workers taking
webhooks, a Redis they share (replay claims and evictions).

Errors::

    ConfigError (gateway.config)   the config cannot run; the message names the setting
"""

from __future__ import annotations

import asyncio
import logging

from gateway._audit_settings import audit_settings
from gateway.app import create_app
from gateway.config import ConfigError, Settings, load_settings, require_id_key
from gateway.runtime import Runtime
from gateway.webhooks import webhook_settings

__all__ = ["preflight"]

_NO_AUDIT_PATH = (
    "audit.path is required with the file sink: the file the PII audit trail is appended "
    "to, e.g. /var/log/c360/audit.jsonl, in a directory only the gateway writes "
    "(or audit.sink: redis)"
)


def preflight(path: str, *, redis_url: str | None = None, workers: int = 1) -> Settings:
    """The settings at ``path`` once they are known to run in ``workers``
    processes; else ConfigError."""
    settings = load_settings(path)
    require_id_key(settings)
    hooked = [c.name for c in settings.connectors if c.raw.get("webhook_secret")]
    if workers > 1 and hooked and webhook_settings(settings, redis_url=redis_url).redis_url is None:
        raise ConfigError(
            f"--workers {workers} with webhooks (connectors.{hooked[0]}.webhook_secret) needs a "
            "Redis every process shares (webhooks.redis_url, cache.redis_url or --redis-url): "
            "without one each process keeps its own replay claims and evicts only its own "
            "cached records"
        )
    audit = audit_settings(settings.raw)
    if audit.sink == "file" and not (settings.raw.get("audit") or {}).get("path"):
        raise ConfigError(_NO_AUDIT_PATH)
    # Each worker logs the warnings this raises (insecure modes) as it starts.
    logging.disable(logging.WARNING)
    try:
        runtime: Runtime = create_app(settings, redis_url=redis_url).state.c360
        asyncio.run(_start_and_close(runtime))
    finally:
        logging.disable(logging.NOTSET)
    return settings


async def _start_and_close(runtime: Runtime) -> None:
    try:
        runtime.start()
    finally:
        await runtime.aclose()
