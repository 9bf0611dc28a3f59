"""The upstream call pipeline every DataLoader batch goes through.

    Loaders (per request) ─▶ cache layer ─▶ resilience layer ─▶ connector method

Each layer is an :data:`UpstreamCall`: it takes the connector, the method
name, the batch of keys and the request's :class:`RequestScope`, and returns
the connector's mapping of key to records (keys it does not know are absent).
Layers wrap an inner call, so they stack in ``gateway.app`` in the order above.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.sdk import Connector

__all__ = ["RequestScope", "StaleNote", "UpstreamCall", "direct_call"]


@dataclass(frozen=True, slots=True)
class StaleNote:
    """A cached value served past its soft TTL (or because the upstream failed)."""

    source: str
    operation: str
    key: str
    age: float


@dataclass(slots=True)
class RequestScope:
    """Per-request facts the upstream layers share.

    ``deadline`` is an ``asyncio`` loop time after which no upstream work for
    this request is worth doing; ``None`` means no overall deadline.
    ``request_id`` names the request in logs (``None``: no request asked, as
    for a background refresh).
    """

    deadline: float | None = None
    stale: list[StaleNote] = field(default_factory=list)
    request_id: str | None = None


UpstreamCall = Callable[[Connector, str, Sequence[str], RequestScope], Awaitable[Mapping[str, Any]]]


async def direct_call(
    connector: Connector, method: str, keys: Sequence[str], scope: RequestScope
) -> Mapping[str, Any]:
    """The innermost layer: call the connector's batch method."""
    found: Mapping[str, Any] = await getattr(connector, method)(list(keys))
    return found
