"""The SDK's error policy and paginators (httpx.MockTransport: unit level only)."""

from __future__ import annotations

import httpx
import pytest

from connectors.sdk import (
    CursorPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageRequest,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    VendorClient,
)
from connectors.sdk.http import call_gate, parse_retry_after


def _client(handler, observed=None):
    def observer(*args):
        if observed is not None:
            observed.append(args)

    return VendorClient(
        source="acme",
        base_url="https://acme.example",
        transport=httpx.MockTransport(handler),
        observer=observer,
    )


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (429, UpstreamRateLimited, True),
        (500, UpstreamUnavailable, True),
        (503, UpstreamUnavailable, True),
        (401, UpstreamAuthError, False),
        (403, UpstreamAuthError, False),
        (400, UpstreamBadRequest, False),
        (404, UpstreamNotFound, False),
    ],
)
async def test_status_policy(status, error, retryable):
    observed = []
    client = _client(
        lambda r: httpx.Response(
            status, json={"secret": "vendor-internal"}, headers={"Retry-After": "7"}
        ),
        observed,
    )
    with pytest.raises(error) as info:
        await client.get_json("/x", operation="op")
    await client.aclose()
    assert info.value.retryable is retryable and info.value.source == "acme"
    assert "vendor-internal" not in str(info.value)
    assert "vendor-internal" in (info.value.vendor_detail or "")
    if status == 429:
        assert info.value.retry_after == 7
    assert observed[0][:3] == ("acme", "op", error.__name__.removeprefix("Upstream").lower())


async def test_garbage_body_and_transport_failures():
    client = _client(lambda r: httpx.Response(200, content=b"<html>"))
    with pytest.raises(UpstreamProtocolError):
        await client.get_json("/x", operation="op")
    await client.aclose()

    def boom(request):
        raise httpx.ConnectError("refused")

    client = _client(boom)
    with pytest.raises(UpstreamUnavailable):
        await client.get_json("/x", operation="op")
    await client.aclose()

    def slow(request):
        raise httpx.ReadTimeout("slow")

    client = _client(slow)
    with pytest.raises(UpstreamTimeout):
        await client.get_json("/x", operation="op")
    await client.aclose()


def test_retry_after_forms():
    assert parse_retry_after("3") == 3
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_paginators():
    req = PageRequest("/q", {"a": "1"})
    assert (
        NextUrlPaginator("nextRecordsUrl", "done").next({"done": True, "nextRecordsUrl": "/n"}, req)
        is None
    )
    assert NextUrlPaginator("nextRecordsUrl", "done").next(
        {"done": False, "nextRecordsUrl": "/n"}, req
    ) == PageRequest("/n")
    assert NextUrlPaginator("links.next").next({"links": {"next": None}}, req) is None
    stripe = CursorPaginator("has_more", param="starting_after", last_id=True)
    assert stripe.next({"has_more": True, "data": [{"id": "a"}, {"id": "b"}]}, req).params == {
        "a": "1",
        "starting_after": "b",
    }
    assert stripe.next({"has_more": False, "data": [{"id": "a"}]}, req) is None
    assert stripe.next({"has_more": True, "data": []}, req) is None
    search = CursorPaginator("has_more", param="page", cursor_field="next_page")
    assert search.next({"has_more": True, "next_page": "tok"}, req).params["page"] == "tok"
    offset = OffsetPaginator("members", page_size=2)
    nxt = offset.next({"members": [1, 2], "total_items": 5}, PageRequest("/m"))
    assert nxt.params == {"offset": 2, "count": 2}
    assert offset.next({"members": [5], "total_items": 5}, PageRequest("/m", {"offset": 4})) is None


async def test_paginate_is_bounded():
    calls = []

    def forever(request):
        calls.append(request.url)
        return httpx.Response(200, json={"done": False, "next": "/again"})

    client = _client(forever)
    pages = [
        p
        async for p in client.paginate(
            "/start", NextUrlPaginator("next", "done"), operation="op", max_pages=5
        )
    ]
    await client.aclose()
    assert len(pages) == 5 and len(calls) == 5


async def test_paginate_refuses_links_to_another_origin():
    def handler(request):
        return httpx.Response(200, json={"next": "https://evil.example/steal"})

    client = _client(handler)
    with pytest.raises(UpstreamProtocolError, match="another origin"):
        _ = [p async for p in client.paginate("/start", NextUrlPaginator("next"), operation="op")]
    await client.aclose()


async def test_every_call_and_page_passes_the_call_gate_first():
    log: list[str] = []

    def handler(request):
        log.append(f"call {request.url.path}")
        page = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json={"next": f"/p?page={page + 1}" if page < 3 else None})

    async def gate():
        log.append("gate")

    client = _client(handler)
    await client.get_json("/one", operation="op")  # no gate set: nothing awaited
    token = call_gate.set(gate)
    try:
        pages = [p async for p in client.paginate("/p", NextUrlPaginator("next"), operation="op")]
        await client.get_json("/two", operation="op")
    finally:
        call_gate.reset(token)
    await client.aclose()
    assert len(pages) == 3
    assert log == ["call /one"] + ["gate", "call /p"] * 3 + ["gate", "call /two"]


async def test_a_gate_that_listens_hears_of_every_answer_even_an_error():
    log: list[str] = []

    def handler(request):
        log.append(f"call {request.url.path}")
        return httpx.Response(503 if request.url.path == "/down" else 200, json={})

    class Gate:
        async def __call__(self):
            log.append("gate")

        def answered(self):
            log.append("answered")

    def refused(request):
        raise httpx.ConnectError("refused")

    client = _client(handler)
    token = call_gate.set(Gate())
    try:
        await client.get_json("/up", operation="op")
        with pytest.raises(UpstreamUnavailable):
            await client.get_json("/down", operation="op")
        unreachable = _client(refused)
        with pytest.raises(UpstreamUnavailable):
            await unreachable.get_json("/x", operation="op")
    finally:
        call_gate.reset(token)
    await client.aclose()
    await unreachable.aclose()
    # A refused connection is no answer: the vendor said nothing.
    assert log == ["gate", "call /up", "answered", "gate", "call /down", "answered", "gate"]
