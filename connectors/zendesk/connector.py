"""The Zendesk Support connector: requesters and their tickets, batch-first.

Settings:

* ``base_url``: ``https://{subdomain}.zendesk.com`` (paths are ``/api/v2/…``).
* ``credentials``: ``email`` + ``token`` (API token, sent as Basic
  ``{email}/token:{token}``), or ``oauth_token`` (sent as Bearer).
* ``options`` (all optional): ``emails_per_search`` (default 50, at most 100),
  ``phones_per_search`` (default 50, at most 100), ``requesters_per_search``
  (default 20, at most 100), ``per_page`` (default 100, Zendesk's maximum
  page size).

Zendesk's search language ORs repeated values of one keyword
(``type:user email:a@x email:b@y``), so one search call answers a whole chunk
of emails, phones or requesters. Search stops at a 1,000-result window (page 11 at 100
per page is a 422); a chunk of requesters whose tickets overflow it is split,
and a single requester with more than 1,000 tickets is read through
``users/{id}/tickets/requested.json`` with cursor pagination, which has no
such window.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar, cast

import httpx
import phonenumbers

from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    CursorPaginator,
    Person,
    Ticket,
    TicketingConnector,
    gather_chunks,
    normalize_email,
    normalize_phone,
)
from connectors.sdk.http import RequestObserver
from connectors.zendesk import mapping
from connectors.zendesk._http import SameOriginNextPage, ZendeskAuth, ZendeskErrorPolicy

__all__ = ["ZendeskConnector", "ZendeskErrorPolicy"]

#: Zendesk search returns at most 1,000 results per query (developer.zendesk.com,
#: "Search" > "Results limit").
SEARCH_WINDOW = 1000
#: ``users/show_many.json`` takes up to 100 ids per call.
SHOW_MANY_LIMIT = 100
#: Bound on one requester's cursor walk, so a looping cursor cannot pin a request.
REQUESTED_TICKETS_MAX = 10_000
#: The system whose record ids users carry in ``external_id`` (the mapping
#: reads it as a ``salesforce`` link).
LINKED_SYSTEM = "salesforce"
# \s matches exactly what str.isspace() accepts.
_NEEDS_QUOTES = re.compile(r"[\s()]")


def _option(settings: ConnectorSettings, name: str, default: int, high: int) -> int:
    value = settings.options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ConfigurationError(f"zendesk option {name!r} must be an integer from 1 to {high}")
    return value


def _term(keyword: str, value: str) -> str:
    # Quoting keeps a value with spaces or parentheses one search term.
    if _NEEDS_QUOTES.search(value) is not None:
        return f'{keyword}:"{value}"'
    return f"{keyword}:{value}"


# Parsing costs ~15 µs a number, and lookups by phone ask about the same few
# numbers on every request. Only E.164 numbers that normalize_phone accepted
# get here; any that still failed to parse would raise (never cached) as before.
@functools.lru_cache(maxsize=4096)
def _national_digits(e164: str) -> str:
    return str(phonenumbers.parse(e164, None).national_number)


class ZendeskConnector(TicketingConnector):
    name = "zendesk"
    error_policy = ZendeskErrorPolicy
    email_batch_size = 50  # the default of the emails_per_search option
    phone_batch_size: ClassVar[int] = 50  # the default of the phones_per_search option

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        # Validated before the base class opens an HTTP client that would leak.
        self._emails_per_search = _option(settings, "emails_per_search", 50, 100)
        self._phones_per_search = _option(settings, "phones_per_search", 50, 100)
        self._requesters_per_search = _option(settings, "requesters_per_search", 20, 100)
        self._per_page = _option(settings, "per_page", 100, 100)
        super().__init__(settings, transport=transport, observer=observer)
        self._base_url = settings.base_url.rstrip("/")
        self._next_page = SameOriginNextPage(self.http.base_url)

    def auth(self) -> httpx.Auth:
        oauth = self.settings.credentials.get("oauth_token")
        if oauth:
            return ZendeskAuth("Bearer", oauth)
        email = self.settings.credential("email", self.name)
        token = self.settings.credential("token", self.name)
        basic = base64.b64encode(f"{email}/token:{token}".encode()).decode("ascii")
        return ZendeskAuth("Basic", basic)

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

    async def requesters_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """``GET /api/v2/search.json?query=type:user phone:*4155550123 phone:*…``,
        one call per ``phones_per_search`` numbers.

        Keys must be E.164; anything else is never sent. Zendesk wants the
        number's digits without ``+``, and a leading ``*`` to match them in
        any stored format; each user is then keyed by their own phone
        normalized, so a number that merely ends the same way answers nothing.
        """
        wanted = [p for p in dict.fromkeys(phones) if normalize_phone(p) == p]
        return await gather_chunks(wanted, self._phones_per_search, self._users_by_phone)

    async def _users_by_phone(self, chunk: Sequence[str]) -> dict[str, list[Person]]:
        digits = dict.fromkeys(_national_digits(phone) for phone in chunk)
        query = "type:user " + " ".join(f"phone:*{d}" for d in digits)
        wanted = set(chunk)
        found: dict[str, dict[str, Person]] = {}
        async with aclosing(self._search(query, "requesters_by_phone")) as pages:
            async for body in pages:
                for user in mapping.search_results(body, "user"):
                    person = mapping.person_from_user(user, base_url=self._base_url)
                    key = normalize_phone(person.phone)
                    if key is not None and key in wanted:
                        found.setdefault(key, {})[person.id] = person
        return {key: list(people.values()) for key, people in found.items()}

    async def people_linked_to(self, keys: Sequence[str]) -> Mapping[str, Sequence[Any]]:
        """Users whose ``external_id`` names a CRM record, keyed ``"salesforce:<id>"``:
        ``GET /api/v2/users/show_many.json?external_ids=…``, up to 100 per call."""
        prefix = f"{LINKED_SYSTEM}:"
        wanted = [
            k.removeprefix(prefix)
            for k in keys
            if k.startswith(prefix) and k != prefix and "," not in k
        ]
        return await gather_chunks(wanted, SHOW_MANY_LIMIT, self._users_by_external_id)

    async def _users_by_external_id(self, chunk: Sequence[str]) -> dict[str, list[Person]]:
        body = await self.http.get_json(
            "/api/v2/users/show_many.json",
            operation="people_linked_to",
            params={"external_ids": ",".join(chunk)},
        )
        wanted = set(chunk)
        found: dict[str, list[Person]] = {}
        for user in mapping.items_of(body, "users"):
            person = mapping.person_from_user(user, base_url=self._base_url)
            target = person.links.get(LINKED_SYSTEM)
            if target is not None and target in wanted:
                found.setdefault(f"{LINKED_SYSTEM}:{target}", []).append(person)
        return found

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
