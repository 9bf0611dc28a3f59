"""A source that answers garbage costs only its own fields."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.sdk.testing.server import serve_in_thread
from tests.servers import gateway_config, gateway_process

pytestmark = pytest.mark.integration


async def _garbage(request: Request) -> Response:
    return Response("<html>502 Bad Gateway from some proxy</html>", media_type="text/html")


async def _secret_error(request: Request) -> Response:
    return Response(
        '{"error": {"message": "internal: db password is hunter2"}}',
        status_code=500,
        media_type="application/json",
    )


@pytest.fixture(scope="module")
def broken_gateway(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    garbage = Starlette(routes=[Route("/{path:path}", _garbage)])
    failing = Starlette(routes=[Route("/{path:path}", _secret_error)])
    with serve_in_thread(garbage) as garbage_url, serve_in_thread(failing) as failing_url:
        config, env = gateway_config(
            sandbox_url,
            tmp_path_factory.mktemp("broken"),
            overrides={"stripe": garbage_url, "zendesk": failing_url},
        )
        with gateway_process(config, env) as url:
            yield url


def test_garbage_and_5xx_sources_fail_only_their_fields(broken_gateway, answer_key):
    person = next(p for p in answer_key if p["in_all"])
    query = """query($e: String) { customer(email: $e) {
        email account { name } subscriptions { id } invoices { id } tickets { id }
        marketing { status } } }"""
    response = httpx.post(
        f"{broken_gateway}/graphql", json={"query": query, "variables": {"e": person["email"]}}
    )
    assert response.status_code == 200
    body = response.json()
    customer = body["data"]["customer"]
    assert customer["email"] == person["email"]
    assert customer["marketing"] is not None
    assert (
        customer["subscriptions"] is None
        and customer["invoices"] is None
        and customer["tickets"] is None
    )
    by_field = {tuple(e["path"][1:]): e["extensions"] for e in body["errors"]}
    assert by_field[("subscriptions",)] == {
        "code": "UPSTREAM_ERROR",
        "source": "stripe",
        "retryable": False,
    }
    assert by_field[("tickets",)] == {
        "code": "UPSTREAM_UNAVAILABLE",
        "source": "zendesk",
        "retryable": True,
    }
    assert "hunter2" not in response.text
    assert "502 Bad Gateway" not in response.text


async def _endless_429(request: Request) -> Response:
    return Response(
        '{"error": {"type": "rate_limit_error", "message": "slow down"}}',
        status_code=429,
        headers={"Retry-After": "inf"},
        media_type="application/json",
    )


def _no_constants(name: str) -> float:
    raise AssertionError(f"{name} is not JSON")


def test_an_endless_retry_after_is_a_rate_limit_without_a_wait(sandbox_url, answer_key, tmp_path):
    # float("inf") from a header once reached the response as Infinity: not JSON.
    throttled = Starlette(routes=[Route("/{path:path}", _endless_429)])
    with serve_in_thread(throttled) as throttled_url:
        config, env = gateway_config(sandbox_url, tmp_path, overrides={"stripe": throttled_url})
        with gateway_process(config, env) as url:
            person = next(p for p in answer_key if p["in_all"])
            query = "query($e: String) { customer(email: $e) { email subscriptions { id } } }"
            response = httpx.post(
                f"{url}/graphql", json={"query": query, "variables": {"e": person["email"]}}
            )
    assert response.status_code == 200
    body = json.loads(response.text, parse_constant=_no_constants)
    assert body["data"]["customer"] == {"email": person["email"], "subscriptions": None}
    [error] = body["errors"]
    assert error["extensions"] == {
        "code": "UPSTREAM_RATE_LIMITED",
        "source": "stripe",
        "retryable": True,
    }
