"""The HTTP side of a connector: one httpx client, one error policy, paginators.

A connector never calls httpx directly for a vendor read; it calls
:meth:`VendorClient.get_json` (or ``request_json``) with an ``operation``
name. The client converts transport failures and HTTP error statuses into the
SDK error tree (see :mod:`connectors.sdk.errors`) through an overridable
:class:`ErrorPolicy`, and reports every call to an observer (the gateway's
metrics) with its outcome and duration.

The transport is a measured choice (``bench/transport_bench.py``): on small
machines httpcore costs several times more CPU per call than aiohttp once many
calls are in flight, so ``aiohttp`` is the default and ``httpcore`` remains
available by name.

Before every HTTP call, the client awaits :data:`call_gate` when it is set:
the gateway meters vendor calls there (one batch may take several calls, one
per chunk or page), so that a rate limit counts what the vendor counts.

Every call the client makes is a read, so one the server drops before any
answer -- closed or reset, most often a pooled keep-alive connection it had
just closed (an idle timeout, a restart) -- is sent again, once, over a new
connection: the other pooled ones likely went idle at the same time. The
observer hears of it as outcome ``stale_connection``. A timeout, a refused
connection or an answer broken off mid-body is not sent again here.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlencode

import httpx

from connectors.sdk.errors import (
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "CursorPaginator",
    "ErrorPolicy",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageRequest",
    "Paginator",
    "RequestObserver",
    "TransportName",
    "VendorClient",
    "call_gate",
    "make_transport",
    "parse_retry_after",
]

TransportName = Literal["aiohttp", "httpcore"]
Params = Mapping[str, str | int | Sequence[str]]

#: Awaited before each HTTP request a :class:`VendorClient` sends (auth flows'
#: own requests included), when set. A context variable, so it follows the
#: call into the tasks a connector starts for its chunks; whoever sets it
#: bounds the wait (the gateway: the attempt's timeout). A gate with an
#: ``answered()`` method is told of each response (any status), once its body
#: is read: the gateway's sign that the vendor is not hanging.
call_gate: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "c360_call_gate", default=None
)

# httpx refuses longer URLs; longer ones take the plain path so they fail the same way.
_MAX_URL_LENGTH = 65536


class RequestObserver(Protocol):
    """Told about every upstream call: the gateway turns this into metrics."""

    def __call__(self, source: str, operation: str, outcome: str, seconds: float) -> None: ...


def make_transport(
    name: TransportName = "aiohttp", *, max_connections: int = 100
) -> httpx.AsyncBaseTransport:
    """A pooled transport that can also send a request over a connection of its own."""
    if name not in ("aiohttp", "httpcore"):
        raise ValueError(f"unknown transport {name!r}: expected 'aiohttp' or 'httpcore'")
    return _Pooled(name, max_connections)


def _transport(name: TransportName, max_connections: int, *, keep_alive: bool) -> Any:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections if keep_alive else 0,
    )
    if name == "httpcore":
        return httpx.AsyncHTTPTransport(limits=limits)
    from httpx_aiohttp import AiohttpTransport

    if keep_alive:
        return AiohttpTransport(limits=limits)
    import aiohttp

    # httpx-aiohttp passes no "never reuse" on to aiohttp: a session of its own says it.
    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=httpx.create_ssl_context(), force_close=True, limit=max_connections
        )
        return aiohttp.ClientSession(connector=connector)

    return AiohttpTransport(client=session)


class _Pooled(httpx.AsyncBaseTransport):
    """``name``'s pooled transport, and a second one that never reuses a
    connection (built when first needed) for :meth:`send_fresh`."""

    def __init__(self, name: TransportName, max_connections: int) -> None:
        self._name = name
        self._max = max_connections
        self._pool: httpx.AsyncBaseTransport = _transport(name, max_connections, keep_alive=True)
        self._fresh: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def send_fresh(self, request: httpx.Request) -> httpx.Response:
        if self._fresh is None:
            self._fresh = _transport(self._name, self._max, keep_alive=False)
        return await self._fresh.handle_async_request(request)

    async def aclose(self) -> None:
        try:
            await self._pool.aclose()
        finally:
            if self._fresh is not None:
                await self._fresh.aclose()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf", "nan", "1e400" are no wait at all: infinity would reach the
        # client's JSON as "Infinity", which is not JSON.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ErrorPolicy:
    """Maps an HTTP response to an SDK error, or ``None`` when it is a success.

    429 and 5xx are retriable; other 4xx are fatal. Vendors override
    :meth:`vendor_detail` to pull their error message out of their error body
    (kept for logs, never shown to clients), or :meth:`error_for` itself when
    the vendor reports errors inside 2xx bodies.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def vendor_detail(self, response: httpx.Response) -> str | None:
        return response.text[:500] or None

    def error_for(self, response: httpx.Response) -> UpstreamError | None:
        status = response.status_code
        if status < 400:
            return None
        detail = self.vendor_detail(response)
        where = f"{self.source} answered HTTP {status}"
        if status == 429:
            return UpstreamRateLimited(
                f"{self.source} rate limit reached",
                source=self.source,
                vendor_detail=detail,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500:
            return UpstreamUnavailable(
                where, source=self.source, status=status, vendor_detail=detail
            )
        if status in (401, 403):
            return UpstreamAuthError(
                f"{self.source} rejected the gateway's credentials",
                source=self.source,
                status=status,
                vendor_detail=detail,
            )
        if status == 404:
            return UpstreamNotFound(where, source=self.source, status=status, vendor_detail=detail)
        return UpstreamBadRequest(where, source=self.source, status=status, vendor_detail=detail)


class VendorClient:
    """An httpx client bound to one vendor: base URL, auth, policy, metrics."""

    def __init__(
        self,
        *,
        source: str,
        base_url: str,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        policy: ErrorPolicy | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.source = source
        self.policy = policy or ErrorPolicy(source)
        self._observer = observer
        self._base = base_url.rstrip("/")
        self._base_url = httpx.URL(self._base + "/")
        # Links that start with this are same-origin without parsing them.
        self._origin = f"{self._base_url.scheme}://{self._base_url.netloc.decode('ascii')}/"
        self._auth = auth
        self._headers = httpx.Headers(headers or {})
        self._extensions = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }
        self._transport = transport if transport is not None else make_transport()

    @property
    def base_url(self) -> httpx.URL:
        return self._base_url

    @property
    def auth(self) -> httpx.Auth | None:
        return self._auth

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def get_json(self, url: str, *, operation: str, params: Params | None = None) -> Any:
        return await self.request_json("GET", url, operation=operation, params=params)

    def build_request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """An ``httpx.Request`` for ``url`` (absolute, or a path under the base URL)."""
        if not url.startswith(("http://", "https://")):
            url = self._base + (url if url.startswith("/") else "/" + url)
        query = urlencode(params, doseq=True, quote_via=quote) if params else ""
        target: httpx.URL | str
        if _FAST_URLS and "#" not in url and len(url) + len(query) < _MAX_URL_LENGTH:
            target = _parse_url(url)
            if query:
                target = _with_query(target, query)
        elif query:
            target = url + ("&" if "?" in url else "?") + query
        else:
            target = url
        return httpx.Request(
            method,
            target,
            headers=self._headers,
            json=json_body,
            data=form,
            extensions=self._extensions,
        )

    async def _send(
        self, request: httpx.Request, dropped: Callable[[], None]
    ) -> tuple[httpx.Response, bytes]:
        # Straight to the transport: AsyncClient's per-call machinery (URL
        # re-merging, cookie jar, redirects, event hooks) cost about as much
        # CPU as the HTTP exchange itself (bench/REPORT.md), and vendor APIs
        # need none of it. Auth still runs as an httpx.Auth flow.
        if self._auth is None:
            response = await self._exchange(request, dropped)
            return response, await _read(response)
        flow = self._auth.async_auth_flow(request)
        # The caller passed the gate for the first request; a flow's own
        # requests (a token fetch, a retry after 401) pass it too.
        gate = call_gate.get()
        first = True
        try:
            request = await flow.__anext__()
            while True:
                if gate is not None and not first:
                    await gate()
                first = False
                response = await self._exchange(request, dropped)
                body = await _read(response)
                try:
                    request = await flow.asend(response)
                except StopAsyncIteration:
                    return response, body
        finally:
            # A flow left suspended by a failed send may hold a lock (a token
            # refresh in progress): close it now, not whenever it is collected.
            await flow.aclose()

    async def _exchange(
        self, request: httpx.Request, dropped: Callable[[], None]
    ) -> httpx.Response:
        """``request``'s response (headers; the body is still to be read), sent
        again over a new connection if the server dropped it without an answer."""
        transport = self._transport
        try:
            return await transport.handle_async_request(request)
        except httpx.TransportError as exc:
            if not _dropped(exc):
                raise
        dropped()
        if isinstance(transport, _Pooled):
            return await transport.send_fresh(request)
        return await transport.handle_async_request(request)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        params: Params | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
    ) -> Any:
        """One call to the vendor, its JSON body decoded, errors converted."""
        gate = call_gate.get()
        if gate is not None:
            await gate()
        started = time.perf_counter()
        outcome = "ok"

        def dropped() -> None:
            nonlocal started
            if self._observer is not None:
                now = time.perf_counter()
                self._observer(self.source, operation, "stale_connection", now - started)
                started = now

        try:
            try:
                request = self.build_request(
                    method, url, params=params, json_body=json_body, form=form
                )
                response, body = await self._send(request, dropped)
                if gate is not None and (answered := getattr(gate, "answered", None)):
                    answered()
            except httpx.TimeoutException as exc:
                if not _is_timeout(exc):
                    # httpx-aiohttp: a dropped connection, or one never made.
                    what = "closed the connection" if _dropped(exc) else "could not be reached"
                    raise UpstreamUnavailable(f"{self.source} {what}", source=self.source) from exc
                raise UpstreamTimeout(
                    f"{self.source} did not answer in time", source=self.source
                ) from exc
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                raise UpstreamUnavailable(
                    f"{self.source} could not be reached", source=self.source
                ) from exc
            error = self.policy.error_for(response)
            if error is not None:
                raise error
            try:
                return json.loads(body) if body else None
            except ValueError as exc:
                raise UpstreamProtocolError(
                    f"{self.source} answered with a body that is not JSON",
                    source=self.source,
                    status=response.status_code,
                    vendor_detail=body[:200].decode("utf-8", "replace"),
                ) from exc
        except UpstreamError as exc:
            outcome = type(exc).__name__.removeprefix("Upstream").lower()
            raise
        finally:
            if self._observer is not None:
                self._observer(self.source, operation, outcome, time.perf_counter() - started)

    async def paginate(
        self,
        url: str,
        paginator: Paginator,
        *,
        operation: str,
        params: Params | None = None,
        max_pages: int = 50,
    ) -> AsyncGenerator[Any, None]:
        """Yield each page's body, following ``paginator`` until it stops.

        ``max_pages`` bounds the walk so a vendor (or a forged cursor) that
        never says "done" cannot keep a request alive forever. A next-page
        link to another origin is refused: the client would send the vendor
        credentials there.
        """
        request: PageRequest | None = PageRequest(url, params)
        pages = 0
        while request is not None and pages < max_pages:
            self._check_origin(request.url)
            body = await self.get_json(request.url, operation=operation, params=request.params)
            pages += 1
            yield body
            request = paginator.next(body, request)

    def _check_origin(self, url: str) -> None:
        # Most links are paths or point back at the base: a string check
        # settles those. Anything else (or anything httpx would reject as
        # a URL) is parsed, as it always was.
        if (
            url.isascii()
            and url.isprintable()
            and len(url) < _MAX_URL_LENGTH
            and ((url.startswith("/") and not url.startswith("//")) or url.startswith(self._origin))
        ):
            return
        target = httpx.URL(url)
        if not target.is_absolute_url:
            return
        base = self._base_url
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise UpstreamProtocolError(
                f"{self.source} sent a next-page link to another origin", source=self.source
            )


