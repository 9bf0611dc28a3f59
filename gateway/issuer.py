"""A development token issuer, so the demo needs no IdP.

It is a real, small OIDC issuer over HTTP -- a discovery document, a JWKS and a
token endpoint -- so the gateway validates its tokens on exactly the code path
it uses for Keycloak, Auth0 or Entra ID::

    GET  /.well-known/openid-configuration
    GET  /jwks.json
    POST /token     form or JSON: role, mfa, subject, ttl, tenant
                    -> {"access_token": <RS256 JWT>, "token_type": "Bearer", ...}

Anyone who can reach it can mint an admin token: serve it on 127.0.0.1, for
the demo and tests only. ``c360 token`` (:func:`token_main`) asks it for one.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.auth import BUILTIN_ROLES, DEFAULT_ROLE_SCOPES

__all__ = ["DevIssuer", "fetch_token", "token_main", "token_parser"]

Algorithm = Literal["RS256", "ES256"]
_DISCOVERY = "/.well-known/openid-configuration"
_MAX_TTL = 24 * 3600
_CLAIMS = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "roles",
    "scope",
    "amr",
    "client_id",
    "tenant",
]


@dataclass(frozen=True, slots=True)
class _Published:
    key: RSAKey | ECKey
    retire_at: float | None = None  # no longer published after this time


def _new_key(algorithm: Algorithm) -> RSAKey | ECKey:
    params: KeyParameters = {"use": "sig", "alg": algorithm}
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters=params, auto_kid=True)
    return RSAKey.generate_key(2048, parameters=params, auto_kid=True)


class DevIssuer:
    """Signing keys, a token minter and the starlette app serving them (``.app``)."""

    def __init__(
        self,
        issuer_url: str | None = None,
        *,
        audience: str = "c360",
        algorithm: Algorithm = "RS256",
        tenant: str = "demo",
        client_id: str = "c360-dev",
        default_ttl: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # When None, the URL the issuer is reached at (minus the endpoint path) is
        # used, so it also works mounted under a prefix or on a port picked later.
        self.issuer_url = issuer_url.rstrip("/") if issuer_url else None
        self.audience = audience
        self.algorithm: Algorithm = algorithm
        self.tenant = tenant
        self.client_id = client_id
        self.default_ttl = default_ttl
        self._clock = clock
        self._lock = threading.Lock()  # rotate() may run on another thread than the server
        self._published = [_Published(_new_key(algorithm))]
        # Requests served per endpoint ("discovery", "jwks", "token"): tests count JWKS fetches.
        self.requests: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route(_DISCOVERY, self._discovery, methods=["GET"]),
                Route("/jwks.json", self._jwks, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    @property
    def kid(self) -> str:
        """The ``kid`` new tokens are signed with."""
        kid = self._published[-1].key.kid
        assert kid is not None  # auto_kid
        return kid

    def rotate(self, *, grace: float = 600.0, algorithm: Algorithm | None = None) -> str:
        """Sign with a new key from now on; keep publishing the old ones for ``grace``
        seconds so tokens they signed stay valid until then. Returns the new kid."""
        now = self._clock()
        with self._lock:
            kept = [
                _Published(p.key, p.retire_at if p.retire_at is not None else now + grace)
                for p in self._published
            ]
            self._published = [*kept, _Published(_new_key(algorithm or self.algorithm))]
            if algorithm is not None:
                self.algorithm = algorithm
        return self.kid

    def jwks(self) -> dict[str, Any]:
        """The public key set, without keys past their grace period."""
        now = self._clock()
        with self._lock:
            self._published = [
                p for p in self._published if p.retire_at is None or p.retire_at > now
            ]
            return {"keys": [p.key.as_dict(private=False) for p in self._published]}

    def discovery(self, issuer: str) -> dict[str, Any]:
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks.json",
            "token_endpoint": f"{issuer}/token",
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "grant_types_supported": ["urn:c360:dev-token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": sorted({s for v in DEFAULT_ROLE_SCOPES.values() for s in v}),
            "claims_supported": list(_CLAIMS),
            "c360_roles_supported": list(BUILTIN_ROLES),
        }

    def mint_token(
        self,
        role: str | Sequence[str],
        *,
        mfa: bool = False,
        subject: str | None = None,
        ttl: int | None = None,
        tenant: str | None = None,
        audience: str | list[str] | None = None,
        issuer: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token for ``role`` (one built-in role, or several).

        ``extra_claims`` overrides claims; a value of None removes that claim
        (tests use this to build expired or incomplete tokens).
        """
        roles = [role] if isinstance(role, str) else list(role)
        unknown = [r for r in roles if r not in DEFAULT_ROLE_SCOPES]
        if unknown or not roles:
            raise ValueError(f"unknown role(s) {unknown}; built-in: {', '.join(BUILTIN_ROLES)}")
        iss = issuer or self.issuer_url
        if iss is None:
            raise ValueError("the issuer URL is not known yet: pass issuer= or set issuer_url")
        now = int(self._clock())
        scopes = sorted({s for r in roles for s in DEFAULT_ROLE_SCOPES[r]})
        claims: dict[str, Any] = {
            "iss": iss,
            "aud": audience or self.audience,
            "sub": subject or f"dev-{roles[0].replace('_', '-')}",
            "iat": now,
            "nbf": now,
            "exp": now + (self.default_ttl if ttl is None else ttl),
            "jti": secrets.token_urlsafe(12),
            "roles": roles,
            "scope": " ".join(scopes),
            "amr": ["pwd", "otp", "mfa"] if mfa else ["pwd"],
            "client_id": self.client_id,
            "tenant": tenant or self.tenant,
        }
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        with self._lock:
            key = self._published[-1].key
            alg = self.algorithm
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims, key)

    def _issuer_for(self, request: Request, endpoint: str) -> str:
        if self.issuer_url:
            return self.issuer_url
        return str(request.url.replace(query="")).removesuffix(endpoint)

    async def _discovery(self, request: Request) -> Response:
        self.requests["discovery"] += 1
        return JSONResponse(self.discovery(self._issuer_for(request, _DISCOVERY)))

    async def _jwks(self, _: Request) -> Response:
        self.requests["jwks"] += 1
        return JSONResponse(self.jwks(), headers={"cache-control": "max-age=300"})

    async def _token(self, request: Request) -> Response:
        self.requests["token"] += 1
        try:
            form = await _form(request)
            role = form.get("role") or "support_agent"
            raw_ttl = form.get("ttl")
            ttl = None if raw_ttl in (None, "") else int(raw_ttl)
            if ttl is not None and not 1 <= ttl <= _MAX_TTL:
                raise ValueError(f"ttl must be between 1 and {_MAX_TTL} seconds")
            token = self.mint_token(
                role.split() if " " in role else role,
                mfa=str(form.get("mfa", "")).lower() in ("1", "true", "yes", "on"),
                subject=form.get("subject") or None,
                tenant=form.get("tenant") or None,
                ttl=ttl,
                issuer=self._issuer_for(request, "/token"),
            )
        except ValueError as exc:
            return JSONResponse(
                {"error": "invalid_request", "error_description": str(exc)}, status_code=400
            )
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.default_ttl if ttl is None else ttl,
            },
            headers={"cache-control": "no-store"},
        )


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}
    # Parsed by hand: starlette's request.form() needs python-multipart for this too.
    pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in pairs.items()}


