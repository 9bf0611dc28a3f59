"""One round of identity resolution: which lookups to make, and their answers.

Each round asks every connector for all new keys at once, through the
request's DataLoaders, so N customers still cost one batch per connector
method per round. A round may take a share of the request's remaining
deadline; a connector that has not answered by then counts as timed out.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.sdk import Connector, UpstreamTimeout
from connectors.sdk.webhooks import LINKED, PERSON_LOOKUPS
from gateway.context import Context
from gateway.registry import ConnectorSet

__all__ = [
    "EMAIL_LOOKUP",
    "ID_LOOKUP",
    "LINKED",
    "PHONE_LOOKUP",
    "Call",
    "Frontier",
    "as_list",
    "round_calls",
    "round_results",
]

# One table of person lookups per domain, owned by the SDK (webhooks evict
# by the same method names).
EMAIL_LOOKUP = {d: names[0] for d, names in PERSON_LOOKUPS.items()}
ID_LOOKUP = {d: names[1] for d, names in PERSON_LOOKUPS.items()}
PHONE_LOOKUP = {d: names[2] for d, names in PERSON_LOOKUPS.items() if names[2] is not None}

#: ``(connector, method, key, kind)``; kind is "link", "email" or "phone".
Call = tuple[Connector, str, str, str]

#: Share of the request's remaining deadline one identity round may take. A
#: vendor that hangs in round 1 must not eat the budget of every later hop:
#: past its share, that system counts as timed out and resolution goes on.
_ROUND_SHARE = 0.5


def as_list(found: Any) -> Sequence[Any]:
    if found is None:
        return ()
    if isinstance(found, Sequence):
        return found
    return (found,)


def _supports(connector: Connector, method: str) -> bool:
    # Hooks left at the SDK default would answer {} for free; skip the call.
    return _overrides(type(connector), method)


@functools.cache
def _overrides(kind: type, method: str) -> bool:
    base = next(b for b in kind.__mro__ if b.__module__ == "connectors.sdk.base")
    return getattr(kind, method, None) is not getattr(base, method, None)


@dataclass
class Frontier:
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    # "system:id" a found record points at: read it from its own system...
    targets: set[str] = field(default_factory=set)
    # ...and "system:id" of every found record: ask the others who links to it.
    backrefs: set[str] = field(default_factory=set)

    def minus(self, seen: Frontier) -> None:
        self.emails -= seen.emails
        self.phones -= seen.phones
        self.targets -= seen.targets
        self.backrefs -= seen.backrefs


def round_calls(
    connectors: ConnectorSet, frontier: Frontier, seen: Frontier, have: Collection[str] = ()
) -> list[Call]:
    """This round's lookups for the frontier's new keys; ``seen`` takes them in.

    ``have`` holds ``"system:id"`` of records already accepted: a link to
    one of them needs no read.
    """
    every = list(connectors.by_name.values())
    calls: list[Call] = []
    for key in sorted(frontier.targets - seen.targets):
        if key in have:
            continue
        system, _, target = key.partition(":")
        owner = connectors.by_name.get(system)
        if owner is not None:
            calls.append((owner, ID_LOOKUP[owner.domain], target, "link"))
    for key in sorted(frontier.backrefs - seen.backrefs):
        system = key.partition(":")[0]
        calls += [
            (c, LINKED, key, "link") for c in every if c.name != system and _supports(c, LINKED)
        ]
    for key in sorted(frontier.emails - seen.emails):
        calls += [(c, EMAIL_LOOKUP[c.domain], key, "email") for c in every]
    for key in sorted(frontier.phones - seen.phones):
        calls += [
            (c, PHONE_LOOKUP[c.domain], key, "phone")
            for c in every
            if c.domain in PHONE_LOOKUP and _supports(c, PHONE_LOOKUP[c.domain])
        ]
    seen.emails |= frontier.emails
    seen.phones |= frontier.phones
    seen.targets |= frontier.targets
    seen.backrefs |= frontier.backrefs
    return calls


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure is not an unhandled one


async def round_results(ctx: Context, calls: list[Call]) -> list[Any]:
    """Each call's answer, or the exception it failed with (an
    :class:`~connectors.sdk.UpstreamTimeout` past the round's share of the deadline)."""
    tasks = [asyncio.ensure_future(ctx.loaders.load(c, method, key)) for c, method, key, _ in calls]
    deadline = ctx.loaders.scope.deadline
    budget = None
    if deadline is not None:
        budget = max(0.0, (deadline - asyncio.get_running_loop().time()) * _ROUND_SHARE)
    # Not cancelled when late: DataLoader futures are shared with other
    # customers of the request, and the resilience layer bounds the call.
    done: set[asyncio.Future[Any]]
    if all(task.done() for task in tasks):  # answered from memory: nothing to wait for
        done = set(tasks)
    else:
        done, _ = await asyncio.wait(tasks, timeout=budget)
    results: list[Any] = []
    for task, (connector, *_) in zip(tasks, calls, strict=True):
        if task in done:
            results.append(task.exception() or task.result())
        else:
            task.add_done_callback(_consume)
            results.append(
                UpstreamTimeout(f"{connector.name} did not answer in time", source=connector.name)
            )
    return results
