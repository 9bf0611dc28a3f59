"""Bearer JWTs from any OIDC issuer -> :class:`Principal`.

The gateway takes an issuer URL, reads its discovery document and JWKS, and
validates each token against an explicit list of asymmetric algorithms, with
``exp``, ``iss`` and ``aud`` required and a small leeway for clock skew. Claims
become a Principal through config (a top-level ``auth:`` section)::

    auth:
      issuer: https://idp.example.com/realms/acme
      audience: c360                 # or a list; the token needs one of them
      algorithms: [RS256, ES256]     # asymmetric only; HS* and none are refused
      leeway: 30                     # seconds of clock skew allowed
      jwks_cooldown: 30              # at most one JWKS refetch per this many seconds
      jwks_max_age: 600              # refetch known keys this often (drops revoked ones)
      claims:
        roles: realm_access.roles    # dotted path; a list or a space-separated string
        scopes: [scope, scp]         # token scopes granted as they are; [] to ignore them
        tenant: tenant
        client_id: [client_id, azp]
      mfa:
        amr: [mfa, otp, hwk]         # any of these in `amr` means MFA
        acr_levels: [bronze, silver, gold]
        min_acr: silver              # or an `acr` at/above this level
      roles:                         # role -> scopes; replaces that role's default
        support_agent: [crm:read, tickets:read, pii:read]

Failures raise :class:`AuthError` with a reason code (``missing_token``,
``invalid_token``, ``expired``, ``not_yet_valid``, ``bad_issuer``,
``bad_audience``, ``unknown_key``, ``bad_algorithm``, ``missing_claim``; 503
``issuer_unavailable`` when no keys could ever be fetched). Messages are fixed
per code: they never echo the token, its claims or any key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
from cachetools import TLRUCache
from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwt import JWTClaimsRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway._auth_config import (
    ALL_SCOPES,
    BUILTIN_ROLES,
    DEFAULT_MFA_AMR,
    DEFAULT_ROLE_SCOPES,
    AuthSettings,
    auth_settings_from_mapping,
)
from gateway._jwks import KeyCache

__all__ = [
    "ALL_SCOPES",
    "BUILTIN_ROLES",
    "DEFAULT_MFA_AMR",
    "DEFAULT_ROLE_SCOPES",
    "AuthError",
    "AuthSettings",
    "Authenticator",
    "Principal",
    "auth_settings_from_mapping",
    "principal_or_response",
    "resource_metadata",
    "unauthorized_response",
]

logger = logging.getLogger("c360.auth")

# Real access tokens are a few KiB; refuse to parse anything far bigger.
_MAX_TOKEN_CHARS = 16 * 1024
# A token seen valid is trusted again, without another signature check, for at
# most this long (and never past its exp): well inside jwks_max_age, the time
# a revoked key may already live on in the key cache.
_VERIFIED_FOR = 60.0
_VERIFIED_MAX = 4096

_DESCRIPTIONS = {
    "missing_token": "a bearer token is required",
    "invalid_token": "the token is malformed or its signature does not verify",
    "expired": "the token has expired",
    "not_yet_valid": "the token is not valid yet",
    "bad_issuer": "the token was issued by an issuer this gateway does not trust",
    "bad_audience": "the token was not issued for this gateway",
    "unknown_key": "the token was signed with a key the issuer does not publish",
    "bad_algorithm": "the token's signing algorithm is not allowed",
    "missing_claim": "the token lacks a required claim (exp, iss, aud, sub)",
    "issuer_unavailable": "the token issuer's keys cannot be fetched right now",
}


class AuthError(Exception):
    """The request is not authenticated; ``code`` says why, safely."""

    def __init__(self, code: str, status: int = 401) -> None:
        self.code = code
        self.status = status
        self.description = _DESCRIPTIONS.get(code, "authentication failed")
        super().__init__(f"{code}: {self.description}")

    def challenge(self, realm: str = "c360") -> str:
        """The ``WWW-Authenticate`` value (RFC 6750, section 3)."""
        if self.code == "missing_token":
            # No credentials at all: RFC 6750 says to send no error code.
            return f'Bearer realm="{realm}"'
        return (
            f'Bearer realm="{realm}", error="invalid_token", error_description="{self.description}"'
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the policy sees it."""

    subject: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None
    mfa: bool = False
    client_id: str | None = None
    # The validated claims, read-only; left out of repr so logs never print them.
    claims: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )


