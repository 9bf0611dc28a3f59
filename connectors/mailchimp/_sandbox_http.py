"""HTTP behaviour the Mailchimp sandbox shares across routes.

Problem-JSON errors, API-key checks, partial responses (``fields`` /
``exclude_fields``), ``X-Request-Id`` on every answer, and Mailchimp's
throttle: at most 10 simultaneous connections per account, 429 beyond that
(the API sends no rate-limit headers, and no ``Retry-After``).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MAX_COUNT",
    "MAX_SIMULTANEOUS",
    "BadParam",
    "ConcurrencyGate",
    "Endpoint",
    "GateStats",
    "authorized",
    "count_offset",
    "invalid",
    "json_response",
    "not_found",
    "problem",
    "project",
    "request_id",
]

Endpoint = Callable[[Request], Awaitable[Response]]

MAX_COUNT = 1000
MAX_SIMULTANEOUS = 10
_ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"
_SCOPE_KEY = "mailchimp.request_id"
_NAMESPACE = uuid.UUID("5c0ffee0-0000-4000-8000-00000000c360")


class BadParam(ValueError):
    """A query parameter Mailchimp would refuse: ``field`` and its message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def request_id(request: Request) -> str:
    value = request.scope.get(_SCOPE_KEY)
    return str(value) if value else str(uuid.uuid4())


def json_response(request: Request, body: Any, status: int = 200) -> Response:
    data = project(
        body, request.query_params.get("fields"), request.query_params.get("exclude_fields")
    )
    return Response(
        json.dumps(data, separators=(",", ":")),
        status_code=status,
        media_type="application/json; charset=utf-8",
    )


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": _ERRORS_DOC,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request_id(request),
    }
    if errors:
        body["errors"] = errors
    return Response(
        json.dumps(body), status_code=status, media_type="application/problem+json; charset=utf-8"
    )


def invalid(request: Request, exc: BadParam) -> Response:
    return problem(
        request,
        400,
        "Invalid Resource",
        "The resource submitted could not be validated. "
        "For field-specific details, see the 'errors' array.",
        [{"field": exc.field, "message": exc.message}],
    )


def not_found(request: Request) -> Response:
    return problem(request, 404, "Resource Not Found", "The requested resource could not be found.")


def authorized(request: Request, api_key: str) -> Response | None:
    """``None`` when the request carries the key (Basic password or Bearer), else a 401."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if not value.strip():
        return problem(request, 401, "API Key Missing", "Your request did not include an API key.")
    presented: str | None = None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        presented = decoded.partition(":")[2]
    elif scheme.lower() == "bearer":
        presented = value.strip()
    if presented != api_key:
        return problem(
            request,
            401,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        )
    return None


def count_offset(request: Request, default_count: int = 10) -> tuple[int, int]:
    """Mailchimp's ``count`` (1..1000) and ``offset`` (>= 0); :class:`BadParam` otherwise."""
    out: list[int] = []
    for name, default, low, high in (
        ("count", default_count, 1, MAX_COUNT),
        ("offset", 0, 0, None),
    ):
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            out.append(default)
            continue
        try:
            value = int(raw)
        except ValueError as exc:
            raise BadParam(name, "This value should be of type integer.") from exc
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise BadParam(name, f"This value should be {bound}.")
        out.append(value)
    return out[0], out[1]


# ------------------------------------------------------------ partial response
Tree = dict[str, "Tree"]


def _tree(raw: str | None) -> Tree | None:
    if not raw or not raw.strip():
        return None
    tree: Tree = {}
    for path in raw.split(","):
        node = tree
        parts = [p for p in path.strip().split(".") if p]
        for i, part in enumerate(parts):
            if i == len(parts) - 1:
                # An empty node means "the whole value"; it wins over deeper paths.
                node[part] = {}
                break
            child = node.get(part)
            if child is not None and not child:
                break  # a shorter path already asked for the whole value
            node = node.setdefault(part, {})
    return tree


def _keep(body: Any, tree: Tree) -> Any:
    if isinstance(body, list):
        return [_keep(item, tree) for item in body]
    if not isinstance(body, dict):
        return body
    return {k: (_keep(body[k], sub) if sub else body[k]) for k, sub in tree.items() if k in body}


def _drop(body: Any, tree: Tree) -> Any:
    if isinstance(body, list):
        return [_drop(item, tree) for item in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key not in tree:
            out[key] = value
        elif tree[key]:
            out[key] = _drop(value, tree[key])
    return out


def project(body: Any, fields: str | None, exclude_fields: str | None) -> Any:
    """Mailchimp partial response: dotted paths, applied through arrays."""
    keep, drop = _tree(fields), _tree(exclude_fields)
    if keep is not None:
        body = _keep(body, keep)
    if drop is not None:
        body = _drop(body, drop)
    return body


# -------------------------------------------------------- request id + throttle
@dataclass
class GateStats:
    in_flight: int = 0
    peak: int = 0
    throttled: int = 0


class ConcurrencyGate:
    """ASGI middleware: ``X-Request-Id`` on every answer; 429 past the simultaneous limit.

    The request id is deterministic (seed + sequence number), never wall-clock based.
    """

    def __init__(self, app: ASGIApp, *, seed: int, stats: GateStats, limit: int) -> None:
        self.app = app
        self.seed = seed
        self.stats = stats
        self.limit = limit
        self._sequence = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/_sandbox/" in scope["path"]:
            await self.app(scope, receive, send)
            return
        rid = str(uuid.uuid5(_NAMESPACE, f"{self.seed}:{next(self._sequence)}"))
        scope[_SCOPE_KEY] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        if self.stats.in_flight >= self.limit:
            self.stats.throttled += 1
            response = problem(
                Request(scope),
                429,
                "Too Many Requests",
                f"You have exceeded the limit of {self.limit} simultaneous connections.",
            )
            await response(scope, receive, send_with_id)
            return
        self.stats.in_flight += 1
        self.stats.peak = max(self.stats.peak, self.stats.in_flight)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.stats.in_flight -= 1
