"""The Zendesk connector's HTTP plumbing: error bodies, auth, same-origin paging."""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.sdk import ErrorPolicy, PageRequest, UpstreamProtocolError
from connectors.zendesk import mapping

__all__ = ["SameOriginNextPage", "ZendeskAuth", "ZendeskErrorPolicy"]


class ZendeskErrorPolicy(ErrorPolicy):
    """Reads Zendesk's error bodies for logs.

    Shapes seen: ``{"error": "RecordNotFound", "description": "Not found"}``,
    ``{"error": "Couldn't authenticate you"}``, ``{"error": {"title", "message"}}``
    and the newer ``{"errors": [{"code", "title", "detail"}]}``; ``details`` may
    carry per-field messages.
    """

    def vendor_detail(self, response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            return super().vendor_detail(response)
        return _describe(body) or super().vendor_detail(response)


def _describe(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, str):
        parts.append(error)
    elif isinstance(error, Mapping):
        parts.extend(str(error[k]) for k in ("title", "message") if error.get(k))
    if isinstance(body.get("description"), str):
        parts.append(body["description"])
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping):
                parts.extend(str(item[k]) for k in ("code", "title", "detail") if item.get(k))
    if body.get("details"):
        parts.append(json.dumps(body["details"], default=str, sort_keys=True))
    return ": ".join(parts)[:500] or None


class ZendeskAuth(httpx.Auth):
    def __init__(self, scheme: str, secret: str) -> None:
        self._scheme = scheme
        self._header = f"{scheme} {secret}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never print the secret
        return f"ZendeskAuth({self._scheme}, ***)"


@dataclass(frozen=True, slots=True)
class SameOriginNextPage:
    """Follow Zendesk's absolute ``next_page`` URL, but only back to the same
    Zendesk: the client attaches credentials to every request it sends."""

    base: httpx.URL

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        nxt = mapping.next_page_of(body)
        if nxt is None:
            return None
        url = httpx.URL(nxt)
        same = (url.scheme, url.host, url.port) == (
            self.base.scheme,
            self.base.host,
            self.base.port,
        )
        if not same or not url.path.startswith(self.base.path):
            raise UpstreamProtocolError(
                "zendesk pointed next_page outside the configured base URL",
                source=mapping.SOURCE,
                vendor_detail=nxt[:200],
            )
        return PageRequest(nxt, None)
