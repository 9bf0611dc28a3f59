"""Stripe's HTTP conventions for the sandbox: error bodies, API keys, paging, headers.

Error answers are ``{"error": {message, type, code?, doc_url?, param?}}``; list
paging is ``limit`` (1-100, default 10) with ``starting_after`` /
``ending_before``; search paging is an opaque ``page`` cursor; every response
carries ``Request-Id`` and ``Stripe-Version``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from typing import Any

from starlette.datastructures import MutableHeaders, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.stripe._objects import JSON

__all__ = [
    "DEFAULT_VERSION",
    "PAGING",
    "VERSION",
    "PageCursors",
    "Reject",
    "StripeHeaders",
    "check_params",
    "expand_of",
    "limit_of",
    "list_page",
    "masked_key",
    "presented_key",
]

DEFAULT_VERSION = "2024-06-20"
VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(?:\.[a-z]+)?")
PAGING = frozenset({"limit", "starting_after", "ending_before"})
_EXPAND_KEY = re.compile(r"expand(?:\[\d*\])?")
_KEY_PREFIX = re.compile(r"(?:sk|rk|pk)_(?:test|live)_")


class Reject(Exception):
    """A Stripe error answer, raised from deep inside a handler."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "type": "invalid_request_error"}
        if code is not None:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param is not None:
            self.body["param"] = param

    def response(self) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="Stripe"'} if self.status == 401 else None
        return JSONResponse({"error": self.body}, status_code=self.status, headers=headers)


def masked_key(key: str) -> str:
    """The key as Stripe echoes it in a 401: prefix and last four characters."""
    prefix = match.group(0) if (match := _KEY_PREFIX.match(key)) else ""
    rest = key[len(prefix) :]
    tail = rest[-4:] if len(rest) > 8 else ""
    return prefix + "*" * (len(rest) - len(tail)) + tail


def presented_key(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return value.strip() or None
        return decoded.partition(":")[0] or None
    return None


def check_params(params: QueryParams, allowed: frozenset[str]) -> None:
    for key in params:
        if key not in allowed and not _EXPAND_KEY.fullmatch(key):
            raise Reject(
                400, f"Received unknown parameter: {key}", code="parameter_unknown", param=key
            )


def expand_of(params: QueryParams, allowed: frozenset[str]) -> set[str]:
    wanted = {value for key, value in params.multi_items() if _EXPAND_KEY.fullmatch(key)}
    unknown = sorted(wanted - allowed)
    if unknown:
        raise Reject(400, f"This property cannot be expanded ({unknown[0]}).", param="expand")
    return wanted


def limit_of(params: QueryParams) -> int:
    raw = params.get("limit")
    if raw is None:
        return 10
    try:
        value = int(raw)
    except ValueError:
        raise Reject(
            400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param="limit"
        ) from None
    if not 1 <= value <= 100:
        bound = "greater than or equal to 1" if value < 1 else "less than or equal to 100"
        raise Reject(400, f"This value must be {bound}.", param="limit")
    return value


def list_page(params: QueryParams, objects: list[JSON], noun: str) -> tuple[list[JSON], bool]:
    """``limit`` objects after ``starting_after`` or before ``ending_before``."""
    limit = limit_of(params)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise Reject(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameters_exclusive",
            param="ending_before",
        )
    cursor = after or before
    if not cursor:
        return objects[:limit], len(objects) > limit
    index = next((i for i, o in enumerate(objects) if o["id"] == cursor), None)
    if index is None:
        param = "starting_after" if after else "ending_before"
        raise Reject(400, f"No such {noun}: '{cursor}'", code="resource_missing", param=param)
    if after:
        return objects[index + 1 : index + 1 + limit], index + 1 + limit < len(objects)
    start = max(0, index - limit)
    return objects[start:index], start > 0


class PageCursors:
    """Opaque search cursors: an offset bound to (resource, query) by a digest."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def _digest(self, resource: str, query: str, offset: int) -> str:
        text = f"{self._seed}:{resource}:{query}:{offset}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def encode(self, resource: str, query: str, offset: int) -> str:
        raw = f"{offset}:{self._digest(resource, query, offset)}".encode()
        return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, resource: str, query: str, token: str | None) -> int:
        if token is None:
            return 0
        try:
            body = token.removeprefix("page_")
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
            offset_text, _, digest = raw.partition(":")
            offset = int(offset_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            offset, digest = -1, ""
        if offset < 0 or digest != self._digest(resource, query, offset):
            raise Reject(400, f"Invalid page: {token!r} is not a page of this query.", param="page")
        return offset


class StripeHeaders:
    """Adds ``Request-Id`` and ``Stripe-Version`` to every response."""

    def __init__(self, app: ASGIApp, seed: int) -> None:
        self.app = app
        self._seed = seed
        self._count = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        number = next(self._count)
        request_id = "req_" + hashlib.sha256(f"{self._seed}:{number}".encode()).hexdigest()[:14]
        asked = Request(scope).headers.get("stripe-version", "")
        version = asked if VERSION.fullmatch(asked) else DEFAULT_VERSION

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Request-Id"] = request_id
                headers["Stripe-Version"] = version
            await send(message)

        await self.app(scope, receive, send_with_headers)
