"""The Zendesk Support connector: requesters and their tickets, batch-first.

Settings:

* ``base_url``: ``https://{subdomain}.zendesk.com`` (paths are ``/api/v2/…``).
* ``credentials``: ``email`` + ``token`` (API token, sent as Basic
  ``{email}/token:{token}``), or ``oauth_token`` (sent as Bearer).
* ``options`` (all optional): ``emails_per_search`` (default 50, at most 100),
  ``requesters_per_search`` (default 20, at most 100), ``per_page`` (default
  100, Zendesk's maximum page size).

Zendesk's search language ORs repeated values of one keyword
(``type:user email:a@x email:b@y``), so one search call answers a whole chunk
of emails or requesters. Search stops at a 1,000-result window (page 11 at 100
per page is a 422); a chunk of requesters whose tickets overflow it is split,
and a single requester with more than 1,000 tickets is read through
``users/{id}/tickets/requested.json`` with cursor pagination, which has no
such window.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import httpx

from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    CursorPaginator,
    ErrorPolicy,
    PageRequest,
    Person,
    Ticket,
    TicketingConnector,
    UpstreamProtocolError,
    gather_chunks,
    normalize_email,
)
from connectors.sdk.http import RequestObserver
from connectors.zendesk import mapping

__all__ = ["ZendeskConnector", "ZendeskErrorPolicy"]

#: Zendesk search returns at most 1,000 results per query (developer.zendesk.com,
#: "Search" > "Results limit").
SEARCH_WINDOW = 1000
#: ``users/show_many.json`` takes up to 100 ids per call.
SHOW_MANY_LIMIT = 100
#: Bound on one requester's cursor walk, so a looping cursor cannot pin a request.
REQUESTED_TICKETS_MAX = 10_000


class ZendeskErrorPolicy(ErrorPolicy):
    """Reads Zendesk's error bodies for logs.

    Shapes seen: ``{"error": "RecordNotFound", "description": "Not found"}``,
    ``{"error": "Couldn't authenticate you"}``, ``{"error": {"title", "message"}}``
    and the newer ``{"errors": [{"code", "title", "detail"}]}``; ``details`` may
    carry per-field messages.
    """

    def vendor_detail(self, response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            return super().vendor_detail(response)
        return _describe(body) or super().vendor_detail(response)


def _describe(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, str):
        parts.append(error)
    elif isinstance(error, Mapping):
        parts.extend(str(error[k]) for k in ("title", "message") if error.get(k))
    if isinstance(body.get("description"), str):
        parts.append(body["description"])
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping):
                parts.extend(str(item[k]) for k in ("code", "title", "detail") if item.get(k))
    if body.get("details"):
        parts.append(json.dumps(body["details"], default=str, sort_keys=True))
    return ": ".join(parts)[:500] or None


class _ZendeskAuth(httpx.Auth):
    def __init__(self, scheme: str, secret: str) -> None:
        self._scheme = scheme
        self._header = f"{scheme} {secret}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never print the secret
        return f"_ZendeskAuth({self._scheme}, ***)"


@dataclass(frozen=True, slots=True)
class _SameOriginNextPage:
    """Follow Zendesk's absolute ``next_page`` URL, but only back to the same
    Zendesk: the client attaches credentials to every request it sends."""

    base: httpx.URL

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        nxt = mapping.next_page_of(body)
        if nxt is None:
            return None
        url = httpx.URL(nxt)
        same = (url.scheme, url.host, url.port) == (
            self.base.scheme,
            self.base.host,
            self.base.port,
        )
        if not same or not url.path.startswith(self.base.path):
            raise UpstreamProtocolError(
                "zendesk pointed next_page outside the configured base URL",
                source=mapping.SOURCE,
                vendor_detail=nxt[:200],
            )
        return PageRequest(nxt, None)


def _option(settings: ConnectorSettings, name: str, default: int, high: int) -> int:
    value = settings.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ConfigurationError(f"zendesk option {name!r} must be an integer from 1 to {high}")
    return value


def _term(keyword: str, value: str) -> str:
    # Quoting keeps a value with spaces or parentheses one search term.
    if any(ch.isspace() or ch in "()" for ch in value):
        return f'{keyword}:"{value}"'
    return f"{keyword}:{value}"


class ZendeskConnector(TicketingConnector):
    name = "zendesk"
    error_policy = ZendeskErrorPolicy
    email_batch_size = 50  # the default of the emails_per_search option

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        # Validated before the base class opens an HTTP client that would leak.
        self._emails_per_search = _option(settings, "emails_per_search", 50, 100)
        self._requesters_per_search = _option(settings, "requesters_per_search", 20, 100)
        self._per_page = _option(settings, "per_page", 100, 100)
        super().__init__(settings, transport=transport, observer=observer)
        self._base_url = settings.base_url.rstrip("/")
        self._next_page = _SameOriginNextPage(self.http.base_url)

    def auth(self) -> httpx.Auth:
        oauth = self.settings.credentials.get("oauth_token")
        if oauth:
            return _ZendeskAuth("Bearer", oauth)
        email = self.settings.credential("email", self.name)
        token = self.settings.credential("token", self.name)
        basic = base64.b64encode(f"{email}/token:{token}".encode()).decode("ascii")
        return _ZendeskAuth("Basic", basic)

    # ------------------------------------------------------------ requesters
    async def requesters_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """``GET /api/v2/search.json?query=type:user email:a email:b …``, one call
        per ``emails_per_search`` addresses (one page holds their answers)."""
        wanted = [e for e in map(normalize_email, emails) if e and '"' not in e]
        return await gather_chunks(wanted, self._emails_per_search, self._users_by_email)

    async def _users_by_email(self, chunk: Sequence[str]) -> dict[str, list[Person]]:
        query = "type:user " + " ".join(_term("email", e) for e in chunk)
        wanted = set(chunk)
        found: dict[str, dict[str, Person]] = {}
        async with aclosing(self._search(query, "requesters_by_email")) as pages:
            async for body in pages:
                for user in mapping.search_results(body, "user"):
                    person = mapping.person_from_user(user, base_url=self._base_url)
                    # Search may match loosely; only the exact address answers a key.
                    key = normalize_email(person.email)
                    if key is not None and key in wanted:
                        found.setdefault(key, {})[person.id] = person
        return {key: list(people.values()) for key, people in found.items()}

    async def requesters_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        """``GET /api/v2/users/show_many.json?ids=1,2,…``, up to 100 ids per call."""
        wanted = [i for i in (str(x).strip() for x in ids) if i.isdigit()]
        return await gather_chunks(wanted, SHOW_MANY_LIMIT, self._users_by_id)

    async def _users_by_id(self, chunk: Sequence[str]) -> dict[str, Person]:
        body = await self.http.get_json(
            "/api/v2/users/show_many.json",
            operation="requesters_by_id",
            params={"ids": ",".join(chunk)},
        )
        wanted = set(chunk)
        people = (
            mapping.person_from_user(u, base_url=self._base_url)
            for u in mapping.items_of(body, "users")
        )
        return {p.id: p for p in people if p.id in wanted}

    # --------------------------------------------------------------- tickets
    async def tickets_of_requesters(
        self, requester_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Ticket]]:
        """``GET /api/v2/search.json?query=type:ticket requester:1 requester:2 …``,
        one call per ``requesters_per_search`` requesters while their tickets fit
        one page; see the module docstring for chunks past the search window."""
        wanted = [i for i in (str(x).strip() for x in requester_ids) if i.isdigit()]
        return await gather_chunks(wanted, self._requesters_per_search, self._tickets_by_search)

    async def _tickets_by_search(self, chunk: Sequence[str]) -> dict[str, list[Ticket]]:
        query = "type:ticket " + " ".join(_term("requester", i) for i in chunk)
        wanted = set(chunk)
        found: dict[str, dict[str, Ticket]] = {}
        overflow = False
        async with aclosing(self._search(query, "tickets_of_requesters")) as pages:
            async for body in pages:
                if mapping.search_count(body) > SEARCH_WINDOW:
                    overflow = True
                    break
                for raw in mapping.search_results(body, "ticket"):
                    ticket = mapping.ticket_from_json(raw, base_url=self._base_url)
                    rid = ticket.requester_id
                    if rid is not None and rid in wanted:
                        found.setdefault(rid, {})[ticket.id] = ticket
        if overflow:
            return await self._tickets_past_window(chunk)
        return {key: list(tickets.values()) for key, tickets in found.items()}

    async def _tickets_past_window(self, chunk: Sequence[str]) -> dict[str, list[Ticket]]:
        if len(chunk) == 1:
            return await self._tickets_requested(chunk[0])
        half = len(chunk) // 2
        merged: dict[str, list[Ticket]] = {}
        for part in await asyncio.gather(
            self._tickets_by_search(chunk[:half]), self._tickets_by_search(chunk[half:])
        ):
            merged.update(part)
        return merged

    async def _tickets_requested(self, requester_id: str) -> dict[str, list[Ticket]]:
        """One requester past the search window: a floor of one cursor walk."""
        tickets: dict[str, Ticket] = {}
        pages = self._closable(
            self.http.paginate(
                f"/api/v2/users/{requester_id}/tickets/requested.json",
                CursorPaginator(
                    "meta.has_more", param="page[after]", cursor_field="meta.after_cursor"
                ),
                operation="tickets_of_requesters",
                params={"page[size]": str(self._per_page)},
                max_pages=math.ceil(REQUESTED_TICKETS_MAX / self._per_page),
            )
        )
        async with aclosing(pages):
            async for body in pages:
                for raw in mapping.items_of(body, "tickets"):
                    ticket = mapping.ticket_from_json(raw, base_url=self._base_url)
                    tickets[ticket.id] = ticket
        return {requester_id: list(tickets.values())} if tickets else {}

    # ---------------------------------------------------------------- search
    def _search(self, query: str, operation: str) -> AsyncGenerator[Any, None]:
        return self._closable(
            self.http.paginate(
                "/api/v2/search.json",
                self._next_page,
                operation=operation,
                params={"query": query, "per_page": str(self._per_page)},
                max_pages=math.ceil(SEARCH_WINDOW / self._per_page),
            )
        )

    @staticmethod
    def _closable(pages: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        # VendorClient.paginate is an async generator typed as AsyncIterator;
        # callers that stop early must aclose() it.
        return cast("AsyncGenerator[Any, None]", pages)
