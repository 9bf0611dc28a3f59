"""In-flight sharing: identical concurrent calls await one task instead of each calling.

Callers may come from different requests with different deadlines. The task
runs under the deadline of the caller that started it; a caller whose own
deadline is earlier stops waiting at it (:class:`WaitExpired`) without
disturbing the others. The task is cancelled only when its last waiter
leaves, so a cancelled client request never fails somebody else's call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

__all__ = ["InFlight", "WaitExpired"]

T = TypeVar("T")


class WaitExpired(Exception):
    """This caller's deadline passed while the shared call was still running."""


@dataclass(slots=True)
class _Shared(Generic[T]):
    task: asyncio.Task[T]
    deadline: float | None
    waiters: int = 0


class InFlight(Generic[T]):
    def __init__(self) -> None:
        self._calls: dict[Hashable, _Shared[T]] = {}

    async def run(
        self,
        key: Hashable,
        start: Callable[[], Coroutine[Any, Any, T]],
        deadline: float | None,
        *,
        on_join: Callable[[], None],
    ) -> T:
        """Await the call for ``key``, starting it with ``start()`` if none is in flight."""
        shared = self._calls.get(key)
        if shared is None:
            shared = _Shared(asyncio.create_task(start()), deadline)
            self._calls[key] = shared
            shared.task.add_done_callback(partial(self._finished, key))
        else:
            on_join()
        shared.waiters += 1
        try:
            # shield: a waiter leaving must not cancel the call for the others.
            if deadline is None or (shared.deadline is not None and deadline >= shared.deadline):
                return await asyncio.shield(shared.task)
            timeout = asyncio.timeout_at(deadline)
            try:
                async with timeout:
                    return await asyncio.shield(shared.task)
            except TimeoutError as exc:
                if timeout.expired():
                    raise WaitExpired from exc
                raise
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not shared.task.done():
                shared.task.cancel()

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        shared = self._calls.get(key)
        if shared is not None and shared.task is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have left already