def fetch_token(
    role: str,
    *,
    issuer: str | None = None,
    gateway: str | None = None,
    mfa: bool = False,
    subject: str | None = None,
    ttl: int | None = None,
    timeout: float = 10.0,
) -> str:
    """Ask a running dev issuer for a token. Give the ``issuer`` URL, or a
    ``gateway`` URL whose protected-resource metadata (RFC 9728) names it."""
    with httpx.Client(timeout=timeout) as client:
        if issuer is None:
            if gateway is None:
                raise ValueError("give an issuer or a gateway URL")
            meta = client.get(f"{gateway.rstrip('/')}/.well-known/oauth-protected-resource")
            meta.raise_for_status()
            issuer = str(meta.json()["authorization_servers"][0])
        discovery = client.get(f"{issuer.rstrip('/')}{_DISCOVERY}")
        discovery.raise_for_status()
        form = {"role": role, "mfa": "true" if mfa else "false"}
        if subject:
            form["subject"] = subject
        if ttl is not None:
            form["ttl"] = str(ttl)
        answer = client.post(str(discovery.json()["token_endpoint"]), data=form)
        if answer.status_code == 400:
            raise ValueError(str(answer.json().get("error_description", "refused")))
        answer.raise_for_status()
        return str(answer.json()["access_token"])


def token_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c360 token", description=token_main.__doc__)
    parser.add_argument(
        "--role",
        required=True,
        choices=BUILTIN_ROLES,
        help=f"the built-in role the token carries (required): {', '.join(BUILTIN_ROLES)}",
    )
    parser.add_argument(
        "--mfa", action="store_true", help="as if signed in with a second factor (default: off)"
    )
    parser.add_argument("--subject", help="the token's sub (default: dev-<role>)")
    parser.add_argument("--ttl", type=int, help="lifetime in seconds (default: 3600)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--gateway",
        default="http://127.0.0.1:8000",
        help="a running `c360 demo` gateway, which names its issuer (default: %(default)s)",
    )
    where.add_argument("--issuer", help="the dev issuer's URL itself (default: ask --gateway)")
    return parser


def token_main(argv: Sequence[str] | None = None) -> int:
    """``c360 token --role R [--mfa] [--gateway URL | --issuer URL]``: print one token."""
    args = token_parser().parse_args(argv)
    try:
        token = fetch_token(
            args.role,
            issuer=args.issuer,
            gateway=None if args.issuer else args.gateway,
            mfa=args.mfa,
            subject=args.subject,
            ttl=args.ttl,
        )
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        print(f"c360 token: cannot get a token: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0
