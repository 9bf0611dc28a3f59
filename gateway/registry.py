"""Connector discovery and construction.

Connector classes are found through the ``c360.connectors`` entry-point group,
so a third-party connector package becomes usable by installing it and naming
it in the config -- no change to the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

import httpx

from connectors.sdk import Connector, ConnectorError, Domain
from connectors.sdk.http import RequestObserver, make_transport
from gateway.config import ConfigError, ConnectorConfig, TransportName

__all__ = ["ConnectorSet", "available_connectors"]


def available_connectors() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for ep in entry_points(group="c360.connectors"):
        cls = ep.load()
        if isinstance(cls, type) and issubclass(cls, Connector):
            found[ep.name] = cls
    return found


class ConnectorSet:
    """The configured connectors of one gateway, by name and by domain."""

    def __init__(self, connectors: Mapping[str, Connector]) -> None:
        self.by_name = dict(connectors)
        self.by_domain: dict[Domain, list[Connector]] = {d: [] for d in Domain}
        for connector in self.by_name.values():
            self.by_domain[connector.domain].append(connector)

    @classmethod
    def build(
        cls,
        configs: Iterable[ConnectorConfig],
        *,
        transport: TransportName,
        observer: RequestObserver | None,
    ) -> ConnectorSet:
        classes = available_connectors()
        built: dict[str, Connector] = {}
        for config in configs:
            connector_cls = classes.get(config.kind)
            if connector_cls is None:
                known = ", ".join(sorted(classes)) or "none"
                raise ConfigError(
                    f"connector type {config.kind!r} is not installed (known: {known})"
                )
            http_transport: httpx.AsyncBaseTransport = make_transport(transport)
            try:
                built[config.name] = connector_cls(
                    config.settings, transport=http_transport, observer=observer
                )
            except ConnectorError as exc:
                raise ConfigError(f"connectors.{config.name}: {exc}") from exc
        return cls(built)

    @property
    def names(self) -> list[str]:
        return sorted(self.by_name)

    async def aclose(self) -> None:
        for connector in self.by_name.values():
            await connector.close()
