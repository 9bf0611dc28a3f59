"""The Salesforce CRM connector (REST API).

Settings: ``base_url`` is the org's instance URL (``https://acme.my.salesforce.com``);
``credentials["token"]`` an OAuth access token sent as ``Authorization: Bearer``,
or, when no token is given, ``credentials["client_id"]`` and ``["client_secret"]``
of a connected app, for which the connector fetches and refreshes tokens itself (OAuth 2.0 client
credentials flow, see :class:`~connectors.sdk.auth.OAuth2ClientCredentials`)
from ``token_url`` (credential or option; default
``{base_url}/services/oauth2/token``). Options:

* ``api_version`` -- REST API version, default ``"61.0"``;
* ``query_batch_size`` -- records per SOQL page (200-2,000), sent as
  ``Sforce-Query-Options: batchSize=N``; unset, Salesforce's default (2,000);
* ``emails_per_query`` -- at most this many emails per SOQL ``IN`` list
  (1-500, default 100); a list is also cut at 12,000 URL-encoded characters,
  because Salesforce refuses a URI plus headers over 16,384 bytes;
* ``phones_per_search`` -- phone numbers ORed into one SOSL search (1-200,
  default 100); 200 of the longest numbers still fit the 4,000 characters
  past which Salesforce drops a search's operators;
* ``token_lifetime`` -- seconds a client-credentials token is kept (60-86,400,
  default 3,600): Salesforce's token answer carries no expiry, so a token the
  org's session timeout ends sooner is replaced on its first 401.

Reads: SOQL ``GET …/query`` (following ``nextRecordsUrl``) for lookups by
email, the account hierarchy, contacts and opportunities of accounts and the
account list (keyset pages: ``WHERE Id > last ORDER BY Id``); SOSL
``GET …/search`` for lookups by phone and full-text search; and sObject
Collections ``GET …/composite/sobjects/{type}?ids=…`` for reads by id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar, TypeVar

import httpx

from connectors.salesforce import mapping
from connectors.salesforce._client import (
    NextRecords,
    SalesforceErrorPolicy,
    client_credentials,
    read_options,
)
from connectors.salesforce._soql import in_list, is_record_id, pack, quote, select
from connectors.salesforce._sosl import MAX_OFFSET, MAX_ROWS, phone_term, search_text
from connectors.sdk import (
    ConnectorSettings,
    CrmConnector,
    Opportunity,
    Organization,
    Page,
    Person,
    PiiKind,
    UpstreamBadRequest,
    gather_chunks,
    group_by,
    normalize_email,
    normalize_phone,
)
from connectors.sdk.http import RequestObserver

__all__ = [
    "ACCOUNTS_PER_QUERY",
    "ACCOUNT_FIELDS",
    "CONTACT_FIELDS",
    "IDS_PER_REQUEST",
    "IN_LIST_CHARS",
    "OPPORTUNITY_FIELDS",
    "SalesforceConnector",
    "SalesforceErrorPolicy",
]

T = TypeVar("T")
# SOSL search groups: where a search may look, by the kind of data it is for.
_SEARCH_GROUPS = {
    None: "ALL",
    PiiKind.NAME: "NAME",
    PiiKind.EMAIL: "EMAIL",
    PiiKind.PHONE: "PHONE",
}

CONTACT_FIELDS = (
    "Id", "FirstName", "LastName", "Name", "Email", "Phone", "Title", "AccountId",
    "LastModifiedDate",
)  # fmt: skip
ACCOUNT_FIELDS = ("Id", "Name", "Industry", "Website", "ParentId", "LastModifiedDate")
OPPORTUNITY_FIELDS = (
    "Id", "Name", "StageName", "Amount", "CloseDate", "AccountId", "LastModifiedDate",
)  # fmt: skip
#: Ids per sObject Collections GET: well inside the ~800 a GET URL holds.
IDS_PER_REQUEST = 200
#: Account ids per SOQL ``IN`` list (children, contacts, opportunities).
ACCOUNTS_PER_QUERY = 200
#: URL-encoded characters of one ``IN`` list: with the rest of the query, the
#: path and the headers this stays under Salesforce's 16,384-byte URI+headers cap.
IN_LIST_CHARS = 12_000


def _account_key(record_id: str | None) -> str | None:
    # A 15-character id and its 18-character form name the same record.
    return record_id[:15] if record_id else None


class SalesforceConnector(CrmConnector):
    """Contacts, Accounts and Opportunities of one Salesforce org."""

    name = "salesforce"
    error_policy = SalesforceErrorPolicy
    #: The default ``emails_per_query``.
    email_batch_size = 100
    #: The default ``phones_per_search``.
    phone_batch_size: ClassVar[int] = 100

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        # Read before the HTTP client exists, so a bad option leaves nothing to close.
        self.options = read_options(
            settings.options, emails=self.email_batch_size, phones=self.phone_batch_size
        )
        super().__init__(settings, transport=transport, observer=observer)
        self._api = f"/services/data/v{self.options.api_version}"
        self._instance_url = settings.base_url.rstrip("/")

    def auth(self) -> httpx.Auth | None:
        return client_credentials(self.settings, self.options) or super().auth()

    def default_headers(self) -> Mapping[str, str]:
        headers = dict(super().default_headers())
        if self.options.query_batch_size is not None:
            headers["Sforce-Query-Options"] = f"batchSize={self.options.query_batch_size}"
        return headers

    # ------------------------------------------------------------------ people
    async def people_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """Contacts by email: one SOQL ``Email IN (…)`` per ``emails_per_query``
        emails (fewer when long addresses would overflow the URI), plus one
        ``nextRecordsUrl`` call per further page of 2,000 (or ``query_batch_size``)."""
        wanted = list(dict.fromkeys(e for e in map(normalize_email, emails) if e))

        async def fetch(chunk: Sequence[str]) -> dict[str, list[Person]]:
            soql = select(CONTACT_FIELDS, "Contact", where=f"Email IN {in_list(chunk)}")
            records = await self._query(soql, operation="people_by_email")
            people = [mapping.person_from_contact(r, self._instance_url) for r in records]
            found = group_by(people, lambda p: normalize_email(p.email))
            return {key: found[key] for key in chunk if key in found}

        # Chunks vary in size (see pack), so gather_chunks' fixed size does not fit.
        chunks = pack(wanted, self.options.emails_per_query, IN_LIST_CHARS)
        if len(chunks) == 1:
            # The usual case: one chunk needs no task of its own (as in gather_chunks).
            return await fetch(chunks[0])
        merged: dict[str, list[Person]] = {}
        for part in await asyncio.gather(*(fetch(chunk) for chunk in chunks)):
            merged.update(part)
        return merged

    async def people_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """Contacts by phone: one SOSL ``FIND {4155550123 OR …} IN PHONE FIELDS``
        per ``phones_per_search`` numbers.

        Keys must be E.164 (anything else -- a placeholder, an impossible
        number -- is never sent). The search looks for the national number's
        digits, which Salesforce matches in any stored format; each contact is
        then keyed by its own phone normalized, so a number that merely ends
        the same way never answers a key.
        """
        wanted = [p for p in dict.fromkeys(phones) if normalize_phone(p) == p and phone_term(p)]
        return await gather_chunks(wanted, self.options.phones_per_search, self._by_phone)

    async def _by_phone(self, chunk: Sequence[str]) -> dict[str, list[Person]]:
        terms = " OR ".join(dict.fromkeys(t for t in map(phone_term, chunk) if t))
        fields = ", ".join(CONTACT_FIELDS)
        sosl = f"FIND {{{terms}}} IN PHONE FIELDS RETURNING Contact({fields} LIMIT {MAX_ROWS})"
        records = await self._search(sosl, operation="people_by_phone")
        if len(records) >= MAX_ROWS and len(chunk) > 1:
            # A full answer may have left matches out: ask again in halves.
            half = len(chunk) // 2
            merged: dict[str, list[Person]] = {}
            for part in await asyncio.gather(
                self._by_phone(chunk[:half]), self._by_phone(chunk[half:])
            ):
                merged.update(part)
            return merged
        people = [mapping.person_from_contact(r, self._instance_url) for r in records]
        found = group_by(people, lambda p: normalize_phone(p.phone))
        return {key: found[key] for key in chunk if key in found}

    async def people_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        """Contacts by id: one sObject Collections GET per 200 ids."""
        return await self._collection(
            "Contact", CONTACT_FIELDS, ids, mapping.person_from_contact, operation="people_by_id"
        )

    async def search_people(
        self, text: str, limit: int, after: str | None, *, within: PiiKind | None = None
    ) -> Page[Person]:
        """Contacts holding every word of ``text`` in any field (or in the
        fields of one kind: ``NAME``, ``EMAIL`` or ``PHONE FIELDS``), in Id order:
        ``FIND {…} IN ALL FIELDS RETURNING Contact(… ORDER BY Id LIMIT n OFFSET m)``.

        Words are escaped (see :func:`._sosl.search_text`), so the text can
        never change the query's shape. The cursor is the next offset; SOSL
        stops at an OFFSET of 2,000, so the page that reaches it is the last.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        offset = 0
        if after is not None:
            if not after.isdecimal() or int(after) > MAX_OFFSET:
                raise _bad_cursor()
            offset = int(after)
        terms = search_text(text)
        if terms is None:
            return Page(items=())
        size = min(limit, MAX_ROWS - 1)
        fields = ", ".join(CONTACT_FIELDS)
        group = _SEARCH_GROUPS[within]
        sosl = (
            f"FIND {{{terms}}} IN {group} FIELDS RETURNING "
            f"Contact({fields} ORDER BY Id LIMIT {size + 1} OFFSET {offset})"
        )
        records = await self._search(sosl, operation="search_people")
        people = tuple(mapping.person_from_contact(r, self._instance_url) for r in records)
        following = offset + size
        more = len(people) > size and following <= MAX_OFFSET
        return Page(items=people[:size], next_cursor=str(following) if more else None)

    # ----------------------------------------------------------- organizations
    async def organizations_by_id(self, ids: Sequence[str]) -> Mapping[str, Organization]:
        """Accounts by id: one sObject Collections GET per 200 ids."""
        return await self._collection(
            "Account",
            ACCOUNT_FIELDS,
            ids,
            mapping.organization_from_account,
            operation="organizations_by_id",
        )

    async def child_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Organization]]:
        """Direct children by parent Account id, by name: one SOQL
        ``ParentId IN (…)`` per 200 accounts, plus one call per further page.

        One level only, so a loop in the hierarchy (two accounts that are each
        other's parent) answers each as the other's child and never recurses.
        """
        return await self._of_accounts(
            organization_ids,
            "Account",
            ACCOUNT_FIELDS,
            "ParentId",
            "Name, Id",
            mapping.organization_from_account,
            lambda o: o.parent_id,
            operation="child_organizations",
        )

    async def contacts_of_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Person]]:
        """Contacts by Account id, by last then first name: one SOQL
        ``AccountId IN (…)`` per 200 accounts, plus one call per further page."""
        return await self._of_accounts(
            organization_ids,
            "Contact",
            CONTACT_FIELDS,
            "AccountId",
            "LastName, FirstName, Id",
            mapping.person_from_contact,
            lambda p: p.organization_id,
            operation="contacts_of_organizations",
        )

    async def opportunities_of_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Opportunity]]:
        """Opportunities by Account id, latest close date first: one SOQL
        ``AccountId IN (…)`` per 200 accounts, plus one call per further page."""
        return await self._of_accounts(
            organization_ids,
            "Opportunity",
            OPPORTUNITY_FIELDS,
            "AccountId",
            "CloseDate DESC, Id",
            mapping.opportunity_from_record,
            lambda o: o.organization_id,
            operation="opportunities_of_organizations",
        )

    async def organizations_page(self, limit: int, after: str | None) -> Page[Organization]:
        """Accounts in Id order, ``limit`` at a time: SOQL keyset pages
        (``WHERE Id > 'last' ORDER BY Id LIMIT n+1``), so every page costs one
        call however deep, and accounts created meanwhile cannot shift a page.
        The cursor is the last Account id of the page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if after is not None and not is_record_id(after):
            raise _bad_cursor()
        where = f"Id > {quote(after)}" if after is not None else None
        soql = select(ACCOUNT_FIELDS, "Account", where=where, order_by="Id", limit=limit + 1)
        records = await self._query(soql, operation="organizations_page")
        orgs = tuple(mapping.organization_from_account(r, self._instance_url) for r in records)
        more = len(orgs) > limit
        return Page(items=orgs[:limit], next_cursor=orgs[limit - 1].id if more else None)

    # -------------------------------------------------------------- plumbing
    async def _of_accounts(
        self,
        account_ids: Sequence[str],
        sobject: str,
        fields: Sequence[str],
        key_field: str,
        order_by: str,
        build: Callable[[Any, str], T],
        key_of: Callable[[T], str | None],
        *,
        operation: str,
    ) -> dict[str, list[T]]:
        """Records whose ``key_field`` is one of ``account_ids``, keyed by the id asked for."""
        wanted = [i for i in account_ids if is_record_id(i)]

        async def fetch(chunk: Sequence[str]) -> dict[str, list[T]]:
            where = f"{key_field} IN {in_list(chunk)}"
            soql = select(fields, sobject, where=where, order_by=order_by)
            records = await self._query(soql, operation=operation)
            built = [build(r, self._instance_url) for r in records]
            found = group_by(built, lambda item: _account_key(key_of(item)))
            return {key: found[key[:15]] for key in chunk if key[:15] in found}

        return await gather_chunks(wanted, ACCOUNTS_PER_QUERY, fetch)

    async def _query(self, soql: str, *, operation: str) -> list[Mapping[str, Any]]:
        records: list[Mapping[str, Any]] = []
        pages = self.http.paginate(
            f"{self._api}/query", NextRecords(), operation=operation, params={"q": soql}
        )
        # Closed explicitly: a page that fails to map leaves the walk suspended.
        async with aclosing(pages):
            async for body in pages:
                records.extend(mapping.query_records(body))
        return records

    async def _search(self, sosl: str, *, operation: str) -> list[Mapping[str, Any]]:
        # SOSL has no further pages: one answer of at most 2,000 rows.
        body = await self.http.get_json(
            f"{self._api}/search", operation=operation, params={"q": sosl}
        )
        return mapping.search_records(body)

    async def _collection(
        self,
        sobject: str,
        fields: Sequence[str],
        ids: Sequence[str],
        build: Callable[[Any, str], T],
        *,
        operation: str,
    ) -> dict[str, T]:
        # Anything that is not an id cannot exist, and would only lengthen the URL.
        wanted = [i for i in ids if is_record_id(i)]
        url = f"{self._api}/composite/sobjects/{sobject}"

        async def fetch(chunk: Sequence[str]) -> dict[str, T]:
            params = {"ids": ",".join(chunk), "fields": ",".join(fields)}
            body = await self.http.get_json(url, operation=operation, params=params)
            records = mapping.collection_records(body, chunk)
            return {
                key: build(record, self._instance_url)
                for key, record in zip(chunk, records, strict=True)
                if record is not None
            }

        return await gather_chunks(wanted, IDS_PER_REQUEST, fetch)


def _bad_cursor() -> UpstreamBadRequest:
    # The gateway only hands back cursors this connector issued (it signs
    # them), so this is a caller's bug; refused before any call is made.
    return UpstreamBadRequest("not a cursor of this salesforce list", source=mapping.SOURCE)
