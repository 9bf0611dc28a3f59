"""The gateway with its audit trail switched off: only to measure what auditing costs.

``c360 serve`` has no such switch (no event, no PII); the bench launches this
uvicorn factory instead, with the same ``C360_CONFIG``, for its "audit off"
rows. Every PII read is still noted by the field guards; recording it does
nothing, so the difference to the normal gateway is the audit's whole cost:
events built, chained, written and fsync'd before each response.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette

from gateway.app import create_app
from gateway.config import load_settings


class _Off:
    on_failure = "deny"

    async def record(self, **_: Any) -> None:
        return None

    async def probe(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


def app() -> Starlette:
    gateway = create_app(load_settings(os.environ["C360_CONFIG"]))
    runtime: Any = gateway.state.c360
    runtime.audit = _Off()
    return gateway
