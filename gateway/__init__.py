"""The c360 gateway runtime: app, config, context, identity, telemetry, CLI."""

from __future__ import annotations

__all__: list[str] = []
