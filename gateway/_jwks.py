"""The issuer's signing keys: OIDC discovery, then the JWKS, cached.

An unknown ``kid`` may mean the issuer rotated its keys, so it triggers a
refetch -- but at most one per cooldown window, and concurrent requests share
that one fetch (they queue on one lock and see the fresh keys when it is
released). Tokens with random ``kid`` values therefore cost the issuer at most
one JWKS request per window, however many arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

__all__ = ["FetchError", "KeyCache", "usable_url"]

logger = logging.getLogger("c360.auth")

# An IdP's discovery document or key set is a few KiB; anything bigger is not one.
_MAX_DOCUMENT_BYTES = 512 * 1024
# Key types each algorithm family needs; symmetric keys are never taken from a JWKS.
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class FetchError(Exception):
    """Discovery or the JWKS could not be fetched or made no sense."""


def usable_url(url: str, *, insecure_http: bool) -> bool:
    """https anywhere; plain http only on loopback unless explicitly allowed."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and (insecure_http or parts.hostname in _LOOPBACK)


def key_type_for(alg: str) -> str | None:
    return _KEY_TYPE.get(alg[:2])


class KeyCache:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        issuer: str,
        jwks_uri: str | None,
        cooldown: float,
        max_age: float,
        insecure_http: bool,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._configured_jwks_uri = jwks_uri
        self._jwks_uri = jwks_uri
        self._cooldown = cooldown
        self._max_age = max_age
        self._insecure_http = insecure_http
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._unnamed: list[Key] = []
        self._loaded_at: float | None = None
        self._attempted_at = float("-inf")
        self._attempts = 0
        self._lock = asyncio.Lock()
        self.fetches = 0  # JWKS requests sent, for metrics and tests

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    async def find(self, kid: str | None, alg: str) -> Key | None:
        """The key for ``kid`` (refetching the JWKS if allowed), or None."""
        loaded_at = self._loaded_at
        if loaded_at is not None and self._clock() - loaded_at < self._max_age:
            key = self._lookup(kid, alg)
            if key is not None:
                return key
        seen = self._attempts
        async with self._lock:
            # Whoever held the lock before us may have just fetched: if so, its
            # result is what we get -- that is the single flight.
            if self._attempts == seen and self._may_fetch():
                await self._refresh()
        return self._lookup(kid, alg)

    def _may_fetch(self) -> bool:
        now = self._clock()
        if now < self._attempted_at:  # the wall clock went back
            return True
        # Until the first key set arrives, retry sooner: nothing validates meanwhile.
        wait = self._cooldown if self.loaded else min(self._cooldown, 1.0)
        return now - self._attempted_at >= wait

    def _lookup(self, kid: str | None, alg: str) -> Key | None:
        kty = key_type_for(alg)
        if kid is not None:
            key = self._keys.get(kid)
            return key if key is not None and key.key_type == kty else None
        # No kid: acceptable only when exactly one published key fits the algorithm.
        fitting = [k for k in [*self._keys.values(), *self._unnamed] if k.key_type == kty]
        return fitting[0] if len(fitting) == 1 else None

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        self._attempts += 1
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            self.fetches += 1
            document = await self._get_json(self._jwks_uri)
            keys, unnamed = _parse_jwks(document)
        except FetchError as exc:
            if self._configured_jwks_uri is None:
                self._jwks_uri = None  # rediscover next time: the issuer may have moved it
            logger.warning("auth: cannot refresh the issuer's signing keys: %s", exc)
            return
        self._keys, self._unnamed = keys, unnamed
        self._loaded_at = self._clock()

    async def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        if document.get("issuer") != self._issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the document must name
            # exactly the issuer it was fetched for.
            raise FetchError(f"discovery at {url} names a different issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not usable_url(
            jwks_uri, insecure_http=self._insecure_http
        ):
            raise FetchError(f"discovery at {url} has no usable jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._client.stream(
                "GET", url, headers={"accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"GET {url} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_DOCUMENT_BYTES:
                        raise FetchError(
                            f"GET {url} answered more than {_MAX_DOCUMENT_BYTES} bytes"
                        )
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {url} failed: {type(exc).__name__}") from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise FetchError(f"GET {url} did not answer JSON") from exc
        if not isinstance(document, dict):
            raise FetchError(f"GET {url} did not answer a JSON object")
        return document


def _parse_jwks(document: dict[str, Any]) -> tuple[dict[str, Key], list[Key]]:
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise FetchError("the JWKS has no 'keys' list")
    keys: dict[str, Key] = {}
    unnamed: list[Key] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig" or any(p in entry for p in ("d", "p", "q")):
            continue  # encryption keys, and private keys nobody should publish
        try:
            key = import_key(entry)
        except (JoseError, ValueError, TypeError):
            # RFC 7517, section 5: skip keys we cannot use, keep the rest.
            continue
        kid = entry.get("kid")
        if isinstance(kid, str) and kid:
            keys[kid] = key
        else:
            unnamed.append(key)
    return keys, unnamed
