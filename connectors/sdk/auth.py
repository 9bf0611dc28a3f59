"""Upstream credentials a connector sends to its vendor, as ``httpx.Auth`` flows.

:class:`OAuth2ClientCredentials` is the OAuth 2.0 client credentials grant
(RFC 6749 section 4.4): the flow fetches an access token from the vendor's
token endpoint, caches it until shortly before it expires, and sends it as
``Authorization: Bearer``. A 401 from the API makes it fetch a new token once
and retry the request once; concurrent requests share one token fetch.

The flow yields the token request itself, so it runs through
:class:`~connectors.sdk.http.VendorClient` (and a plain ``httpx.AsyncClient``)
with the client's transport. Secrets never appear in ``repr`` or in the
errors it raises.
"""

from __future__ import annotations

import asyncio
import json
import time
from base64 import b64encode
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from connectors.sdk.errors import (
    ConfigurationError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from connectors.sdk.http import parse_retry_after

__all__ = ["AuthMethod", "OAuth2ClientCredentials"]

AuthMethod = Literal["basic", "post"]


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float


class OAuth2ClientCredentials(httpx.Auth):
    """Bearer tokens from an OAuth 2.0 token endpoint, fetched with client credentials.

    ``auth_method`` says how the client authenticates to the token endpoint:
    ``"basic"`` (HTTP Basic, RFC 6749 section 2.3.1) or ``"post"`` (``client_id``
    and ``client_secret`` form fields). ``scope``, ``audience`` and
    ``extra_params`` are added to the token request's form. A token without
    ``expires_in`` (Salesforce sends none) is kept ``default_lifetime``
    seconds; any token is refreshed ``refresh_margin`` seconds (at most half its
    lifetime) before it expires. ``source`` names the connector in errors;
    ``clock`` is a monotonic clock, replaceable in tests.
    """

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        auth_method: AuthMethod = "basic",
        source: str = "oauth2",
        default_lifetime: float = 3600.0,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url = httpx.URL(token_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"{source}: the token URL must be an absolute http(s) URL")
        if not client_id or not client_secret:
            raise ConfigurationError(f"{source}: client_id and client_secret are required")
        if auth_method not in ("basic", "post"):
            raise ConfigurationError(f"{source}: auth_method must be 'basic' or 'post'")
        if default_lifetime <= 0 or refresh_margin < 0:
            raise ConfigurationError(f"{source}: token lifetimes must be positive")
        self.token_url = str(url)
        self.client_id = client_id
        self._secret = client_secret
        self.auth_method = auth_method
        self.source = source
        self._form = {"grant_type": "client_credentials", **(extra_params or {})}
        if scope:
            self._form["scope"] = scope
        if audience:
            self._form["audience"] = audience
        self._default_lifetime = default_lifetime
        self._margin = refresh_margin
        self._clock = clock
        self._token: _Token | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"OAuth2ClientCredentials(token_url={self.token_url!r}, "
            f"client_id={self.client_id!r}, auth_method={self.auth_method!r})"
        )

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        # Without this, a sync client would silently send requests unauthenticated.
        raise RuntimeError("OAuth2ClientCredentials works with async clients only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._fresh()
        if token is None:
            async with self._guard():
                # Another request may have fetched one while this one waited.
                token = self._fresh()
                if token is None:
                    response = yield self._token_request(request)
                    token = await self._accept(response)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        async with self._guard():
            current = self._token
            if current is None or current.value == token:
                # Revoked or expired early: this request refreshes, the
                # ones that waited on the lock reuse what it fetched.
                self._token = None
                token_response = yield self._token_request(request)
                token = await self._accept(token_response)
            else:
                token = current.value
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def invalidate(self) -> None:
        """Forget the cached token: the next request fetches a new one."""
        self._token = None

    def _fresh(self) -> str | None:
        token = self._token
        if token is None or self._clock() >= token.refresh_at:
            return None
        return token.value

    def _guard(self) -> asyncio.Lock:
        # A lock is bound to the loop it first waits on; a connector reused
        # under another loop (tests, a restarted app) needs a new one.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _token_request(self, request: httpx.Request) -> httpx.Request:
        form = dict(self._form)
        headers = {"Accept": "application/json"}
        if self.auth_method == "basic":
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._secret
        return httpx.Request(
            "POST", self.token_url, data=form, headers=headers, extensions=request.extensions
        )

    async def _accept(self, response: httpx.Response) -> str:
        await response.aread()
        status = response.status_code
        if status >= 400:
            raise self._refused(response)
        body = _json(response.content)
        value = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(value, str) or not value:
            raise UpstreamProtocolError(
                f"{self.source} token endpoint answered without an access token",
                source=self.source,
                status=status,
            )
        lifetime = _seconds(body.get("expires_in")) or self._default_lifetime
        refresh_at = self._clock() + lifetime - min(self._margin, lifetime / 2)
        self._token = _Token(value, refresh_at)
        return value

    def _refused(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        detail = self._scrub(_oauth_error(response.content))
        if status == 429:
            return UpstreamRateLimited(
                f"{self.source} token endpoint rate limit reached",
                source=self.source,
                vendor_detail=detail,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500:
            return UpstreamUnavailable(
                f"{self.source} token endpoint answered HTTP {status}",
                source=self.source,
                status=status,
                vendor_detail=detail,
            )
        return UpstreamAuthError(
            f"{self.source} token endpoint refused the gateway's client credentials",
            source=self.source,
            status=status,
            vendor_detail=detail,
        )

    def _scrub(self, text: str | None) -> str | None:
        # The vendor's words are kept for logs; a vendor echoing the secret back must not leak it.
        if text is None:
            return None
        for secret in (self._secret, quote(self._secret, safe="")):
            text = text.replace(secret, "***")
        return text


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def _oauth_error(content: bytes) -> str | None:
    """``error: error_description`` from an RFC 6749 error body; nothing else is kept."""
    body = _json(content)
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, str):
        return None
    description = body.get("error_description")
    text = error + (f": {description}" if isinstance(description, str) else "")
    return text[:300]


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdecimal():
        value = int(value)
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return None
