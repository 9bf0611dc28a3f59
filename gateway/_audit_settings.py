"""The ``audit:`` config section, read once into :class:`AuditSettings`.

``audit.key`` is required: without it nobody could tell a genuine trail from
one rewritten by whoever can write the file, so ``c360 serve`` refuses to
start (ConfigError) rather than record an unverifiable trail. It is a secret
reference (``env:NAME`` or ``file:PATH``); programmatic settings (the demo's)
may hold an :class:`~gateway._audit_event.AuditKey` itself, which YAML cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway._audit_event import AuditKey
from gateway._audit_redis import DEFAULT_STREAM
from gateway.config import ConfigError, resolve_secret

__all__ = ["DEFAULT_PATH", "AuditSettings", "audit_settings"]


DEFAULT_PATH = "c360-audit.jsonl"
_NAMES = frozenset(("key", "on_failure", "sink", "path", "checkpoint", "redis_url", "stream"))
_MISSING_KEY = (
    "audit.key is required: a reference (env:NAME or file:PATH) to urlsafe base64 of at "
    "least 32 random bytes, which signs the audit trail so `c360 audit verify` can prove it "
    "untouched; make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
)


@dataclass(frozen=True, slots=True)
class AuditSettings:
    key: AuditKey
    on_failure: Literal["deny", "allow"]
    sink: Literal["file", "redis"]
    path: Path
    checkpoint: Path
    redis_url: str | None
    redis_where: str  # which setting the Redis URL came from, for messages
    stream: str


def _text(section: Mapping[str, Any], name: str, where: str = "audit") -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{name} must be a string")
    return value


def _key(section: Mapping[str, Any]) -> AuditKey:
    value = section.get("key")
    if isinstance(value, AuditKey):
        return value
    if value is None or value == "":
        raise ConfigError(_MISSING_KEY)
    if not isinstance(value, str):
        raise ConfigError("audit.key must be a reference: env:NAME or file:PATH")
    return AuditKey.from_reference(value, where="audit.key")


def _on_failure(section: Mapping[str, Any]) -> Literal["deny", "allow"]:
    value = section.get("on_failure", "deny")
    if value == "deny":
        return "deny"
    if value == "allow":
        return "allow"
    raise ConfigError("audit.on_failure must be 'deny' (the default) or 'allow'")


def audit_settings(raw: Mapping[str, Any]) -> AuditSettings:
    """Read the ``audit:`` section of the whole config document ``raw``."""
    section = raw.get("audit") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("audit must be a mapping")
    unknown = sorted(set(section) - _NAMES)
    if unknown:
        raise ConfigError(f"audit: unknown setting(s) {', '.join(map(str, unknown))}")
    key, on_failure = _key(section), _on_failure(section)
    url, where = _text(section, "redis_url"), "audit.redis_url"
    cache = raw.get("cache")
    if url is None and "sink" not in section and isinstance(cache, Mapping):
        url, where = _text(cache, "redis_url", "cache"), "cache.redis_url"
    if url is not None and url.startswith(("env:", "file:")):
        url = resolve_secret(url, where=where)
    sink = section.get("sink") or ("redis" if url else "file")
    path = Path(_text(section, "path") or DEFAULT_PATH)
    checkpoint_text = _text(section, "checkpoint")
    checkpoint = Path(checkpoint_text) if checkpoint_text else Path(f"{path}.checkpoint")
    stream = _text(section, "stream") or DEFAULT_STREAM
    if sink == "file":
        for name, target in (("path", path), ("checkpoint", checkpoint)):
            if not target.parent.is_dir():
                raise ConfigError(f"audit.{name}: directory {target.parent} does not exist")
        if checkpoint == path:
            raise ConfigError("audit.checkpoint must be another file than audit.path")
        return AuditSettings(key, on_failure, "file", path, checkpoint, None, where, stream)
    if sink != "redis":
        raise ConfigError("audit.sink must be 'file' or 'redis'")
    if url is None:
        raise ConfigError("audit.redis_url is required when audit.sink is 'redis'")
    for name in ("path", "checkpoint"):
        if name in section:
            raise ConfigError(f"audit.{name} applies to the file sink only")
    return AuditSettings(key, on_failure, "redis", path, checkpoint, url, where, stream)