@functools.lru_cache(maxsize=1024)
def _parse_url(url: str) -> httpx.URL:
    """``url`` parsed once: connectors call the same few endpoints over and over."""
    return httpx.URL(url)


def _with_query(url: httpx.URL, query: str) -> httpx.URL:
    """``url`` with ``query`` (``urlencode`` output) appended to its query string.

    The result equals ``httpx.URL(str(url) + "?" + query)`` (or ``"&"``), without
    httpx parsing the whole URL again: its pure-Python parser was the costliest
    step of a call on the gateway's side. This leans on httpx's parsed form, a
    named tuple of normalized components; ``urlencode`` output is already
    normalized there (only unreserved characters, ``=``, ``&`` and upper-case
    ``%XX``), so it is added as is.
    """
    ref = url._uri_reference
    joined = query if ref.query is None else f"{ref.query}&{query}"
    built = httpx.URL.__new__(httpx.URL)
    built._uri_reference = ref._replace(query=joined)
    return built


def _fast_urls_work() -> bool:
    """Whether :func:`_with_query` still matches httpx: its parsed form is
    private, so another httpx version falls back to parsing whole strings."""
    sample = "https://h.example:8443/a%2Fb/./c d?x=%7e1"
    try:
        built = _with_query(httpx.URL(sample), "q=a%20b&r=1")
    except (AttributeError, TypeError, ValueError):
        return False
    expected = httpx.URL(sample + "&q=a%20b&r=1")
    return built == expected and built.raw_path == expected.raw_path


