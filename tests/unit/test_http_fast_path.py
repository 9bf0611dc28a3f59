"""VendorClient builds request URLs without re-parsing them: same URLs, same wire, same checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import httpx
import pytest

from connectors.sdk import UpstreamProtocolError, UpstreamUnavailable, VendorClient
from connectors.sdk import http as sdk_http
from connectors.sdk.http import NextUrlPaginator

BASES = [
    "https://acme.example",
    "http://127.0.0.1:8000/stripe/",
    "HTTPS://Acme.Example:443/api",
    "https://bücher.example",
    "http://[::1]:8080",
]

CASES = [
    ("/v1/customers/search", {"query": "email:'a.b+c@d.example'", "limit": 10}),
    ("/v1/customers/cus_1", {"expand[]": ["subscriptions", "é/ü"]}),
    ("v1/no-leading-slash", None),
    ("/a b/ü/[x]|{y}^`z'!$()*,;=:@", {"k": "v w"}),
    ("/p/./q/../r", {"a": "1"}),
    ("/x%7e%41%2F%3a", None),
    ("/x?existing=1&b=a%2fb&c=[1]|^{}", {"page[after]": "abc=="}),
    ("/x?", {"a": "1"}),
    ("/x#frag?y", {"a": "1"}),
    ("/empty-params", {}),
    ("https://acme.example/next?page=2&q=a b", {"per_page": "100"}),
    ("https://other.example:8443/elsewhere", None),
]


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing should be sent, got {request.url}")


def _reference(base: str, url: str, params: dict | None) -> httpx.URL:
    """The URL as VendorClient always built it: one string, parsed by httpx."""
    if not url.startswith(("http://", "https://")):
        url = base.rstrip("/") + (url if url.startswith("/") else "/" + url)
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params, doseq=True, quote_via=quote)
    return httpx.URL(url)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(("url", "params"), CASES)
def test_request_urls_are_what_httpx_parses(monkeypatch, fast, base, url, params):
    monkeypatch.setattr(sdk_http, "_FAST_URLS", fast)
    client = VendorClient(source="acme", base_url=base, transport=httpx.MockTransport(_unreachable))
    built = client.build_request("GET", url, params=params).url
    expected = _reference(base, url, params)
    assert str(built) == str(expected)
    assert built.raw_path == expected.raw_path
    assert (built.scheme, built.raw_host, built.port) == (
        expected.scheme,
        expected.raw_host,
        expected.port,
    )
    assert built.params == expected.params


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/users/1\n/x", None),
        ("/search", {"q": "x" * 70000}),
    ],
)
async def test_urls_httpx_refuses_are_still_unreachable(url, params):
    client = VendorClient(
        source="acme", base_url="https://acme.example", transport=httpx.MockTransport(_unreachable)
    )
    with pytest.raises(UpstreamUnavailable, match="could not be reached"):
        await client.get_json(url, operation="op", params=params)
    await client.aclose()


@pytest.mark.parametrize(
    ("link", "sent_to"),
    [
        ("/page2", "https://acme.example:8443/page2"),
        ("https://acme.example:8443/page2?c=1", "https://acme.example:8443/page2?c=1"),
        # Only lower-case http(s) links count as absolute, so these stay paths
        # under the base URL, as they always did.
        (
            "HTTPS://ACME.example:8443/page2",
            "https://acme.example:8443/HTTPS://ACME.example:8443/page2",
        ),
        ("//evil.example/x", "https://acme.example:8443//evil.example/x"),
        ("https://acme.example/page2", None),
        ("http://acme.example:8443/page2", None),
        ("https://acme.example.evil.example:8443/x", None),
        ("https://acme.example:84430/x", None),
        ("https://acme.example:8443@evil.example/x", None),
        ("https://evil.example/x", None),
    ],
)
async def test_next_page_links_must_keep_to_the_base_origin(link, sent_to):
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        first = request.url.path == "/start"
        return httpx.Response(200, json={"next": link if first else None})

    client = VendorClient(
        source="acme", base_url="https://acme.example:8443", transport=httpx.MockTransport(handler)
    )
    pages = client.paginate("/start", NextUrlPaginator("next"), operation="op")
    if sent_to is None:
        with pytest.raises(UpstreamProtocolError, match="another origin"):
            _ = [page async for page in pages]
        assert sent == ["https://acme.example:8443/start"]
    else:
        assert len([page async for page in pages]) == 2
        assert sent == ["https://acme.example:8443/start", sent_to]
    await client.aclose()


class _Capture:
    """A bare HTTP/1.1 server on 127.0.0.1 that records each request's head and body."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head, body))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()


@pytest.fixture
async def capture() -> AsyncIterator[tuple[_Capture, str]]:
    recorder = _Capture()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield recorder, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


class _Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = "Bearer t"
        yield request


async def test_the_default_transport_sends_the_same_bytes(capture):
    recorder, url = capture
    client = VendorClient(
        source="acme",
        base_url=url + "/base",
        auth=_Bearer(),
        headers={"Accept": "application/json", "User-Agent": "c360-gateway"},
    )
    params = {
        "query": "email:'a.b+c@d.example' AND name~\"x y\"",
        "limit": 10,
        "expand[]": ["data.subscriptions", "é/ü"],
    }
    await client.get_json("/v1/customers/search", operation="op", params=params)
    await client.get_json("/x?b=a%2fb&c=[1]|^{}", operation="op", params={"page[after]": "a=="})
    await client.get_json("/a b/ü/./[x]", operation="op")
    await client.request_json("POST", "/t", operation="op", json_body={"j": ["ü", 1]})
    await client.aclose()

    host = url.removeprefix("http://").encode()
    common = b"host: " + host + b"\r\naccept: application/json\r\nuser-agent: c360-gateway\r\n"
    auth = b"authorization: Bearer t\r\nAccept-Encoding: gzip, deflate\r\n\r\n"
    assert recorder.requests == [
        (
            b"GET /base/v1/customers/search?query=email:'a.b%2Bc@d.example'%20AND%20"
            b"name~%22x%20y%22&limit=10&expand%5B%5D=data.subscriptions"
            b"&expand%5B%5D=%C3%A9/%C3%BC HTTP/1.1\r\n" + common + auth,
            b"",
        ),
        (
            b"GET /base/x?b=a/b&c=%5B1%5D%7C%5E%7B%7D&page%5Bafter%5D=a%3D%3D HTTP/1.1\r\n"
            + common
            + auth,
            b"",
        ),
        (b"GET /base/a%20b/%C3%BC/%5Bx%5D HTTP/1.1\r\n" + common + auth, b""),
        (
            b"POST /base/t HTTP/1.1\r\n"
            + common
            + b"content-length: 14\r\ncontent-type: application/json\r\n"
            + auth,
            '{"j":["ü",1]}'.encode(),
        ),
    ]
