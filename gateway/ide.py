"""GraphiQL served from the package: the page and every file it loads.

Routes (only where GraphiQL is on, i.e. ``c360 demo``; never on the hardened
endpoint)::

    GET /graphql           the page (strawberry's IDE hook renders :meth:`GraphiQLPage.page`)
    GET /graphiql/{name}   one of the files in ``gateway/static/graphiql/``

The vendored files are the npm packages' own builds, byte for byte (versions,
checksums and licences in that folder's README.md and LICENSES.md), so the page
works on a machine with no network and asks no CDN for anything. Their names
carry their versions, so they are cached as immutable; c360's own two files
are revalidated by ETag. The page has no inline script and GraphiQL needs no
eval, so it is served under a Content-Security-Policy that runs scripts from
this origin only.

Raises nothing of its own: a file missing from the package is a broken install
and surfaces as the ``OSError`` of reading it, when the app is built.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["GraphiQLPage"]

_ASSET_PATH = "/graphiql"

# Styles may be inline: GraphiQL's dialogs and menus add <style> elements at run
# time. Fonts are data: URLs inside graphiql.min.css.
_PAGE_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_PAGE = "graphiql.html"
# Named with their npm version: a new version is a new URL.
_PINNED = (
    "react-18.2.0.production.min.js",
    "react-dom-18.2.0.production.min.js",
    "graphiql-3.8.3.min.js",
    "graphiql-3.8.3.min.css",
    "plugin-explorer-1.0.2.umd.js",
    "plugin-explorer-1.0.2.css",
)
_OWN = ("c360-graphiql.js", "c360-graphiql.css")
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
_NOSNIFF = {"x-content-type-options": "nosniff"}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str
    cache_control: str


def _media_type(name: str) -> str:
    return _MEDIA_TYPES[name[name.rindex(".") :]]


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison, as If-None-Match asks for."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


class GraphiQLPage:
    """The page and its files, read once from the package when the app is built."""

    def __init__(self) -> None:
        folder = resources.files("gateway").joinpath("static", "graphiql")
        self.html = folder.joinpath(_PAGE).read_text(encoding="utf-8")
        self._assets: dict[str, _Asset] = {}
        for names, cache_control in ((_PINNED, _IMMUTABLE), (_OWN, _REVALIDATE)):
            for name in names:
                body = folder.joinpath(name).read_bytes()
                self._assets[name] = _Asset(
                    body=body,
                    media_type=_media_type(name),
                    etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                    cache_control=cache_control,
                )

    @property
    def asset_names(self) -> frozenset[str]:
        return frozenset(self._assets)

    def page(self) -> HTMLResponse:
        return HTMLResponse(
            self.html,
            headers={
                "content-security-policy": _PAGE_CSP,
                "cache-control": _REVALIDATE,
                "referrer-policy": "no-referrer",
                **_NOSNIFF,
            },
        )

    async def asset(self, request: Request) -> Response:
        asset = self._assets.get(request.path_params["name"])
        if asset is None:
            return PlainTextResponse("Not Found", status_code=404, headers=_NOSNIFF)
        headers = {"etag": asset.etag, "cache-control": asset.cache_control, **_NOSNIFF}
        if _matches(request.headers.get("if-none-match", ""), asset.etag):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    def routes(self) -> list[Route]:
        return [Route(f"{_ASSET_PATH}/{{name}}", self.asset, methods=["GET"])]