_FAST_URLS = _fast_urls_work()


async def _read(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except BaseException:
        # A body that breaks off mid-way must still give its connection back.
        await response.aclose()
        raise


def _dropped(exc: httpx.TransportError) -> bool:
    """Whether the server closed or reset the connection before any answer.

    httpcore says so with RemoteProtocolError ("disconnected without sending
    a response"), ReadError or WriteError (a reset); httpx-aiohttp maps
    aiohttp's ServerDisconnectedError and ClientOSError to ConnectTimeout --
    and a refused connection too, which is not a dropped request.
    """
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return True
    if not isinstance(exc, httpx.ConnectTimeout) or _is_timeout(exc):
        return False
    from aiohttp import ClientConnectorError  # only httpx-aiohttp raises these

    return not isinstance(exc.__cause__, ClientConnectorError)


def _is_timeout(exc: httpx.TimeoutException) -> bool:
    """httpx-aiohttp maps every aiohttp connection error -- a server hanging up
    included -- to ConnectTimeout; only a real timeout underneath is one."""
    cause = exc.__cause__
    if cause is None or isinstance(cause, TimeoutError):
        return True
    return "Timeout" in type(cause).__name__


@dataclass(frozen=True, slots=True)
class PageRequest:
    url: str
    params: Params | None = None


class Paginator(Protocol):
    def next(self, body: Any, current: PageRequest) -> PageRequest | None: ...


def _dig(body: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(body, Mapping):
            return None
        body = body.get(part)
    return body


@dataclass(frozen=True, slots=True)
class NextUrlPaginator:
    """The body names the next page's URL (Salesforce ``nextRecordsUrl``,
    Zendesk ``links.next`` / ``next_page``); ``done_field``, when set, is a
    boolean that says the walk is over."""

    field: str
    done_field: str | None = None

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        if self.done_field is not None and _dig(body, self.done_field) is True:
            return None
        nxt = _dig(body, self.field)
        if not isinstance(nxt, str) or not nxt:
            return None
        return PageRequest(nxt, None)


@dataclass(frozen=True, slots=True)
class CursorPaginator:
    """A flag says there is more; the cursor comes from the body.

    Stripe lists: ``CursorPaginator("has_more", param="starting_after", last_id=True)``;
    Stripe search: ``CursorPaginator("has_more", param="page", cursor_field="next_page")``;
    Zendesk cursor pagination: ``CursorPaginator("meta.has_more", param="page[after]",
    cursor_field="meta.after_cursor")``.
    """

    more_field: str
    param: str
    cursor_field: str | None = None
    last_id: bool = False
    items_field: str = "data"

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        if _dig(body, self.more_field) is not True:
            return None
        cursor: Any
        if self.last_id:
            items = _dig(body, self.items_field)
            if not isinstance(items, list) or not items or not isinstance(items[-1], Mapping):
                return None
            cursor = items[-1].get("id")
        else:
            cursor = _dig(body, self.cursor_field or "")
        if not isinstance(cursor, str | int) or cursor == "":
            return None
        params = dict(current.params or {})
        params[self.param] = str(cursor)
        return PageRequest(current.url, params)


@dataclass(frozen=True, slots=True)
class OffsetPaginator:
    """``offset``/``count`` with a total (Mailchimp: ``total_items``)."""

    items_field: str
    total_field: str = "total_items"
    offset_param: str = "offset"
    count_param: str = "count"
    page_size: int = 1000

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        params = dict(current.params or {})
        offset = int(str(params.get(self.offset_param, 0)))
        items = _dig(body, self.items_field)
        total = _dig(body, self.total_field)
        if not isinstance(items, list) or not items or not isinstance(total, int):
            return None
        offset += len(items)
        if offset >= total:
            return None
        params[self.offset_param] = offset
        params.setdefault(self.count_param, self.page_size)
        return PageRequest(current.url, params)
