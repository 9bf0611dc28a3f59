"""Resolver helpers: loads through the request's DataLoaders, errors as GraphQL errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from strawberry.types import Info

from connectors.sdk import Connector, UpstreamError
from gateway.context import Context
from gateway.cursors import InvalidCursor
from schema.errors import bad_input, upstream_error

__all__ = ["Ctx", "gather_loads", "load", "newest_first", "page_window", "timestamp"]

T = TypeVar("T")
Ctx = Info[Context, None]


async def load(info: Ctx, connector: Connector, method: str, key: str) -> Any:
    try:
        found = await info.context.loaders.load(connector, method, key)
    except UpstreamError as exc:
        raise upstream_error(exc) from exc
    if info.context.loaders.scope.stale:
        # Served from a stale cache entry? Name the field it ended up in.
        for note in info.context.loaders.scope.stale:
            if (note.source, note.operation, note.key) == (connector.name, method, key):
                info.context.stale_paths[(connector.name, method, key)] = info.path.as_list()
    return found


async def gather_loads(info: Ctx, calls: Iterable[tuple[Connector, str, str]]) -> list[Any]:
    return list(await asyncio.gather(*(load(info, c, method, key) for c, method, key in calls)))


def timestamp(when: datetime | None) -> float:
    return when.timestamp() if when else 0.0


def newest_first(items: Iterable[T], key: Any) -> list[T]:
    return sorted(items, key=lambda item: timestamp(key(item)), reverse=True)


def page_window(
    info: Ctx,
    scope: str,
    items: Sequence[T],
    first: int,
    after: str | None,
    *,
    max_first: int = 100,
) -> tuple[list[tuple[str, T]], bool]:
    """Slice ``items`` for a Relay connection: ``(cursor, item)`` pairs and has-next."""
    if not 1 <= first <= max_first:
        raise bad_input(f"first must be between 1 and {max_first}", argument="first")
    start = 0
    if after is not None:
        try:
            start = int(info.context.cursors.decode(scope, after)) + 1
        except (InvalidCursor, TypeError, ValueError):
            raise bad_input("after is not a cursor of this list", argument="after") from None
    window = items[start : start + first]
    codec = info.context.cursors
    edges = [(codec.encode(scope, start + i), item) for i, item in enumerate(window)]
    return edges, start + first < len(items)
