"""Mailchimp Marketing API v3 connector: audience memberships, consent, activity.

Settings:

* ``base_url`` -- ``https://<dc>.api.mailchimp.com`` (see :func:`base_url_for_key`);
  paths are ``/3.0/…`` below it.
* ``credentials["token"]`` -- an API key (Basic auth), or
  ``credentials["oauth_token"]`` -- an OAuth access token (Bearer).
* ``options["list_ids"]`` -- audiences to read: a list of ids, or a mapping
  ``{id: name}`` (which also names them without a discovery call). Absent:
  every audience, discovered once with ``GET /3.0/lists``.
* ``options["max_concurrency"]`` -- simultaneous requests (default 10:
  Mailchimp answers 429 beyond 10 simultaneous connections per account).
* ``options["page_size"]`` -- ``count`` per page when paging (default 1000,
  Mailchimp's maximum); ``options["activity_limit"]`` -- most recent feed
  events read per member and audience (default 50).
* ``options["dc"]`` -- data center for web-app links when neither the API key
  nor the base URL says it (OAuth behind a proxy).

Mailchimp has no multi-member read: its batch endpoint (``POST /3.0/batches``)
is asynchronous and meant for bulk jobs, so lookups are one call per key (per
audience, for reads by subscriber hash), run concurrently under the limit.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from connectors.mailchimp import mapping
from connectors.mailchimp._http import (
    MailchimpBasicAuth,
    MailchimpBearerAuth,
    MailchimpErrorPolicy,
    base_url_for_key,
    data_center_of_key,
    data_center_of_url,
)
from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    EngagementEvent,
    MarketingConnector,
    MarketingMember,
    OffsetPaginator,
    UpstreamBadRequest,
    gather_chunks,
    normalize_email,
)
from connectors.sdk.http import ErrorPolicy, RequestObserver

__all__ = ["MailchimpConnector", "base_url_for_key"]

_MAX_COUNT = 1000  # Mailchimp's largest page (`count`)


class MailchimpConnector(MarketingConnector):
    """Reads audience members and their activity from Mailchimp."""

    name = "mailchimp"
    error_policy: ClassVar[type[ErrorPolicy]] = MailchimpErrorPolicy
    # search-members takes one query: no multi-email read exists.
    email_batch_size: ClassVar[int] = 1

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        # Options are checked before the base class opens an HTTP client, so
        # a bad option leaves nothing to close.
        options = settings.options
        self._slots = asyncio.Semaphore(_positive(options, "max_concurrency", 10))
        self._page_size = min(_positive(options, "page_size", _MAX_COUNT), _MAX_COUNT)
        self._activity_limit = _positive(options, "activity_limit", 50)
        self._lists: dict[str, str | None] | None = _configured_lists(options.get("list_ids"))
        super().__init__(settings, transport=transport, observer=observer)
        self._restricted = self._lists is not None
        self._lists_lock = asyncio.Lock()
        key = settings.credentials.get("token") or ""
        self.dc: str | None = (
            data_center_of_key(key)
            or data_center_of_url(settings.base_url)
            or (str(options["dc"]) if options.get("dc") else None)
        )

    def auth(self) -> httpx.Auth:
        key = self.settings.credentials.get("token")
        if key:
            return MailchimpBasicAuth(key)
        oauth = self.settings.credentials.get("oauth_token")
        if oauth:
            return MailchimpBearerAuth(oauth)
        raise ConfigurationError(
            "connector 'mailchimp' needs credential 'token' (API key) or 'oauth_token'"
        )

    # ------------------------------------------------------------- audiences
    async def lists(self) -> Mapping[str, str | None]:
        """Audience ids -> names: configured, or discovered once and cached.

        The lock makes concurrent first callers share one discovery; a failed
        discovery is not cached, so the next call tries again.
        """
        if self._lists is not None:
            return self._lists
        async with self._lists_lock:
            if self._lists is None:
                found: dict[str, str | None] = {}
                async with self._slots:
                    async for page in self.http.paginate(
                        "/3.0/lists",
                        OffsetPaginator("lists", page_size=self._page_size),
                        operation="lists",
                        params={
                            "count": self._page_size,
                            # total_items must be asked for: partial responses drop it.
                            "fields": "lists.id,lists.name,total_items",
                        },
                        max_pages=math.ceil(100_000 / self._page_size),
                    ):
                        found.update(mapping.list_names(page))
                self._lists = found
            return self._lists

    # --------------------------------------------------------------- members
    async def members_by_email(
        self, emails: Sequence[str]
    ) -> Mapping[str, Sequence[MarketingMember]]:
        """Memberships per normalized email, via ``GET /3.0/search-members?query=``.

        Floor: one call per email. Mailchimp has no multi-email read and
        search-members takes one query, so N emails cost N calls, run
        concurrently (at most ``max_concurrency`` at a time). Only
        ``exact_matches`` count, compared on the normalized address.
        """
        if not emails:
            return {}
        lists = await self.lists()
        params: dict[str, str] = {"fields": "exact_matches.members"}
        if self._restricted and len(lists) == 1:
            params["list_id"] = next(iter(lists))

        async def fetch(chunk: Sequence[str]) -> dict[str, list[MarketingMember]]:
            key = chunk[0]
            query = normalize_email(key)
            if query is None:
                return {}
            async with self._slots:
                body = await self.http.get_json(
                    "/3.0/search-members",
                    operation="members_by_email",
                    params={**params, "query": query},
                )
            found = [
                m
                for m in mapping.search_exact_matches(body, lists=lists, dc=self.dc)
                if m.email == query and self._wanted(m.list_id, lists)
            ]
            return {key: found} if found else {}

        return await gather_chunks(list(emails), 1, fetch)

    async def members_by_id(self, ids: Sequence[str]) -> Mapping[str, Sequence[MarketingMember]]:
        """Memberships per subscriber hash (md5 of the lower-cased email).

        Floor: one ``GET /3.0/lists/{list}/members/{hash}`` per id and
        audience (no multi-id read exists); a 404 means "not in that audience".
        """
        if not ids:
            return {}
        lists = await self.lists()

        async def fetch(chunk: Sequence[str]) -> dict[str, list[MarketingMember]]:
            key = chunk[0]
            bodies = await asyncio.gather(
                *(self._member(list_id, _subscriber(key)) for list_id in lists)
            )
            found = [mapping.member(b, lists=lists, dc=self.dc) for b in bodies if b is not None]
            return {key: found} if found else {}

        return await gather_chunks(list(ids), 1, fetch)

    async def _member(self, list_id: str, subscriber: str) -> Any:
        async with self._slots:
            try:
                return await self.http.get_json(
                    f"/3.0/lists/{quote(list_id, safe='')}/members/{subscriber}",
                    operation="members_by_id",
                    params={"exclude_fields": "_links"},
                )
            except UpstreamBadRequest as exc:
                if exc.status == 404:
                    return None
                raise

    # -------------------------------------------------------------- activity
    async def activity_of_members(
        self, member_ids: Sequence[str]
    ) -> Mapping[str, Sequence[EngagementEvent]]:
        """Recent activity per subscriber hash, newest first, across audiences.

        Floor: one ``GET …/members/{hash}/activity-feed`` per id and audience
        (more when ``activity_limit`` exceeds ``page_size``); a 404 means the
        member is not in that audience. Members in no audience are absent.
        """
        if not member_ids:
            return {}
        lists = await self.lists()

        async def fetch(chunk: Sequence[str]) -> dict[str, list[EngagementEvent]]:
            key = chunk[0]
            feeds = await asyncio.gather(*(self._activity(list_id, key) for list_id in lists))
            known = [feed for feed in feeds if feed is not None]
            if not known:
                return {}
            events = [event for feed in known for event in feed]
            events.sort(
                key=lambda e: e.occurred_at.timestamp() if e.occurred_at else 0.0, reverse=True
            )
            return {key: events}

        return await gather_chunks(list(member_ids), 1, fetch)

    async def _activity(self, list_id: str, member_id: str) -> list[EngagementEvent] | None:
        count = min(self._page_size, self._activity_limit)
        events: list[EngagementEvent] = []
        async with self._slots:
            try:
                async for page in self.http.paginate(
                    f"/3.0/lists/{quote(list_id, safe='')}/members/"
                    f"{_subscriber(member_id)}/activity-feed",
                    OffsetPaginator("activity", page_size=count),
                    operation="activity_of_members",
                    params={"count": count, "exclude_fields": "_links"},
                    max_pages=math.ceil(self._activity_limit / count),
                ):
                    events.extend(mapping.activity_feed(page, member_id=member_id))
            except UpstreamBadRequest as exc:
                if exc.status == 404:
                    return None
                raise
        return events[: self._activity_limit]

    def _wanted(self, list_id: str | None, lists: Mapping[str, str | None]) -> bool:
        return not self._restricted or (list_id is not None and list_id in lists)


def _subscriber(key: str) -> str:
    """A subscriber hash as Mailchimp expects it (lower-case hex), path-safe.

    Mailchimp also accepts the email address itself in that path segment.
    """
    value = key.strip()
    if len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value):
        value = value.lower()
    return quote(value, safe="@")


def _positive(options: Mapping[str, Any], name: str, default: int) -> int:
    raw = options.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"mailchimp option {name!r} must be an integer") from exc
    if value < 1:
        raise ConfigurationError(f"mailchimp option {name!r} must be at least 1")
    return value


def _configured_lists(raw: Any) -> dict[str, str | None] | None:
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        return {str(k): (str(v) if v is not None else None) for k, v in raw.items()}
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if isinstance(raw, Sequence):
        return {str(list_id).strip(): None for list_id in raw}
    raise ConfigurationError("mailchimp option 'list_ids' must be a list of ids or {id: name}")
