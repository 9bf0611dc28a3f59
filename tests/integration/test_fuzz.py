"""Schemathesis fuzzes the hardened endpoint: no query, valid or not, may cost a 5xx."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import graphql
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode, Response
from schemathesis.core.result import Ok
from schemathesis.specs.graphql.schemas import GraphQLSchema

from connectors.sdk.testing.server import serve_in_thread
from gateway.app import create_app
from gateway.auth import AuthSettings
from gateway.demo import sandbox_settings
from gateway.issuer import DevIssuer
from schema import build_schema

pytestmark = pytest.mark.integration

# The SDL, not introspection: the hardened endpoint refuses introspection.
SDL = build_schema().as_str()
SCHEMA: GraphQLSchema = schemathesis.graphql.from_file(SDL)
OPERATIONS = sorted(
    result.ok().label for result in SCHEMA.get_all_operations() if isinstance(result, Ok)
)
# Bounded and derandomized so CI sees the same few hundred queries on every run.
BUDGET = {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 20}
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module")
def endpoint(sandbox_url: str, issuer: DevIssuer) -> Iterator[tuple[str, str]]:
    assert issuer.issuer_url is not None
    base = sandbox_settings(sandbox_url)
    # The fuzzer is one principal sending hundreds of queries: not what the limiter is for.
    settings_ = dataclasses.replace(base, raw={**base.raw, "gateway": {"rate_limit": False}})
    app = create_app(settings_, auth=AuthSettings(issuer=issuer.issuer_url, audience=("c360",)))
    with serve_in_thread(app) as url:
        yield url, issuer.mint_token("admin", mfa=True)


def _check(case: Case[Any], response: Response) -> None:
    where = f"{case.body!r} -> {response.status_code} {response.text[:500]}"
    assert response.status_code < 500, where
    # Schemathesis keeps every header as a list of values.
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict), where
    assert "data" in body or "errors" in body, where
    assert "Traceback" not in response.text, where
    for error in body.get("errors") or []:
        assert "stacktrace" not in (error.get("extensions") or {}), where


def test_every_query_field_is_fuzzed() -> None:
    query = graphql.build_schema(SDL).query_type
    assert query is not None
    assert sorted(f"Query.{name}" for name in query.fields) == OPERATIONS
    assert "Query.customer" in OPERATIONS


@pytest.mark.parametrize("mode", list(BUDGET), ids=lambda mode: mode.value)
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_query_gets_a_5xx(
    endpoint: tuple[str, str], label: str, mode: GenerationMode
) -> None:
    url, token = endpoint
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    key = f"{label}/{mode.value}"

    with requests.Session() as session:

        @settings(
            max_examples=BUDGET[mode],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Case[Any]) -> None:
            response = case.call(
                base_url=f"{url}/graphql",
                session=session,
                headers={"authorization": f"Bearer {token}"},
            )
            SENT[key] += 1
            _check(case, response)

        fuzz()
    # Guards against a fuzzer that quietly generated nothing.
    assert SENT[key] >= BUDGET[mode] // 2
