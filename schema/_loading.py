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
    _note_stale(info, ((connector, method, key),))
    return found


async def gather_loads(info: Ctx, calls: Iterable[tuple[Connector, str, str]]) -> list[Any]:
    """Several loads at once; the first upstream failure fails the field."""
    calls = list(calls)
    loaders = info.context.loaders
    # The loaders' futures themselves: gathering coroutines would cost a task each.
    futures = [loaders.load(c, method, key) for c, method, key in calls]
    found: list[Any]
    if all(future.done() for future in futures):  # answered from memory: nothing to wait for
        found = [future.exception() or future.result() for future in futures]
    else:
        found = await asyncio.gather(*futures, return_exceptions=True)
    for result in found:
        if isinstance(result, UpstreamError):
            raise upstream_error(result) from result
        if isinstance(result, BaseException):
            raise result
    _note_stale(info, calls)
    return found


def _note_stale(info: Ctx, calls: Iterable[tuple[Connector, str, str]]) -> None:
    stale = info.context.loaders.scope.stale
    if not stale:
        return
    # Served from a stale cache entry? Name the field it ended up in.
    wanted = {(c.name, method, key) for c, method, key in calls}
    for note in stale:
        where = (note.source, note.operation, note.key)
        if where in wanted:
            info.context.stale_paths[where] = info.path.as_list()


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
