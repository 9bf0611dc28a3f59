"""The hardened endpoint, as an outside auditor probes it (graphql-cop style checks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from connectors.sdk.testing.server import serve_in_thread
from gateway.app import create_app
from gateway.auth import AuthSettings
from gateway.demo import sandbox_settings
from gateway.issuer import DevIssuer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hardened(sandbox_url: str, issuer: DevIssuer, tmp_path_factory) -> Iterator[tuple[str, str]]:
    base = sandbox_settings(sandbox_url)
    raw = {**base.raw, "gateway": {"rate_limit": {"per_second": 0.5, "burst": 5}}}
    settings = dataclasses.replace(base, raw=raw)
    app = create_app(settings, auth=AuthSettings(issuer=issuer.issuer_url, audience=("c360",)))
    with serve_in_thread(app) as url:
        yield f"{url}/graphql", issuer.mint_token("support_agent", subject="auditor")


def _post(url, token, payload, **kw):
    return httpx.post(url, json=payload, headers={"authorization": f"Bearer {token}"}, **kw)


def test_no_token_or_bad_token_is_401_with_challenge(hardened):
    url, _ = hardened
    response = httpx.post(url, json={"query": "{ __typename }"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="c360"')
    bad = httpx.post(
        url, json={"query": "{ __typename }"}, headers={"authorization": "Bearer abc.def.ghi"}
    )
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert "abc.def" not in bad.text


def test_introspection_suggestions_and_graphiql_are_off(hardened):
    url, token = hardened
    body = _post(url, token, {"query": "{ __schema { types { name } } }"}).json()
    assert body["errors"][0]["extensions"]["code"] == "INTROSPECTION_DISABLED"
    body = _post(url, token, {"query": '{ custmer(email: "a@b.example") { id } }'}).json()
    assert "Did you mean" not in str(body)
    page = httpx.get(url, headers={"accept": "text/html"})
    assert page.status_code != 200 or "graphiql" not in page.text.lower()


def test_get_queries_form_posts_and_batches_are_refused(hardened):
    url, token = hardened
    auth = {"authorization": f"Bearer {token}"}
    assert httpx.get(url, params={"query": "{ __typename }"}, headers=auth).status_code in (
        400,
        404,
        405,
    )
    form = httpx.post(url, data={"query": "{ __typename }"}, headers=auth)
    assert form.status_code == 415
    multipart = httpx.post(url, files={"query": ("q", b"{ __typename }")}, headers=auth)
    assert multipart.status_code == 415
    batch = _post(url, token, [{"query": "{ __typename }"}, {"query": "{ __typename }"}])
    assert batch.status_code == 400
    assert "Traceback" not in batch.text


def test_alias_and_directive_overloading_are_refused_before_execution(hardened):
    url, token = hardened
    aliases = " ".join(f"a{i}: __typename" for i in range(100))
    body = _post(url, token, {"query": f"{{ {aliases} }}"}).json()
    assert body["errors"][0]["extensions"]["code"] == "TOO_MANY_ALIASES"
    directives = "@include(if: true)" * 50
    body = _post(url, token, {"query": f"{{ __typename {directives} }}"}).json()
    assert body["errors"][0]["extensions"]["code"] == "TOO_MANY_DIRECTIVES"


def test_every_response_names_its_request_id(hardened):
    url, token = hardened
    response = httpx.post(
        url,
        json={"query": "{ __typename }"},
        headers={"authorization": f"Bearer {token}", "x-request-id": "audit-1234"},
    )
    assert response.headers["x-request-id"] == "audit-1234"
    fresh = _post(url, token, {"query": "{ __typename }"})
    assert len(fresh.headers["x-request-id"]) == 32


def test_per_principal_rate_limit(hardened, issuer):
    url, _ = hardened
    token = issuer.mint_token("integration", subject="greedy-service")
    codes = [_post(url, token, {"query": "{ __typename }"}).status_code for _ in range(8)]
    assert codes[:5] == [200] * 5
    assert 429 in codes[5:]
    limited = _post(url, token, {"query": "{ __typename }"})
    assert limited.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(limited.headers["retry-after"]) >= 1
    other = issuer.mint_token("integration", subject="polite-service")
    assert _post(url, other, {"query": "{ __typename }"}).status_code == 200
