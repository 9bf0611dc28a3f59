"""Sandbox fault knobs: the spec, its validation, and the faulty answers.

A fault table is JSON keyed by vendor; each value is one spec object or a
list of them (``[]`` = no faults for that vendor)::

    {"stripe": {"status": 500, "rate": 0.25},
     "zendesk": {"route": "/api/v2/users/show_many.json", "retry_after": 2},
     "mailchimp": [{"route": "/3.0/search-members", "hang": true},
                   {"latency_ms": 150}]}

Fields: ``route`` (a route template as ``/_sandbox/stats`` names it, or a
prefix of the path under the vendor's mount; absent = every route),
``rate`` (0-1, default 1), ``latency_ms`` (added before answering, may
accompany any effect) and at most one of ``status`` (answered with the
vendor's error body), ``retry_after`` (seconds; sets ``Retry-After``, status
defaults to 429), ``hang``, ``malformed`` and ``reset``. For each request the
first spec whose route matches *and* whose seeded coin comes up wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from connectors.sdk.errors import ConfigurationError

__all__ = [
    "ERROR_RESPONSE_ATTR",
    "MAX_HANG_SECONDS",
    "DroppedConnection",
    "ErrorResponse",
    "FaultSpec",
    "FaultTable",
    "Faults",
    "HoldEnd",
    "answer",
    "hold",
    "parse_faults",
]

#: A vendor's error answer for an HTTP status, in that vendor's error shape.
ErrorResponse = Callable[[Request, int], Response]
#: Where ``vendor_app`` keeps its ``ErrorResponse`` on ``app.state``.
ERROR_RESPONSE_ATTR = "sandbox_error_response"

#: A hung request gives up after this long even if nobody disconnects.
MAX_HANG_SECONDS = 300.0
_MAX_LATENCY_MS = 60_000.0
_POLL_SECONDS = 0.05
_VENDOR_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_FIELDS = frozenset(
    {"route", "rate", "latency_ms", "status", "retry_after", "hang", "malformed", "reset"}
)
# What a truncated vendor answer looks like: a JSON document cut short.
_MALFORMED_BODY = b'{"object": "list", "data": [{"id": "sandbox-fault", "email": "'
_DROPPED_BODY = b'{"data": [{"id": "'
_DROPPED_CLAIMED_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault knob for one vendor."""

    route: str | None = None
    rate: float = 1.0
    status: int | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    hang: bool = False
    malformed: bool = False
    reset: bool = False

    def matches(self, template: str, path: str) -> bool:
        return self.route is None or self.route == template or path.startswith(self.route)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.route is None else {"route": self.route}
        out["rate"] = self.rate
        if self.status is not None:
            out["status"] = self.status
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.latency_ms:
            out["latency_ms"] = self.latency_ms
        for flag in ("hang", "malformed", "reset"):
            if getattr(self, flag):
                out[flag] = True
        return out


