"""c360 connectors: the SDK and one package per vendor."""

from __future__ import annotations

__all__: list[str] = []
