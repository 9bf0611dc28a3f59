"""Whose word counts for the client's address: a forwarding header only from a
trusted proxy, walked from the right; everyone else is their own peer address."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway._proxies import TrustedProxies, proxy_settings
from gateway.config import ConfigError


async def whoami(request: Request) -> JSONResponse:
    assert request.client is not None
    return JSONResponse({"client": request.client.host, "scheme": request.url.scheme})


async def seen(gateway: dict, peer: str, headers: list[tuple[str, str]] | None = None) -> dict:
    """What the app sees of a request from ``peer`` carrying ``headers``."""
    app = TrustedProxies(Starlette(routes=[Route("/", whoami)]), proxy_settings(gateway))
    transport = httpx.ASGITransport(app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.get("/", headers=headers or [])
    answer: dict = response.json()
    return answer


NGINX = {"trusted_proxies": ["10.0.0.10"]}
SPOOF = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")]


async def test_without_trusted_proxies_every_forwarding_header_is_ignored():
    for peer in ("127.0.0.1", "10.0.0.10", "::1"):
        assert await seen({}, peer, SPOOF) == {"client": peer, "scheme": "http"}
        assert await seen({"trusted_proxies": []}, peer, SPOOF) == {
            "client": peer,
            "scheme": "http",
        }


async def test_a_client_that_is_not_a_trusted_proxy_cannot_name_another_address():
    assert await seen(NGINX, "203.0.113.7", SPOOF) == {"client": "203.0.113.7", "scheme": "http"}
    forwarded = [("Forwarded", "for=6.6.6.6;proto=https")]
    settings = {**NGINX, "proxy_header": "forwarded"}
    assert await seen(settings, "203.0.113.7", forwarded) == {
        "client": "203.0.113.7",
        "scheme": "http",
    }


async def test_the_trusted_proxy_names_the_client_and_the_scheme():
    headers = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    assert await seen(NGINX, "10.0.0.10", headers) == {"client": "203.0.113.7", "scheme": "https"}
    # No header from the proxy (a health check): the proxy itself is the client.
    assert await seen(NGINX, "10.0.0.10") == {"client": "10.0.0.10", "scheme": "http"}


async def test_what_the_client_wrote_before_the_proxy_appended_is_not_believed():
    # nginx's $proxy_add_x_forwarded_for keeps the client's header and appends the peer.
    headers = [("X-Forwarded-For", "6.6.6.6, 10.0.0.10, 203.0.113.7")]
    assert (await seen(NGINX, "10.0.0.10", headers))["client"] == "203.0.113.7"
    # Several header lines are one list, in order.
    lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.8")]
    assert (await seen(NGINX, "10.0.0.10", lines))["client"] == "203.0.113.8"


async def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop():
    chain = {"trusted_proxies": ["10.0.0.0/8", "fd00::/8"]}
    headers = [("X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.2.0.7, fd00::5")]
    assert (await seen(chain, "10.0.0.10", headers))["client"] == "198.51.100.1"
    everyone_trusted = [("X-Forwarded-For", "10.9.9.9, 10.2.0.7")]
    assert (await seen(chain, "10.0.0.10", everyone_trusted))["client"] == "10.9.9.9"
    # A dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d: still that proxy.
    assert (await seen(chain, "::ffff:10.0.0.10", headers))["client"] == "198.51.100.1"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("203.0.113.7:51234", "203.0.113.7"),  # some proxies add the port
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("2001:db8::7", "2001:db8::7"),
        ("unknown", "10.0.0.10"),  # unreadable: the trusted peer is all we know
        ("6.6.6.6, not-an-ip", "10.0.0.10"),
        ("", "10.0.0.10"),
    ],
)
async def test_hops_as_proxies_write_them(value, client):
    assert (await seen(NGINX, "10.0.0.10", [("X-Forwarded-For", value)]))["client"] == client


async def test_rfc_7239_forwarded_when_that_is_the_header_the_proxy_writes():
    settings = {"trusted_proxies": ["10.0.0.10"], "proxy_header": "Forwarded"}
    headers = [
        ("Forwarded", 'for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";proto=https'),
        ("X-Forwarded-For", "6.6.6.6"),  # not the configured header: ignored
    ]
    assert await seen(settings, "10.0.0.10", headers) == {
        "client": "2001:db8:cafe::17",
        "scheme": "https",
    }
    assert (await seen(settings, "10.0.0.10", [("Forwarded", "for=_hidden")]))[
        "client"
    ] == "10.0.0.10"
    # And with the default header, Forwarded is the client's to forge: ignored.
    forged = [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "203.0.113.7")]
    assert (await seen(NGINX, "10.0.0.10", forged))["client"] == "203.0.113.7"


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ({"trusted_proxies": "10.0.0.10"},
         "gateway.trusted_proxies must be a list of IP addresses or CIDRs"),
        ({"trusted_proxies": {"nginx": "10.0.0.10"}},
         "gateway.trusted_proxies must be a list of IP addresses or CIDRs"),
        ({"trusted_proxies": ["10.0.0.10/24"]},
         "gateway.trusted_proxies: 10.0.0.10/24 has host bits set"),
        ({"trusted_proxies": ["*"]},
         "gateway.trusted_proxies: '*' does not appear to be an IPv4 or IPv6 network"),
        ({"trusted_proxies": ["nginx"]},
         "gateway.trusted_proxies: 'nginx' does not appear to be an IPv4 or IPv6 network"),
        ({"proxy_header": "x-real-ip"},
         "gateway.proxy_header must be 'x-forwarded-for' or 'forwarded'"),
        ({"proxy_header": None},
         "gateway.proxy_header must be 'x-forwarded-for' or 'forwarded'"),
        ([], "gateway must be a mapping"),
    ],
)  # fmt: skip
def test_unusable_settings_are_refused_by_name(gateway, message):
    with pytest.raises(ConfigError) as caught:
        proxy_settings(gateway)
    assert str(caught.value) == message


def test_settings_default_to_trusting_no_one():
    assert proxy_settings(None).networks == ()
    assert proxy_settings({}).header == "x-forwarded-for"