class Authenticator:
    """Validates bearer tokens against one issuer; one per gateway process."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=settings.http_timeout, follow_redirects=False
        )
        self._clock = clock
        # sha256(token) -> (principal, trusted until): an RS256 check is a
        # tenth of a cached query's CPU, and clients resend one token for
        # minutes. Keyed by digest so the cache never holds bearer tokens.
        self._verified: TLRUCache[bytes, tuple[Principal, float]] = TLRUCache(
            maxsize=_VERIFIED_MAX, ttu=lambda _key, value, _now: value[1], timer=clock
        )
        self._keys = KeyCache(
            self._client,
            issuer=settings.issuer,
            jwks_uri=settings.jwks_uri,
            cooldown=settings.jwks_cooldown,
            max_age=settings.jwks_max_age,
            insecure_http=settings.insecure_http,
            clock=clock,
        )

    @property
    def jwks_fetches(self) -> int:
        """JWKS requests sent so far."""
        return self._keys.fetches

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal for an ``Authorization`` header value, or :class:`AuthError`."""
        scheme, _, token = (authorization_header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("missing_token")
        token = token.strip()
        if not token:
            raise AuthError("missing_token")
        return await self.verify(token)

    async def verify(self, token: str) -> Principal:
        """Validate one compact JWT and map its claims to a :class:`Principal`."""
        if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            raise AuthError("invalid_token")
        digest = hashlib.sha256(token.encode("ascii")).digest()
        seen = self._verified.get(digest)
        if seen is not None:
            return seen[0]
        principal = await self._verify_signed(token)
        exp = principal.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(self._clock() + _VERIFIED_FOR, exp + self.settings.leeway)
            self._verified[digest] = (principal, until)
        return principal

    async def _verify_signed(self, token: str) -> Principal:
        try:
            signed = jws.extract_compact(token.encode("ascii"))
            header = signed.headers()
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthError("invalid_token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise AuthError("bad_algorithm")
        kid = header.get("kid")
        if (kid is not None and not isinstance(kid, str)) or "crit" in header:
            # No IdP sets critical extensions on access tokens; refusing them
            # beats half-understanding them.
            raise AuthError("invalid_token")
        key = await self._keys.find(kid, alg)
        if key is None:
            if not self._keys.loaded:
                raise AuthError("issuer_unavailable", status=503)
            raise AuthError("unknown_key")
        try:
            valid = jws.validate_compact(signed, key, algorithms=[alg])
            claims = json.loads(signed.payload or b"")
        except (JoseError, ValueError, TypeError) as exc:
            raise AuthError("invalid_token") from exc
        if not valid or not isinstance(claims, dict):
            raise AuthError("invalid_token")
        self._check_claims(claims)
        return self._principal(claims)

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        registry = JWTClaimsRegistry(
            now=int(now),
            leeway=math.ceil(self.settings.leeway),
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "values": list(self.settings.audience)},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except MissingClaimError as exc:
            raise AuthError("missing_claim") from exc
        except ExpiredTokenError as exc:
            raise AuthError("expired") from exc
        except ClaimError as exc:
            raise AuthError(_claim_code(exc.claim, claims, now + self.settings.leeway)) from exc

    def _principal(self, claims: dict[str, Any]) -> Principal:
        s = self.settings
        client_id = next(
            (v for c in s.client_id_claims if isinstance(v := claims.get(c), str) and v), None
        )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            # Client-credentials tokens from some IdPs carry no `sub`: the client is the caller.
            if client_id is None:
                raise AuthError("missing_claim")
            subject = client_id
        roles = frozenset(_strings(_at_path(claims, s.roles_claim)))
        scopes = set[str]()
        for claim in s.scope_claims:
            scopes.update(_strings(claims.get(claim)))
        for role in roles:
            scopes.update(s.role_scopes.get(role, ()))
        tenant = _at_path(claims, s.tenant_claim) if s.tenant_claim else None
        return Principal(
            subject=subject,
            roles=roles,
            scopes=frozenset(scopes),
            tenant=str(tenant)
            if isinstance(tenant, str | int) and not isinstance(tenant, bool) and tenant != ""
            else None,
            mfa=s.is_mfa(claims.get("amr"), claims.get("acr")),
            client_id=client_id,
            claims=MappingProxyType(claims),
        )


def _claim_code(claim: str, claims: Mapping[str, Any], latest: float) -> str:
    if claim == "iss":
        return "bad_issuer"
    if claim == "aud":
        return "bad_audience"
    value = claims.get(claim)
    if claim in ("nbf", "iat") and isinstance(value, int | float) and value > latest:
        return "not_yet_valid"
    return "invalid_token"


def _at_path(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str) and v]
    return []


def unauthorized_response(error: AuthError, *, realm: str = "c360") -> JSONResponse:
    """The GraphQL-shaped 401 (or 503) for an :class:`AuthError`."""
    unavailable = error.status == 503
    body = {
        "errors": [
            {
                "message": error.description,
                "extensions": {
                    "code": "AUTH_UNAVAILABLE" if unavailable else "UNAUTHENTICATED",
                    "reason": error.code,
                },
            }
        ]
    }
    headers = {"Retry-After": "1"} if unavailable else {"WWW-Authenticate": error.challenge(realm)}
    return JSONResponse(body, status_code=error.status, headers=headers)


async def principal_or_response(
    authenticator: Authenticator, request: Request
) -> Principal | Response:
    """The request's principal, or the response to send instead of serving it."""
    try:
        return await authenticator.authenticate(request.headers.get("authorization"))
    except AuthError as exc:
        logger.info("auth: rejected a request: %s", exc.code)
        return unauthorized_response(exc, realm=authenticator.settings.realm)


def resource_metadata(settings: AuthSettings, resource: str) -> dict[str, Any]:
    """OAuth 2.0 Protected Resource Metadata (RFC 9728) for this gateway: how a
    client (``c360 token --gateway URL``) finds the issuer to get a token from."""
    return {
        "resource": resource,
        "authorization_servers": [settings.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": sorted(ALL_SCOPES),
    }
