"""Auth settings: the issuer, what a valid token looks like, claims -> roles -> scopes.

Lives apart from ``gateway.auth`` so the validation code stays short; the
public names are re-exported there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway._jwks import usable_url
from gateway.config import ConfigError
from gateway.policy import BUILTIN_ROLE_SCOPES, SCOPES

__all__ = [
    "ALL_SCOPES",
    "BUILTIN_ROLES",
    "DEFAULT_MFA_AMR",
    "DEFAULT_ROLE_SCOPES",
    "AuthSettings",
    "auth_settings_from_mapping",
]

# The scopes and built-in roles are the policy's (gateway.policy decides field
# access from them); config can replace any role's scopes.
ALL_SCOPES = SCOPES
DEFAULT_ROLE_SCOPES: Mapping[str, frozenset[str]] = BUILTIN_ROLE_SCOPES
BUILTIN_ROLES = tuple(DEFAULT_ROLE_SCOPES)

# RFC 8176 authentication methods that are a factor beyond a password.
DEFAULT_MFA_AMR = frozenset(
    {"mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "iris", "retina", "vbm", "sms", "tel"}
)

# Asymmetric only: with an HMAC algorithm allowed, a published public key
# becomes a shared secret anybody can sign with.
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    issuer: str
    audience: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: float = 30.0
    jwks_uri: str | None = None  # skips discovery when set
    jwks_cooldown: float = 30.0
    jwks_max_age: float = 600.0
    http_timeout: float = 5.0
    # Plain http to a non-loopback issuer, e.g. an IdP container on a compose network.
    insecure_http: bool = False
    roles_claim: str = "roles"
    scope_claims: tuple[str, ...] = ("scope", "scp")
    tenant_claim: str | None = "tenant"
    client_id_claims: tuple[str, ...] = ("client_id", "azp")
    role_scopes: Mapping[str, frozenset[str]] = field(default_factory=lambda: DEFAULT_ROLE_SCOPES)
    mfa_amr: frozenset[str] = DEFAULT_MFA_AMR
    acr_levels: tuple[str, ...] = ()
    min_acr: str | None = None
    realm: str = "c360"

    def __post_init__(self) -> None:
        if not usable_url(self.issuer, insecure_http=self.insecure_http):
            raise ConfigError(
                "auth.issuer must be an https URL (http only for 127.0.0.1/localhost, "
                "or with auth.insecure_http: true)"
            )
        if self.jwks_uri is not None and not usable_url(
            self.jwks_uri, insecure_http=self.insecure_http
        ):
            raise ConfigError("auth.jwks_uri must be an https URL (same rules as auth.issuer)")
        if not self.audience or not all(isinstance(a, str) and a for a in self.audience):
            raise ConfigError("auth.audience must name at least one audience")
        if not self.algorithms:
            raise ConfigError("auth.algorithms must not be empty")
        refused = sorted(set(self.algorithms) - _ASYMMETRIC)
        if refused:
            raise ConfigError(
                f"auth.algorithms: {', '.join(refused)} not allowed; "
                f"choose from {', '.join(sorted(_ASYMMETRIC))}"
            )
        if not 0 <= self.leeway <= 300:
            raise ConfigError("auth.leeway must be between 0 and 300 seconds")
        if self.jwks_cooldown < 0 or self.jwks_max_age <= 0 or self.http_timeout <= 0:
            raise ConfigError("auth.jwks_cooldown, jwks_max_age and http_timeout must be positive")
        for role, scopes in self.role_scopes.items():
            unknown = sorted(set(scopes) - ALL_SCOPES)
            if unknown:
                raise ConfigError(
                    f"auth.roles.{role}: unknown scope(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(ALL_SCOPES))}"
                )
        if self.min_acr is not None and self.acr_levels and self.min_acr not in self.acr_levels:
            raise ConfigError("auth.mfa.min_acr must be one of auth.mfa.acr_levels")
        if not self.realm or any(c in self.realm for c in '"\\\r\n'):
            # It is quoted into the WWW-Authenticate header.
            raise ConfigError("auth.realm must be non-empty, without quotes or backslashes")

    def is_mfa(self, amr: Any, acr: Any) -> bool:
        """Whether the ``amr``/``acr`` claims show a second factor."""
        if isinstance(amr, list) and any(isinstance(m, str) and m in self.mfa_amr for m in amr):
            return True
        if self.min_acr is None or not isinstance(acr, str | int):
            return False
        level = str(acr)
        if self.acr_levels:
            levels = self.acr_levels
            return level in levels and levels.index(level) >= levels.index(self.min_acr)
        try:
            return float(level) >= float(self.min_acr)
        except ValueError:
            return level == self.min_acr


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(f"{where} must be a string or a list of strings")


def _number(section: Mapping[str, Any], name: str, default: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"auth.{name} must be a number of seconds")
    return float(value)


def _flag(section: Mapping[str, Any], name: str) -> bool:
    value = section.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"auth.{name} must be true or false")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    return value


def auth_settings_from_mapping(raw: Any) -> AuthSettings:
    """Read the top-level ``auth:`` section (``Settings.raw.get("auth")``)."""
    if raw is None:
        raise ConfigError("auth: section is required (at least issuer and audience)")
    section = _mapping(raw, "auth")
    known = {
        "issuer", "audience", "algorithms", "leeway", "jwks_uri", "jwks_cooldown",
        "jwks_max_age", "http_timeout", "insecure_http", "claims", "mfa", "roles", "realm",
    }  # fmt: skip
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"auth: unknown setting(s) {', '.join(map(str, unknown))}")
    issuer = section.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ConfigError("auth.issuer is required: the OIDC issuer URL")
    if section.get("audience") is None:
        raise ConfigError("auth.audience is required: the audience tokens must carry")
    jwks_uri = section.get("jwks_uri")
    if jwks_uri is not None and not isinstance(jwks_uri, str):
        raise ConfigError("auth.jwks_uri must be a URL")

    claims = _mapping(section.get("claims"), "auth.claims")
    roles_claim = claims.get("roles", "roles")
    tenant_claim = claims.get("tenant", "tenant")
    if not isinstance(roles_claim, str) or not roles_claim:
        raise ConfigError("auth.claims.roles must be a claim name or dotted path")
    if tenant_claim is not None and not isinstance(tenant_claim, str):
        raise ConfigError("auth.claims.tenant must be a claim name or dotted path")
    scope_claims = claims.get("scopes", ["scope", "scp"])
    scope_claims = () if scope_claims == [] else _strings(scope_claims, "auth.claims.scopes")

    mfa = _mapping(section.get("mfa"), "auth.mfa")
    min_acr = mfa.get("min_acr")
    if min_acr is not None and not isinstance(min_acr, str | int):
        raise ConfigError("auth.mfa.min_acr must be a string")

    role_scopes = dict(DEFAULT_ROLE_SCOPES)
    for role, scopes in _mapping(section.get("roles"), "auth.roles").items():
        role_scopes[str(role)] = frozenset(
            () if scopes in (None, []) else _strings(scopes, f"auth.roles.{role}")
        )

    return AuthSettings(
        issuer=issuer,
        audience=_strings(section["audience"], "auth.audience"),
        algorithms=_strings(section.get("algorithms", ["RS256", "ES256"]), "auth.algorithms"),
        leeway=_number(section, "leeway", 30.0),
        jwks_uri=jwks_uri,
        jwks_cooldown=_number(section, "jwks_cooldown", 30.0),
        jwks_max_age=_number(section, "jwks_max_age", 600.0),
        http_timeout=_number(section, "http_timeout", 5.0),
        insecure_http=_flag(section, "insecure_http"),
        roles_claim=roles_claim,
        scope_claims=scope_claims,
        tenant_claim=tenant_claim or None,
        client_id_claims=_strings(
            claims.get("client_id", ["client_id", "azp"]), "auth.claims.client_id"
        ),
        role_scopes=MappingProxyType(role_scopes),
        mfa_amr=frozenset(_strings(mfa.get("amr", sorted(DEFAULT_MFA_AMR)), "auth.mfa.amr")),
        acr_levels=_strings(mfa.get("acr_levels", []), "auth.mfa.acr_levels")
        if mfa.get("acr_levels")
        else (),
        min_acr=None if min_acr is None else str(min_acr),
        realm=str(section.get("realm", "c360")),
    )
