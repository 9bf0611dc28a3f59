"""The per-request context: one DataLoader per connector method, built lazily.

Every upstream read goes through a loader here, so all keys asked for in one
tick of the event loop -- across every customer in the query -- reach the
connector as one batch. Loaders live for one request only: nothing cached
here can leak into another principal's response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiodataloader import DataLoader
from starlette.requests import Request

from connectors.sdk import Connector, UpstreamError
from gateway.cache import MISSING
from gateway.config import Settings
from gateway.registry import ConnectorSet
from gateway.upstream import RequestScope, UpstreamCall, direct_call

if TYPE_CHECKING:
    from gateway.cursors import CursorCodec
    from gateway.identity import CustomerIds, IdentitySettings

__all__ = ["Context", "Fresh", "Loaders"]

Fresh = Callable[[Connector, str, str], Any]
"""``fresh(connector, method, key)``: an answer at hand, or ``gateway.cache.MISSING``."""


def _batch_fn(
    call: UpstreamCall, connector: Connector, method: str, scope: RequestScope
) -> Callable[[list[str]], Any]:
    async def load(keys: list[str]) -> list[Any]:
        try:
            found: Mapping[str, Any] = await call(connector, method, keys, scope)
        except UpstreamError as exc:
            # One failure fails every key of this batch; DataLoader hands the
            # exception to each waiting resolver, which reports it on its field.
            return [exc for _ in keys]
        return [found.get(key) for key in keys]

    return load


class Loaders:
    """Lazily built ``DataLoader`` per ``(connector name, method)``."""

    def __init__(
        self,
        connectors: ConnectorSet,
        call: UpstreamCall = direct_call,
        scope: RequestScope | None = None,
        *,
        fresh: Fresh | None = None,
    ) -> None:
        self._connectors = connectors
        self._call = call
        self._fresh = fresh
        self.scope = scope or RequestScope()
        self._loaders: dict[tuple[str, str], DataLoader[str, Any]] = {}
        # Every key this request asked for, so each is answered once, one way.
        self._known: dict[tuple[str, str, str], asyncio.Future[Any]] = {}

    def get(self, connector: Connector, method: str) -> DataLoader[str, Any]:
        key = (connector.name, method)
        loader = self._loaders.get(key)
        if loader is None:
            loader = DataLoader(_batch_fn(self._call, connector, method, self.scope))
            self._loaders[key] = loader
        return loader

    def results(self) -> Iterator[Any]:
        """Every answer this request has received so far (a record, a list, ``None``)."""
        for future in self._known.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                yield future.result()

    def load(self, connector: Connector, method: str, key: str) -> asyncio.Future[Any]:
        """A future of the key's answer: awaiting or gathering it costs no task.

        A fresh answer in this process's cache (``fresh``) comes back at once,
        without scheduling a batch; anything else goes through the loader.
        """
        ident = (connector.name, method, key)
        future = self._known.get(ident)
        if future is not None:
            return future
        value = MISSING if self._fresh is None else self._fresh(connector, method, key)
        if value is MISSING:
            future = self.get(connector, method).load(key)
        else:
            future = asyncio.get_running_loop().create_future()
            future.set_result(value)
        self._known[ident] = future
        return future


@dataclass
class Context:
    """What every resolver gets as ``info.context``."""

    request: Request | None
    settings: Settings
    connectors: ConnectorSet
    loaders: Loaders
    ids: CustomerIds
    identity: IdentitySettings
    cursors: CursorCodec
    # The authenticated caller (gateway.auth.Principal); the policy reads it.
    principal: Any = None
    policy: Any = None
    # Echoed as X-Request-Id and in masked errors, so reports match the logs.
    request_id: str | None = None
    # PII shown per customer id, for the audit trail: {"Customer.email": "full"}.
    pii_reads: dict[str, dict[str, str]] = field(default_factory=dict)
    # Where PII was shown, and what the field shows instead when it must be
    # withheld (the audit trail could not take the event).
    pii_paths: list[tuple[list[str | int], Any]] = field(default_factory=list)
    # The audit trail (gateway.audit.AuditTrail) events are recorded in.
    audit: Any = None
    # Sources that failed while a customer was resolved, by the customer's
    # response path: each becomes an error there (schema.extensions.partial).
    unreachable: list[tuple[list[str | int], UpstreamError]] = field(default_factory=list)
    # Where stale cached values ended up: (source, operation, key) -> field path.
    stale_paths: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)
    response: Any = None
    memo: dict[Hashable, Any] = field(default_factory=dict)
