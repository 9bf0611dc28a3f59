"""Bearer-token validation against the dev issuer served on 127.0.0.1: token
attacks, the JWKS refetch budget, key rotation, claim mapping, config."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey, import_key
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sdk.testing.server import free_port, serve_in_thread
from gateway.auth import (
    ALL_SCOPES,
    BUILTIN_ROLES,
    Authenticator,
    AuthError,
    AuthSettings,
    Principal,
    auth_settings_from_mapping,
    principal_or_response,
    resource_metadata,
    unauthorized_response,
)
from gateway.config import ConfigError
from gateway.issuer import DevIssuer, fetch_token, token_main

COOLDOWN = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def issuer():
    dev = DevIssuer()
    with serve_in_thread(dev.app) as url:
        dev.issuer_url = url
        yield dev


@pytest.fixture
def clock():
    return Clock()


def settings_for(url: str, **overrides) -> AuthSettings:
    return AuthSettings(issuer=url, audience=("c360",), jwks_cooldown=COOLDOWN, **overrides)


@pytest.fixture
async def auth(issuer, clock):
    authenticator = Authenticator(settings_for(issuer.issuer_url), clock=clock)
    yield authenticator
    await authenticator.aclose()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def forge(header: dict, claims: dict, sign=lambda signing_input: b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


ATTACKER = RSAKey.generate_key(2048, parameters={"kid": "attacker"})


def with_attacker_key(claims: dict, kid: str | None) -> str:
    header = {"alg": "RS256", **({"kid": kid} if kid is not None else {})}
    return jwt.encode(header, claims, ATTACKER)


def valid_claims(issuer: DevIssuer, **changes) -> dict:
    return segments(issuer.mint_token("marketing", extra_claims=changes))[1]


def public_pem(issuer: DevIssuer) -> bytes:
    return import_key(issuer.jwks()["keys"][-1]).as_pem(private=False)


# -- the attacks ---------------------------------------------------------------------


def alg_none(issuer):
    return forge({"alg": "none", "kid": issuer.kid, "typ": "JWT"}, valid_claims(issuer))


def hs256_with_public_key(issuer):
    # The classic confusion: HMAC "signed" with the RSA public key as the secret.
    key = public_pem(issuer)
    return forge(
        {"alg": "HS256", "kid": issuer.kid},
        valid_claims(issuer, roles=["admin"]),
        lambda data: hmac.new(key, data, hashlib.sha256).digest(),
    )


def expired(issuer):
    return issuer.mint_token("admin", extra_claims={"exp": int(time.time()) - 120})


def not_yet_valid(issuer):
    return issuer.mint_token("admin", extra_claims={"nbf": int(time.time()) + 300})


def issued_in_the_future(issuer):
    return issuer.mint_token("admin", extra_claims={"iat": int(time.time()) + 300})


def wrong_issuer(issuer):
    return issuer.mint_token("admin", issuer="https://evil.example")


def wrong_audience(issuer):
    return issuer.mint_token("admin", audience="some-other-api")


def unknown_kid(issuer):
    return with_attacker_key(valid_claims(issuer), "not-published")


def real_kid_wrong_key(issuer):
    return with_attacker_key(valid_claims(issuer, roles=["admin"]), issuer.kid)


def tampered_payload(issuer):
    header, payload, signature = issuer.mint_token("marketing").split(".")
    claims = segments(f"{header}.{payload}.{signature}")[1]
    claims["roles"] = ["admin"]
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def missing_exp(issuer):
    return issuer.mint_token("admin", extra_claims={"exp": None})


def missing_aud(issuer):
    return issuer.mint_token("admin", extra_claims={"aud": None})


def not_a_jwt(issuer):
    return "not-a-jwt"


def crit_header(issuer):
    # An extension the gateway would have to understand to read the token right.
    header = {"alg": "RS256", "kid": issuer.kid, "crit": ["x-ext"], "x-ext": 1}
    return forge(header, valid_claims(issuer), lambda data: b"\x00" * 256)


ATTACKS = [
    (alg_none, "bad_algorithm"),
    (hs256_with_public_key, "bad_algorithm"),
    (expired, "expired"),
    (not_yet_valid, "not_yet_valid"),
    (issued_in_the_future, "not_yet_valid"),
    (wrong_issuer, "bad_issuer"),
    (wrong_audience, "bad_audience"),
    (unknown_kid, "unknown_key"),
    (real_kid_wrong_key, "invalid_token"),
    (tampered_payload, "invalid_token"),
    (missing_exp, "missing_claim"),
    (missing_aud, "missing_claim"),
    (not_a_jwt, "invalid_token"),
    (crit_header, "invalid_token"),
]


@pytest.mark.parametrize(("attack", "code"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
async def test_token_attacks_are_rejected_with_a_reason_that_leaks_nothing(
    issuer, auth, attack, code
):
    token = attack(issuer)
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(f"Bearer {token}")
    error = caught.value
    assert (error.code, error.status) == (code, 401)

    response = unauthorized_response(error)
    assert response.status_code == 401
    body = json.loads(response.body)
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "reason": code}
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="c360", error="invalid_token", error_description="')
    modulus = issuer.jwks()["keys"][-1]["n"]
    for text in (str(error), response.body.decode(), challenge):
        for part in [*token.split("."), modulus[:40]]:
            assert len(part) < 8 or part not in text


async def test_a_valid_token_maps_to_a_principal(issuer, auth):
    principal = await auth.authenticate("Bearer " + issuer.mint_token("billing_admin"))
    assert principal == Principal(
        subject="dev-billing-admin",
        roles=frozenset({"billing_admin"}),
        scopes=frozenset(
            {"customers:read", "crm:read", "billing:read", "pii:read", "pii:sensitive"}
        ),
        tenant="demo",
        mfa=False,
        client_id="c360-dev",
    )
    assert principal.claims["iss"] == issuer.issuer_url
    assert "claims" not in repr(principal)


@pytest.mark.parametrize("role", BUILTIN_ROLES)
async def test_every_builtin_role_gets_its_scopes_and_mfa_from_amr(issuer, auth, role):
    principal = await auth.verify(issuer.mint_token(role, mfa=True))
    assert principal.roles == {role} and principal.mfa
    assert principal.scopes <= ALL_SCOPES and "crm:read" in principal.scopes
    assert ("audit:read" in principal.scopes) == (role == "admin")


async def test_es256_tokens_validate_and_rs256_only_config_refuses_them(clock):
    dev = DevIssuer(algorithm="ES256")
    with serve_in_thread(dev.app) as url:
        dev.issuer_url = url
        token = dev.mint_token("support_agent")
        assert segments(token)[0]["alg"] == "ES256"
        both = Authenticator(settings_for(url), clock=clock)
        rs_only = Authenticator(settings_for(url, algorithms=("RS256",)), clock=clock)
        try:
            assert (await both.verify(token)).roles == {"support_agent"}
            with pytest.raises(AuthError) as caught:
                await rs_only.verify(token)
            assert caught.value.code == "bad_algorithm"
        finally:
            await both.aclose()
            await rs_only.aclose()


async def test_leeway_accepts_small_clock_skew_only(issuer, auth):
    now = int(time.time())
    await auth.verify(issuer.mint_token("admin", extra_claims={"exp": now - 10}))
    await auth.verify(issuer.mint_token("admin", extra_claims={"nbf": now + 10}))
    with pytest.raises(AuthError, match="expired"):
        await auth.verify(issuer.mint_token("admin", extra_claims={"exp": now - 40}))


async def test_a_token_seen_valid_still_expires_on_time(issuer, auth, clock):
    token = issuer.mint_token("admin", extra_claims={"exp": int(clock.now) + 5})
    for _ in range(3):  # repeats are served from the verified-token cache
        assert (await auth.verify(token)).roles == {"admin"}
    clock.advance(5 + 30 + 1)  # exp + leeway has passed
    with pytest.raises(AuthError, match="expired"):
        await auth.verify(token)


async def test_a_forged_copy_of_a_token_seen_valid_is_still_checked(issuer, auth):
    token = issuer.mint_token("admin")
    await auth.verify(token)
    header, _payload, signature = token.split(".")
    tampered_claims = {**segments(token)[1], "roles": ["admin"], "sub": "someone-else"}
    tampered = f"{header}.{b64(json.dumps(tampered_claims).encode())}.{signature}"
    with pytest.raises(AuthError, match="invalid_token"):
        await auth.verify(tampered)


async def test_an_audience_list_needs_to_contain_ours(issuer, auth):
    token = issuer.mint_token("admin", audience=["crm-api", "c360"])
    assert (await auth.verify(token)).roles == {"admin"}


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer   "])
async def test_no_bearer_token_is_401_with_a_bare_challenge(auth, header):
    with pytest.raises(AuthError) as caught:
        await auth.authenticate(header)
    assert caught.value.code == "missing_token"
    assert unauthorized_response(caught.value).headers["www-authenticate"] == 'Bearer realm="c360"'


# -- the JWKS refetch budget ---------------------------------------------------------


async def test_an_unknown_kid_costs_one_refetch_then_is_rejected(issuer, auth, clock):
    await auth.verify(issuer.mint_token("admin"))  # keys loaded
    clock.advance(COOLDOWN)
    before = issuer.requests["jwks"]
    with pytest.raises(AuthError, match="unknown_key"):
        await auth.verify(unknown_kid(issuer))
    assert issuer.requests["jwks"] == before + 1
    with pytest.raises(AuthError, match="unknown_key"):
        await auth.verify(unknown_kid(issuer))
    assert issuer.requests["jwks"] == before + 1
    assert auth.jwks_fetches == 2


async def test_a_burst_of_random_kids_fetches_the_jwks_at_most_once_per_cooldown(
    issuer, auth, clock
):
    await auth.verify(issuer.mint_token("admin"))
    claims = valid_claims(issuer)
    burst = lambda: [with_attacker_key(claims, f"random-{i}-{time.time()}") for i in range(100)]  # noqa: E731

    async def attack(tokens):
        results = await asyncio.gather(*(auth.verify(t) for t in tokens), return_exceptions=True)
        assert all(isinstance(r, AuthError) and r.code == "unknown_key" for r in results)

    for _ in range(2):
        clock.advance(COOLDOWN)
        before = issuer.requests["jwks"]
        await attack(burst())  # concurrent: they share one fetch
        assert issuer.requests["jwks"] == before + 1
        for token in burst():  # one after another, still inside the window
            with pytest.raises(AuthError):
                await auth.verify(token)
        clock.advance(COOLDOWN / 2)
        await attack(burst())
        assert issuer.requests["jwks"] == before + 1
    # Known keys keep working throughout, from the cache.
    await auth.verify(issuer.mint_token("support_agent"))


async def test_key_rotation_new_key_after_one_refetch_old_key_until_grace_ends(clock):
    dev = DevIssuer(clock=clock)
    with serve_in_thread(dev.app) as url:
        dev.issuer_url = url
        auth = Authenticator(settings_for(url, jwks_max_age=300), clock=clock)
        try:
            old_token = dev.mint_token("admin", ttl=7200)
            await auth.verify(old_token)
            old_kid = dev.kid
            assert dev.rotate(grace=600) != old_kid
            new_token = dev.mint_token("admin", ttl=7200)
            assert segments(new_token)[0]["kid"] == dev.kid

            clock.advance(COOLDOWN)
            before = dev.requests["jwks"]
            assert (await auth.verify(new_token)).roles == {"admin"}
            assert (await auth.verify(old_token)).roles == {"admin"}
            assert dev.requests["jwks"] == before + 1

            # Past the grace period the issuer stops publishing the old key, and
            # once the gateway's copy of the key set is older than max_age, it
            # notices on the next request.
            clock.advance(601)
            assert [k["kid"] for k in dev.jwks()["keys"]] == [dev.kid]
            with pytest.raises(AuthError, match="unknown_key"):
                await auth.verify(old_token)
            assert (await auth.verify(new_token)).roles == {"admin"}
            assert dev.requests["jwks"] == before + 2
        finally:
            await auth.aclose()


async def test_an_unreachable_issuer_is_503_and_retried_at_a_bounded_rate(issuer, clock):
    attempts = []

    async def count(request: httpx.Request) -> None:
        attempts.append(request.url.path)

    url = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(event_hooks={"request": [count]}) as client:
        auth = Authenticator(settings_for(url), client=client, clock=clock)
        token = issuer.mint_token("admin", issuer=url)
        for _ in range(5):
            with pytest.raises(AuthError) as caught:
                await auth.verify(token)
            assert (caught.value.code, caught.value.status) == ("issuer_unavailable", 503)
        assert attempts == ["/.well-known/openid-configuration"]
        clock.advance(1.0)
        with pytest.raises(AuthError):
            await auth.verify(token)
        assert len(attempts) == 2
        await auth.aclose()  # a caller's client stays open
        assert not client.is_closed
    response = unauthorized_response(caught.value)
    assert response.status_code == 503 and "www-authenticate" not in response.headers
    assert json.loads(response.body)["errors"][0]["extensions"]["code"] == "AUTH_UNAVAILABLE"


async def test_discovery_naming_another_issuer_is_not_trusted(clock):
    dev = DevIssuer("https://impostor.example")
    with serve_in_thread(dev.app) as url:
        auth = Authenticator(settings_for(url), clock=clock)
        try:
            with pytest.raises(AuthError, match="issuer_unavailable"):
                await auth.verify(dev.mint_token("admin", issuer=url))
            assert dev.requests["jwks"] == 0
        finally:
            await auth.aclose()


# -- claim mapping -------------------------------------------------------------------


async def test_keycloak_shaped_claims_map_through_config(issuer, clock):
    settings = auth_settings_from_mapping(
        {
            "issuer": issuer.issuer_url,
            "audience": ["c360"],
            "claims": {"roles": "realm_access.roles", "scopes": ["scp"], "tenant": "org.id"},
            "roles": {"account_manager": ["crm:read"]},
        }
    )
    auth = Authenticator(settings, clock=clock)
    try:
        token = issuer.mint_token(
            "admin",
            extra_claims={
                "roles": None,
                "realm_access": {"roles": ["account_manager", "offline_access"]},
                "scope": "pii:sensitive",  # ignored: only scp is configured
                "scp": ["audit:read"],
                "org": {"id": 42},
            },
        )
        principal = await auth.verify(token)
    finally:
        await auth.aclose()
    assert principal.roles == {"account_manager", "offline_access"}
    assert principal.scopes == {"crm:read", "audit:read"}
    assert principal.tenant == "42"


@pytest.mark.parametrize(
    ("amr", "acr", "mfa"),
    [(["pwd"], "gold", True), (["pwd"], "silver", True), (["pwd"], "bronze", False),
     (["pwd", "hwk"], None, True), (["pwd"], None, False), (None, "platinum", False)],
)  # fmt: skip
async def test_mfa_comes_from_amr_or_an_acr_level(issuer, clock, amr, acr, mfa):
    settings = auth_settings_from_mapping(
        {
            "issuer": issuer.issuer_url,
            "audience": "c360",
            "mfa": {"acr_levels": ["bronze", "silver", "gold"], "min_acr": "silver"},
        }
    )
    auth = Authenticator(settings, clock=clock)
    try:
        token = issuer.mint_token("support_agent", extra_claims={"amr": amr, "acr": acr})
        assert (await auth.verify(token)).mfa is mfa
    finally:
        await auth.aclose()


async def test_subject_falls_back_to_the_client_and_is_otherwise_required(issuer, auth):
    token = issuer.mint_token("integration", extra_claims={"sub": None, "client_id": "etl-job"})
    assert (await auth.verify(token)).subject == "etl-job"
    bare = issuer.mint_token("integration", extra_claims={"sub": None, "client_id": None})
    with pytest.raises(AuthError, match="missing_claim"):
        await auth.verify(bare)


async def test_unknown_roles_are_kept_but_grant_nothing(issuer, auth):
    token = issuer.mint_token("admin", extra_claims={"roles": ["intern"], "scope": None})
    principal = await auth.verify(token)
    assert (principal.roles, principal.scopes) == ({"intern"}, frozenset())


# -- the starlette helpers -----------------------------------------------------------


async def test_principal_or_response_guards_a_route(issuer, auth):
    async def whoami(request: Request) -> Response:
        outcome = await principal_or_response(auth, request)
        if isinstance(outcome, Response):
            return outcome
        return JSONResponse({"subject": outcome.subject})

    app = Starlette(routes=[Route("/graphql", whoami, methods=["POST"])])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        ok = await client.post(
            "/graphql", headers={"authorization": f"Bearer {issuer.mint_token('marketing')}"}
        )
        assert ok.json() == {"subject": "dev-marketing"}
        missing = await client.post("/graphql")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="c360"'
        assert missing.json()["errors"][0]["extensions"]["reason"] == "missing_token"
        bad = await client.post("/graphql", headers={"authorization": "Bearer a.b.c"})
        assert bad.status_code == 401
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]


# -- config --------------------------------------------------------------------------


def test_config_defaults_and_overrides():
    settings = auth_settings_from_mapping(
        {"issuer": "https://idp.example.com/realms/acme", "audience": "c360", "leeway": 5}
    )
    assert settings.algorithms == ("RS256", "ES256")
    assert settings.audience == ("c360",) and settings.leeway == 5
    assert settings.role_scopes["admin"] == ALL_SCOPES
    assert set(settings.role_scopes) == set(BUILTIN_ROLES)
    compose = auth_settings_from_mapping(
        {"issuer": "http://idp:8080/realms/acme", "audience": "c360", "insecure_http": True}
    )
    assert compose.issuer == "http://idp:8080/realms/acme"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "auth: section is required"),
        ({"audience": "c360"}, "auth.issuer is required"),
        ({"issuer": "https://idp.example"}, "auth.audience is required"),
        ({"issuer": "http://idp.example", "audience": "c360"}, "https URL"),
        ({"issuer": "https://idp.example", "audience": "c360", "algorithms": ["HS256"]},
         "HS256 not allowed"),
        ({"issuer": "https://idp.example", "audience": "c360", "algorithms": ["none", "RS256"]},
         "none not allowed"),
        ({"issuer": "https://idp.example", "audience": "c360", "leeway": 3600}, "auth.leeway"),
        ({"issuer": "https://idp.example", "audience": "c360", "leeway": "30"}, "auth.leeway"),
        ({"issuer": "https://idp.example", "audience": "c360",
          "roles": {"support_agent": ["crm:raed"]}}, "unknown scope(s) crm:raed"),
        ({"issuer": "https://idp.example", "audience": "c360", "issuer_url": "x"},
         "unknown setting(s) issuer_url"),
        ({"issuer": "https://idp.example", "audience": "c360", "insecure_http": "yes"},
         "auth.insecure_http"),
        ({"issuer": "https://idp.example", "audience": "c360",
          "mfa": {"acr_levels": ["a", "b"], "min_acr": "c"}}, "min_acr"),
        ({"issuer": "https://idp.example", "audience": ["c360", 7]}, "auth.audience"),
        ("issuer: x", "auth must be a mapping"),
    ],
)  # fmt: skip
def test_config_errors_say_what_to_fix(raw, fragment):
    with pytest.raises(ConfigError) as caught:
        auth_settings_from_mapping(raw)
    assert fragment in str(caught.value)


# -- the dev issuer over HTTP and `c360 token` ---------------------------------------


def test_token_endpoint_takes_form_or_json_and_refuses_unknown_roles(issuer):
    form = httpx.post(f"{issuer.issuer_url}/token", data={"role": "marketing", "mfa": "true"})
    claims = segments(form.json()["access_token"])[1]
    assert claims["roles"] == ["marketing"] and "mfa" in claims["amr"]
    assert form.headers["cache-control"] == "no-store"
    as_json = httpx.post(f"{issuer.issuer_url}/token", json={"role": "admin", "ttl": 60})
    assert as_json.json()["expires_in"] == 60
    assert segments(as_json.json()["access_token"])[1]["iss"] == issuer.issuer_url
    for bad in ({"role": "root"}, {"role": "admin", "ttl": "999999"}):
        refused = httpx.post(f"{issuer.issuer_url}/token", data=bad)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_request"


def test_c360_token_finds_the_issuer_through_the_gateway_and_prints_a_valid_token(capsys):
    dev = DevIssuer()  # no URL given: it answers with the one it is reached at

    with serve_in_thread(dev.app) as issuer_url:

        async def metadata(request: Request) -> Response:
            settings = settings_for(issuer_url)
            return JSONResponse(resource_metadata(settings, str(request.base_url)))

        gateway = Starlette(
            routes=[Route("/.well-known/oauth-protected-resource", metadata, methods=["GET"])]
        )
        with serve_in_thread(gateway) as gateway_url:
            assert token_main(["--role", "billing_admin", "--mfa", "--gateway", gateway_url]) == 0
        token = capsys.readouterr().out.strip()

        async def check() -> Principal:
            auth = Authenticator(settings_for(issuer_url))
            try:
                return await auth.verify(token)
            finally:
                await auth.aclose()

        principal = asyncio.run(check())
        assert principal.roles == {"billing_admin"} and principal.mfa
        assert fetch_token("admin", issuer=issuer_url).count(".") == 2


def test_c360_token_reports_an_unreachable_issuer(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert token_main(["--role", "admin", "--issuer", url]) == 1
    assert "cannot get a token" in capsys.readouterr().err
