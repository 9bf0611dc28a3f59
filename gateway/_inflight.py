"""In-flight sharing: identical concurrent calls await one task instead of each calling.

Callers may come from different requests with different deadlines. The task
runs under the deadline of the caller that started it; a caller whose own
deadline is earlier stops waiting at it (:class:`WaitExpired`) without
disturbing the others. The task is cancelled only when its last waiter
leaves, so a cancelled client request never fails somebody else's call.

Each waiter awaits a future of its own rather than the task (which its
cancellation would cancel, hence no bare ``await task``), and the task
settles those futures as its last step instead of from a done callback, as
:func:`asyncio.shield` would: that saves an event loop pass on every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, TypeVarTuple

__all__ = ["InFlight", "WaitExpired"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class WaitExpired(Exception):
    """This caller's deadline passed while the shared call was still running."""


@dataclass(slots=True)
class _Shared(Generic[T]):
    deadline: float | None
    answers: list[asyncio.Future[T]] = field(default_factory=list)  # one per waiter
    task: asyncio.Task[None] | None = None


class InFlight(Generic[K, T]):
    """``on_join(key)`` hears of every caller that joined a call already in flight."""

    def __init__(self, *, on_join: Callable[[K], None]) -> None:
        self._calls: dict[K, _Shared[T]] = {}
        self._on_join = on_join

    async def run(
        self,
        key: K,
        deadline: float | None,
        start: Callable[[*Ts], Coroutine[Any, Any, T]],
        *args: *Ts,
        announce: bool = True,
    ) -> T:
        """Await the call for ``key``, starting ``start(*args)`` if none is in flight.

        ``announce=False`` keeps a join from ``on_join``: for callers that
        planned to share the call (merged batches), so it is no news.
        """
        loop = asyncio.get_running_loop()
        shared = self._calls.get(key)
        if shared is None:
            shared = self._calls[key] = _Shared(deadline)
            shared.task = loop.create_task(self._share(key, shared, start, args))
        elif announce:
            self._on_join(key)
        answer: asyncio.Future[T] = loop.create_future()
        answers = shared.answers
        answers.append(answer)
        try:
            if deadline is None or (shared.deadline is not None and deadline >= shared.deadline):
                return await answer
            timeout = asyncio.timeout_at(deadline)
            try:
                async with timeout:
                    return await answer
            except TimeoutError as exc:
                if timeout.expired():
                    raise WaitExpired from exc
                raise
        finally:
            answers.remove(answer)
            task = shared.task
            if not answers and task is not None and not task.done():
                # Newcomers must not join a call that is being cancelled.
                self._forget(key, shared)
                task.cancel()

    async def _share(
        self,
        key: K,
        shared: _Shared[T],
        start: Callable[[*Ts], Coroutine[Any, Any, T]],
        args: tuple[*Ts],
    ) -> None:
        try:
            # Started here, not by run(): a task cancelled before its first
            # step would leave the coroutine never awaited.
            result = await start(*args)
        except Exception as exc:
            self._forget(key, shared)
            for answer in shared.answers:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:
            # Cancelled (its last waiter left) or the loop is going down.
            self._forget(key, shared)
            for answer in shared.answers:
                answer.cancel()
            raise
        self._forget(key, shared)
        for answer in shared.answers:
            if not answer.done():
                answer.set_result(result)

    def __contains__(self, key: object) -> bool:
        return key in self._calls

    def _forget(self, key: K, shared: _Shared[T]) -> None:
        if self._calls.get(key) is shared:
            del self._calls[key]
