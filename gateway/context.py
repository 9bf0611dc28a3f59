"""The per-request context: one DataLoader per connector method, built lazily.

Every upstream read goes through a loader here, so all keys asked for in one
tick of the event loop -- across every customer in the query -- reach the
connector as one batch. Loaders live for one request only: nothing cached
here can leak into another principal's response.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiodataloader import DataLoader
from starlette.requests import Request

from connectors.sdk import Connector, UpstreamError
from gateway.config import Settings
from gateway.registry import ConnectorSet

if TYPE_CHECKING:
    from gateway.identity import CustomerIds

__all__ = ["Context", "Loaders"]

BatchMethod = Callable[[Sequence[str]], Any]


def _batch_fn(connector: Connector, method: str) -> Callable[[list[str]], Any]:
    call: BatchMethod = getattr(connector, method)

    async def load(keys: list[str]) -> list[Any]:
        try:
            found: Mapping[str, Any] = await call(keys)
        except UpstreamError as exc:
            # One failure fails every key of this batch; DataLoader hands the
            # exception to each waiting resolver, which reports it on its field.
            return [exc for _ in keys]
        return [found.get(key) for key in keys]

    return load


class Loaders:
    """Lazily built ``DataLoader`` per ``(connector name, method)``."""

    def __init__(self, connectors: ConnectorSet) -> None:
        self._connectors = connectors
        self._loaders: dict[tuple[str, str], DataLoader[str, Any]] = {}

    def get(self, connector: Connector, method: str) -> DataLoader[str, Any]:
        key = (connector.name, method)
        loader = self._loaders.get(key)
        if loader is None:
            loader = DataLoader(_batch_fn(connector, method))
            self._loaders[key] = loader
        return loader

    async def load(self, connector: Connector, method: str, key: str) -> Any:
        return await self.get(connector, method).load(key)


@dataclass
class Context:
    """What every resolver gets as ``info.context``."""

    request: Request | None
    settings: Settings
    connectors: ConnectorSet
    loaders: Loaders
    ids: CustomerIds
    response: Any = None
    memo: dict[Hashable, Any] = field(default_factory=dict)
