"""Who the client is: the peer's address, or what a trusted proxy says it is.

A forwarding header is as honest as whoever wrote it, so it counts only when
the peer is a proxy this deployment names; anyone else's is ignored, and the
peer's own address is the client's (the audit's ``source_ip``)::

    gateway:
      trusted_proxies: [172.28.0.10, 10.1.0.0/16]   # IPs or CIDRs; default none
      proxy_header: x-forwarded-for                  # or forwarded (RFC 7239)

Read only the header the proxies write: one they pass through untouched is
the client's to forge. The header is walked from the right -- each entry was
added by the hop after it -- past every trusted address; the first one left
is the client. ``X-Forwarded-Proto`` (``proto=`` of ``Forwarded``) from the
same trusted peer sets the scheme. ``c360 serve`` turns uvicorn's own proxy
handling off so that this is the one place that decides.

    ConfigError    (gateway.config) the setting is not a list of IPs/CIDRs, or an unknown header
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config import ConfigError

__all__ = ["ProxySettings", "TrustedProxies", "proxy_settings"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
HeaderName = Literal["x-forwarded-for", "forwarded"]
_HEADERS: dict[str, HeaderName] = {"x-forwarded-for": "x-forwarded-for", "forwarded": "forwarded"}
_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class ProxySettings:
    networks: tuple[Network, ...] = ()
    header: HeaderName = "x-forwarded-for"


def proxy_settings(gateway: Any) -> ProxySettings:
    """``trusted_proxies`` and ``proxy_header`` of the ``gateway:`` section."""
    gateway = {} if gateway is None else gateway
    if not isinstance(gateway, Mapping):
        raise ConfigError("gateway must be a mapping")
    raw = gateway.get("trusted_proxies") or []
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ConfigError("gateway.trusted_proxies must be a list of IP addresses or CIDRs")
    networks = []
    for item in raw:
        try:
            networks.append(ipaddress.ip_network(str(item)))
        except ValueError as exc:
            raise ConfigError(f"gateway.trusted_proxies: {exc}") from exc
    header = gateway.get("proxy_header", "x-forwarded-for")
    if not isinstance(header, str) or header.lower() not in _HEADERS:
        raise ConfigError("gateway.proxy_header must be 'x-forwarded-for' or 'forwarded'")
    return ProxySettings(tuple(networks), _HEADERS[header.lower()])


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address


def _node(value: str) -> str:
    """The address of a hop: unquoted, brackets and port removed (RFC 7239 nodes;
    some proxies write ``ip:port`` into X-Forwarded-For too)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    return value.partition(":")[0] if value.count(":") == 1 else value


def _pairs(element: str) -> dict[str, str]:
    pairs = {}
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        pairs[name.strip().lower()] = value.strip()
    return pairs


class TrustedProxies:
    """ASGI middleware: replaces ``scope["client"]`` (and ``scheme``) with what a
    trusted peer's forwarding header says; leaves every other request alone."""

    def __init__(self, app: ASGIApp, settings: ProxySettings) -> None:
        self.app = app
        self._networks = settings.networks
        self._header = settings.header.encode()
        # ipaddress is slow (~5 us a hop); the same few proxies and clients recur.
        self._hop = functools.lru_cache(maxsize=4096)(self._read)

    def _read(self, text: str) -> tuple[Address | None, bool]:
        """A hop's address, and whether it is a trusted proxy."""
        address = _address(_node(text))
        trusted = address is not None and any(address in net for net in self._networks)
        return address, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if (
            self._networks
            and scope["type"] in ("http", "websocket")
            and peer
            and self._hop(str(peer[0]))[1]
        ):
            scope = self._forwarded(scope)
        await self.app(scope, receive, send)

    def _forwarded(self, scope: Scope) -> Scope:
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == self._header]
        if not values:
            return scope
        if self._header == b"forwarded":
            elements = [_pairs(e) for e in ",".join(values).split(",")]
            hops = [e.get("for", "") for e in elements]
            proto = elements[-1].get("proto", "").strip('"')
        else:
            hops = ",".join(values).split(",")
            proto = self._last(scope, b"x-forwarded-proto")
        client: Address | None = None
        for hop in reversed(hops):
            client, trusted = self._hop(hop)
            if not trusted:
                break
        if client is None:
            return scope  # a hop we cannot read: the trusted peer is all we know
        scope = {**scope, "client": (str(client), 0)}
        if scope["type"] == "http" and proto.lower() in _SCHEMES:
            scope["scheme"] = proto.lower()
        return scope

    @staticmethod
    def _last(scope: Scope, name: bytes) -> str:
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == name]
        return values[-1].split(",")[-1].strip() if values else ""
