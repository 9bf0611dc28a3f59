"""In-process single flight: one future per key being fetched, and the tasks fetching.

A fetch runs as its own task, never inside the request that started it, so a
request that gives up cancels nobody else's wait; waiters hold the key's
future through ``asyncio.shield``. Every task is tracked, so :meth:`aclose`
can cancel what is left when the app stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

__all__ = ["Flights", "Ident"]

Ident = tuple[str, str, str]  # (connector, method, key)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A fetch nobody waits for (a refresh) must not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class Flights:
    def __init__(self) -> None:
        self._futures: dict[Ident, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, ident: Ident) -> asyncio.Future[Any] | None:
        return self._futures.get(ident)

    def claim(self, idents: Iterable[Ident]) -> dict[Ident, asyncio.Future[Any]]:
        """New futures for keys nobody is fetching yet; the caller must :meth:`settle` them."""
        loop = asyncio.get_running_loop()
        claimed: dict[Ident, asyncio.Future[Any]] = {}
        for ident in idents:
            future: asyncio.Future[Any] = loop.create_future()
            future.add_done_callback(_retrieve)
            self._futures[ident] = claimed[ident] = future
        return claimed

    def settle(
        self,
        claimed: Mapping[Ident, asyncio.Future[Any]],
        outcomes: Mapping[Ident, Any],
        missing: BaseException,
    ) -> None:
        """Resolve each claimed future with its outcome (a value or an exception)."""
        for ident, future in claimed.items():
            if self._futures.get(ident) is future:
                del self._futures[ident]
            if future.done():
                continue
            outcome = outcomes.get(ident, missing)
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def wait(self, futures: Iterable[asyncio.Future[Any]]) -> list[Any]:
        """Each future's result or exception; cancelling the caller leaves them running."""
        return await asyncio.gather(*(asyncio.shield(f) for f in futures), return_exceptions=True)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
