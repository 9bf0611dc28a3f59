"""GraphiQL's page and files come from the package, with the right headers,
and only where GraphiQL is on (tests/browser runs the page in Chromium)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

import gateway
from gateway.app import GraphQLView, create_app
from gateway.auth import AuthSettings
from gateway.demo import sandbox_settings
from gateway.ide import GraphiQLPage
from schema import build_schema

STATIC = Path(gateway.__file__).parent / "static" / "graphiql"
HTML = {"accept": "text/html"}
# The page's own references to its files: <script src> and <link href>.
REFERENCE = re.compile(r'(?:src|href)="([^"]+)"(?:\s+integrity="([^"]+)")?')


def _app(tmp_path: Path, *, graphiql: bool = True, hardened: bool = False) -> Starlette:
    settings = sandbox_settings(
        "http://127.0.0.1:9", graphiql=graphiql, audit_path=tmp_path / "audit.jsonl"
    )
    auth = AuthSettings(issuer="http://127.0.0.1:9", audience=("c360",))
    return create_app(settings, auth=auth, hardened=hardened)


async def _client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(_app(tmp_path)):
        yield client


def _references(page: str) -> list[tuple[str, str]]:
    return [(url, sri) for url, sri in REFERENCE.findall(page) if not url.startswith("data:")]


async def test_the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script(demo):
    page = await demo.get("/graphql", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    csp = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["content-security-policy"].split(";")
    )
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'"
    assert csp["connect-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    assert "unpkg" not in page.text and "cdn" not in page.text.lower()
    references = _references(page.text)
    assert all(url.startswith("graphiql/") for url, _ in references), references
    # It names exactly the files the gateway serves, each once.
    named = [url.removeprefix("graphiql/") for url, _ in references]
    assert sorted(named) == sorted(GraphiQLPage().asset_names) and len(named) == 8
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)


async def test_every_file_the_page_names_is_served_with_its_type_and_cache_policy(demo):
    page = (await demo.get("/graphql", headers=HTML)).text
    for url, integrity in _references(page):
        response = await demo.get(f"/{url}")
        assert response.status_code == 200, url
        kind = "javascript" if url.endswith(".js") else "css"
        assert response.headers["content-type"] == f"text/{kind}; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        if integrity:
            # A pinned npm build: its name carries its version, and the browser
            # refuses it unless it is byte for byte what the page pins.
            digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
            assert integrity == f"sha384-{digest}", url
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        else:
            assert url.startswith("graphiql/c360-graphiql."), url
            assert response.headers["cache-control"] == "no-cache"
        assert response.content == (STATIC / url.removeprefix("graphiql/")).read_bytes()


async def test_the_static_readme_pins_the_files_that_are_served(demo):
    """README.md's checksums are the npm packages' (and strawberry's CDN pins)."""
    readme = (STATIC / "README.md").read_text()
    pinned = dict(re.findall(r"`([\w.-]+\.(?:js|css))`[^\n]*?`(sha384-[\w+/=]+)`", readme))
    assert len(pinned) == 6
    for name, integrity in pinned.items():
        body = (await demo.get(f"/graphiql/{name}")).content
        assert integrity == "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def test_an_unchanged_file_is_not_sent_again(demo):
    first = await demo.get("/graphiql/c360-graphiql.js")
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await demo.get("/graphiql/c360-graphiql.js", headers={"if-none-match": condition})
        assert again.status_code == 304 and again.content == b"", condition
        assert again.headers["etag"] == etag and again.headers["cache-control"] == "no-cache"
    changed = await demo.get("/graphiql/c360-graphiql.js", headers={"if-none-match": '"other"'})
    assert changed.status_code == 200 and changed.content == first.content
    pinned = await demo.get("/graphiql/react-18.2.0.production.min.js")
    assert pinned.headers["etag"] != etag


@pytest.mark.parametrize(
    "path",
    [
        "/graphiql/README.md",
        "/graphiql/LICENSES.md",
        "/graphiql/graphiql.html",
        "/graphiql/graphiql-3.8.3.min.js.map",
        "/graphiql/",
        "/graphiql/..%2F..%2Fapp.py",
        "/graphiql/%2e%2e/ide.py",
    ],
)
async def test_nothing_else_in_the_package_is_served(demo, path):
    response = await demo.get(path)
    assert response.status_code == 404
    assert b"import" not in response.content and b"MIT" not in response.content


@pytest.mark.parametrize(("graphiql", "hardened"), [(True, True), (False, False)])
async def test_no_page_and_no_files_where_graphiql_is_off(tmp_path, graphiql, hardened):
    async for client in _client(_app(tmp_path, graphiql=graphiql, hardened=hardened)):
        page = await client.get("/graphql", headers=HTML)
        assert page.status_code != 200 and "graphiql" not in page.text.lower()
        for name in ("c360-graphiql.js", "graphiql-3.8.3.min.js"):
            assert (await client.get(f"/graphiql/{name}")).status_code == 404


async def test_a_view_without_graphiql_never_renders_a_page(tmp_path):
    app = _app(tmp_path, graphiql=False)
    view = GraphQLView(build_schema(), app.state.c360, graphiql=False)
    assert view.ide is None
    assert (await view.render_graphql_ide(None)).status_code == 404  # type: ignore[arg-type]
