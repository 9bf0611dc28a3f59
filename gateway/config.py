"""Typed settings, read once: a YAML file plus environment variables.

A config file names the connectors and where they live; secrets never sit in
it, only references to where they are::

    gateway:
      transport: aiohttp          # or httpcore (bench/REPORT.md says why aiohttp)
      max_customers: 100          # bound of customers(ids:|emails:)
      graphiql: false
    connectors:
      salesforce:
        base_url: https://acme.my.salesforce.com
        timeout: 10
        credentials: {token: env:SALESFORCE_TOKEN}
        options: {api_version: "61.0"}

A credential is ``env:NAME`` (read from the environment) or ``file:PATH``
(read from a secrets file, e.g. a mounted Kubernetes secret). The customer-id
key comes from ``C360_ID_KEY`` (urlsafe base64 of 32/48/64 bytes); it also keys
search cursors and, unless ``cache.key_secret`` is set, cache keys, so every
gateway process must have the same one: ``c360 serve`` refuses to start
without it (:func:`require_id_key`). Programmatic settings without it get a
random key of their own (``id_key_is_ephemeral``).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from connectors.sdk import ConnectorSettings

__all__ = [
    "ConfigError",
    "ConnectorConfig",
    "Settings",
    "load_document",
    "load_settings",
    "require_id_key",
    "resolve_secret",
    "settings_from_mapping",
]

TransportName = Literal["aiohttp", "httpcore"]


class ConfigError(Exception):
    """The configuration is unusable; the message says which setting and why."""


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    name: str
    kind: str  # entry point name in the `c360.connectors` group
    settings: ConnectorSettings
    # The connector's whole config mapping: layers (resilience, cache TTLs)
    # read their own sections from it.
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settings:
    connectors: tuple[ConnectorConfig, ...]
    id_key: bytes
    transport: TransportName = "aiohttp"
    max_customers: int = 100
    graphiql: bool = False
    max_body_bytes: int = 64 * 1024
    # No upstream work for one request goes on past this many seconds.
    request_deadline: float = 8.0
    id_key_is_ephemeral: bool = False
    # The whole config document, for sections owned by other modules.
    raw: Mapping[str, Any] = field(default_factory=dict)


def resolve_secret(reference: str, *, where: str) -> str:
    """Read a ``env:NAME`` or ``file:PATH`` reference; literals are refused."""
    kind, _, target = reference.partition(":")
    if kind == "env" and target:
        value = os.environ.get(target)
        if not value:
            raise ConfigError(f"{where}: environment variable {target} is not set")
        return value
    if kind == "file" and target:
        try:
            return Path(target).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read secrets file {target}") from exc
    raise ConfigError(f"{where}: a credential must be 'env:NAME' or 'file:PATH', not a literal")


_MISSING_ID_KEY = (
    "C360_ID_KEY is not set: every gateway process must have the same one (it keys customer "
    "ids, search cursors and cache keys); make one with "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'` and set it in the "
    "environment of every gateway process"
)


def require_id_key(settings: Settings) -> None:
    """Refuse a key only this process has: ids and cursors it issued would be
    refused by every other process, and by itself after a restart."""
    if settings.id_key_is_ephemeral:
        raise ConfigError(_MISSING_ID_KEY)


def _id_key(raw: str | None) -> tuple[bytes, bool]:
    if not raw:
        return secrets.token_bytes(32), True
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError as exc:
        raise ConfigError("C360_ID_KEY is not urlsafe base64") from exc
    if len(key) not in (32, 48, 64):
        raise ConfigError("C360_ID_KEY must decode to 32, 48 or 64 bytes")
    return key, False


def _connector(name: str, raw: Any) -> ConnectorConfig:
    where = f"connectors.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    base_url = raw.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL")
    creds_raw = raw.get("credentials") or {}
    if not isinstance(creds_raw, Mapping):
        raise ConfigError(f"{where}.credentials must be a mapping")
    credentials = {
        str(k): resolve_secret(str(v), where=f"{where}.credentials.{k}")
        for k, v in creds_raw.items()
    }
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}.options must be a mapping")
    try:
        timeout = float(raw.get("timeout", 10.0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.timeout must be a number of seconds") from exc
    return ConnectorConfig(
        name=name,
        kind=str(raw.get("type", name)),
        raw=dict(raw),
        settings=ConnectorSettings(
            base_url=base_url, credentials=credentials, options=dict(options), timeout=timeout
        ),
    )


def settings_from_mapping(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if env is None else env
    gateway = data.get("gateway") or {}
    connectors = data.get("connectors") or {}
    if not isinstance(gateway, Mapping) or not isinstance(connectors, Mapping):
        raise ConfigError("'gateway' and 'connectors' must be mappings")
    if not connectors:
        raise ConfigError("no connectors configured")
    transport_name = env.get("C360_TRANSPORT") or gateway.get("transport", "aiohttp")
    transport: TransportName
    if transport_name == "aiohttp":
        transport = "aiohttp"
    elif transport_name == "httpcore":
        transport = "httpcore"
    else:
        raise ConfigError("gateway.transport must be 'aiohttp' or 'httpcore'")
    key, ephemeral = _id_key(env.get("C360_ID_KEY"))
    try:
        deadline = float(gateway.get("request_deadline", 8.0))
    except (TypeError, ValueError) as exc:
        raise ConfigError("gateway.request_deadline must be a number of seconds") from exc
    if not 0.1 <= deadline <= 120:
        raise ConfigError("gateway.request_deadline must be between 0.1 and 120 seconds")
    max_customers = int(gateway.get("max_customers", 100))
    if not 1 <= max_customers <= 1000:
        raise ConfigError("gateway.max_customers must be between 1 and 1000")
    return Settings(
        connectors=tuple(_connector(str(n), raw) for n, raw in connectors.items()),
        id_key=key,
        id_key_is_ephemeral=ephemeral,
        transport=transport,
        max_customers=max_customers,
        request_deadline=deadline,
        graphiql=bool(gateway.get("graphiql", False)),
        raw=dict(data),
    )


def load_settings(path: str | os.PathLike[str]) -> Settings:
    return settings_from_mapping(load_document(path))


def load_document(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The config file as a mapping, not yet validated (for tools that read one section)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data