@dataclass(frozen=True, slots=True)
class Faults:
    """A validated fault table: vendor -> its specs, in the order given."""

    by_vendor: Mapping[str, tuple[FaultSpec, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {v: [s.to_json() for s in specs] for v, specs in sorted(self.by_vendor.items())}


def parse_faults(obj: object, *, vendors: Collection[str] | None = None) -> Faults:
    """Validate fault JSON (see the module docstring); ``{}`` is "no faults".

    ``vendors``, when given, are the only vendor names accepted. Raises
    :class:`~connectors.sdk.errors.ConfigurationError` naming the bad field.
    """
    if not isinstance(obj, Mapping):
        raise ConfigurationError(f"faults must be a JSON object keyed by vendor, not {_kind(obj)}")
    parsed: dict[str, tuple[FaultSpec, ...]] = {}
    for vendor, value in obj.items():
        if not isinstance(vendor, str) or not _VENDOR_NAME.fullmatch(vendor):
            raise ConfigurationError(f"faults: {vendor!r} is not a vendor name")
        if vendors is not None and vendor not in vendors:
            known = ", ".join(sorted(vendors)) or "none"
            raise ConfigurationError(f"faults: unknown vendor {vendor!r} (served: {known})")
        items = value if isinstance(value, list) else [value]
        specs = tuple(_spec(f"{vendor}[{i}]", item) for i, item in enumerate(items))
        if specs:
            parsed[vendor] = specs
    return Faults(parsed)


def _spec(where: str, obj: object) -> FaultSpec:
    if not isinstance(obj, Mapping):
        raise ConfigurationError(f"faults: {where} must be an object, not {_kind(obj)}")
    unknown = sorted(str(k) for k in obj if k not in _FIELDS)
    if unknown:
        allowed = ", ".join(sorted(_FIELDS))
        raise ConfigurationError(f"faults: {where} has unknown field(s) {unknown}; use {allowed}")
    route = obj.get("route")
    if route is not None and not (isinstance(route, str) and route.startswith("/")):
        raise ConfigurationError(f"faults: {where}.route must be a path starting with '/'")
    rate = _number(where, obj, "rate", 1.0, 0.0, 1.0)
    latency_ms = _number(where, obj, "latency_ms", 0.0, 0.0, _MAX_LATENCY_MS)
    retry = obj.get("retry_after")
    retry_after = None if retry is None else _number(where, obj, "retry_after", 0.0, 0.0, 86_400)
    status = obj.get("status")
    if status is not None and not (
        isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599
    ):
        raise ConfigurationError(f"faults: {where}.status must be an HTTP error status 400-599")
    flags = {name: obj.get(name, False) for name in ("hang", "malformed", "reset")}
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ConfigurationError(f"faults: {where}.{name} must be true or false")
    # retry_after goes with status (429 or 503 + Retry-After): one effect.
    effects = [] if status is None else ["status"]
    effects += [] if retry_after is None or status is not None else ["retry_after"]
    effects += [name for name, flag in flags.items() if flag]
    if len(effects) > 1:
        raise ConfigurationError(f"faults: {where} combines {' and '.join(effects)}; pick one")
    if not effects and latency_ms == 0:
        raise ConfigurationError(
            f"faults: {where} has no effect; set status, retry_after, latency_ms, hang, "
            "malformed or reset"
        )
    if retry_after is not None and status is None:
        status = 429
    return FaultSpec(
        route=route,
        rate=rate,
        status=status,
        retry_after=retry_after,
        latency_ms=latency_ms,
        **flags,
    )


def _number(
    where: str, obj: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> float:
    value = obj.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ConfigurationError(f"faults: {where}.{name} must be a number, {low:g} to {high:g}")
    return float(value)


def _kind(obj: object) -> str:
    return "null" if obj is None else type(obj).__name__


class FaultTable:
    """The faults in force, each spec with its own coin seeded from the world seed,
    so the same table over the same request sequence faults the same requests."""

    def __init__(self, seed: int, faults: Faults) -> None:
        self.faults = faults
        self._coins = {
            (vendor, i): random.Random(f"c360-faults:{seed}:{vendor}:{i}")
            for vendor, specs in faults.by_vendor.items()
            for i in range(len(specs))
        }

    def pick(self, vendor: str, template: str, path: str) -> FaultSpec | None:
        for i, spec in enumerate(self.faults.by_vendor.get(vendor, ())):
            if spec.matches(template, path) and self._coins[vendor, i].random() < spec.rate:
                return spec
        return None


class HoldEnd(enum.Enum):
    """Why a held request stopped waiting."""

    DISCONNECTED = "disconnected"
    RELEASED = "released"
    STOPPED = "stopped"


async def hold(
    receive: Receive, release: Callable[[], HoldEnd | None], *, limit: float = MAX_HANG_SECONDS
) -> HoldEnd:
    """Answer nothing until the client disconnects, ``release()`` says why to
    stop, or ``limit`` seconds pass (then :attr:`HoldEnd.STOPPED`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        while True:
            done, _ = await asyncio.wait({gone}, timeout=_POLL_SECONDS)
            if done:
                return HoldEnd.DISCONNECTED
            reason = release()
            if reason is not None:
                return reason
            if loop.time() >= deadline:
                return HoldEnd.STOPPED
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone


async def _disconnected(receive: Receive) -> None:
    # Once the request body is read, the server's receive() blocks until the
    # client closes the connection.
    while (await receive())["type"] != "http.disconnect":
        pass


class DroppedConnection(Exception):
    """Raised on purpose after a partial answer so the server closes the socket."""


class _Dropped(Response):
    """Dies half way: headers, a few body bytes, then a closed socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The headers promise more bytes than ever arrive; the exception makes
        # the server close the connection mid-body (uvicorn closes the
        # transport when an app fails after starting its response).
        _quiet_uvicorn()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(_DROPPED_CLAIMED_LENGTH).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _DROPPED_BODY, "more_body": True})
        raise DroppedConnection("sandbox fault: connection reset")


class _IgnoreDroppedConnection(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_FILTER = _IgnoreDroppedConnection()


def _quiet_uvicorn() -> None:
    # uvicorn logs every app exception with a traceback; a reset the sandbox
    # was asked for is not an error. addFilter ignores a filter already added.
    logging.getLogger("uvicorn.error").addFilter(_FILTER)


async def answer(
    fault: FaultSpec,
    request: Request,
    endpoint: Callable[[Request], Awaitable[Response]],
    *,
    hold_request: Callable[[Request], Awaitable[HoldEnd]],
) -> Response:
    """What a vendor route answers under ``fault``; ``endpoint`` is the real route."""
    if fault.latency_ms > 0:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.hang:
        ended = await hold_request(request)
        if ended is HoldEnd.RELEASED:
            return await endpoint(request)
        if ended is HoldEnd.DISCONNECTED:
            # Nobody is left to read it; the server discards it.
            return Response(status_code=499)
        return _Dropped()
    if fault.reset:
        return _Dropped()
    if fault.malformed:
        return Response(_MALFORMED_BODY, status_code=200, media_type="application/json")
    if fault.status is None:
        return await endpoint(request)
    hook: ErrorResponse = getattr(request.app.state, ERROR_RESPONSE_ATTR, _generic_error)
    response = hook(request, fault.status)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response


def _generic_error(_: Request, status: int) -> Response:
    return JSONResponse({"error": HTTPStatus(status).phrase, "status": status}, status)
