"""Contract test kit for connectors: a pytest plugin and its helpers."""

from __future__ import annotations

__all__: list[str] = []
