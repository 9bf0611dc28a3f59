"""Merging: batches for one connector method, from any request, in one loop pass.

A request's DataLoader already folds every key its resolvers asked for in one
tick into one batch. Under load, other requests dispatch batches for the same
connector method in the same pass of the event loop, each of which would cost
its own vendor call -- and its own share of the vendor's rate limit (Stripe
allows 20 searches a second; Salesforce counts every call against a daily
allocation). :class:`Merger` collects those batches until the end of the pass
and hands every caller the same :class:`Batch`: the union of their keys, to be
fetched once. Each caller still gets only its own keys' records back (the
resilience layer slices the answer), so nothing crosses from one request into
another's response.

A batch is sealed by a callback scheduled when it opens; callers wait for it
with ``await asyncio.sleep(0)``, which resumes them after that callback (the
loop runs callbacks in the order they were scheduled), so waiting costs no
future. Batches never grow past ``max_keys``: a caller whose keys would push
one over starts the next, and a caller with ``max_keys`` keys or more goes
alone, so a small query is never held up behind a large one's pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

__all__ = ["Batch", "Merger"]


@dataclass(slots=True)
class Batch:
    """Keys in first-asked order; ``deadline`` is the latest of the callers'
    (``None`` when any caller has none): the merged call must serve them all."""

    keys: dict[str, None] = field(default_factory=dict)
    deadline: float | None = None
    callers: int = 0


class Merger:
    def __init__(self) -> None:
        self._open: dict[Hashable, Batch] = {}

    def join(
        self, what: Hashable, keys: Sequence[str], deadline: float | None, max_keys: int
    ) -> Batch | None:
        """The open batch for ``what`` with ``keys`` added, or ``None`` to go alone.

        The batch is complete once the caller has awaited ``asyncio.sleep(0)``.
        """
        if len(keys) >= max_keys:
            return None
        batch = self._open.get(what)
        if batch is None or len(batch.keys) + len(keys) > max_keys:
            batch = self._open[what] = Batch(deadline=deadline)
            asyncio.get_running_loop().call_soon(self._seal, what, batch)
        elif batch.deadline is not None:
            batch.deadline = None if deadline is None else max(batch.deadline, deadline)
        batch.keys.update(dict.fromkeys(keys))
        batch.callers += 1
        return batch

    def _seal(self, what: Hashable, batch: Batch) -> None:
        if self._open.get(what) is batch:
            del self._open[what]
