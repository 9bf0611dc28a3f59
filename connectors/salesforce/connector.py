"""The Salesforce CRM connector (REST API).

Settings: ``base_url`` is the org's instance URL (``https://acme.my.salesforce.com``);
``credentials["token"]`` an OAuth access token sent as ``Authorization: Bearer``.
Options:

* ``api_version`` -- REST API version, default ``"61.0"``;
* ``query_batch_size`` -- records per SOQL page (200-2,000), sent as
  ``Sforce-Query-Options: batchSize=N``; unset, Salesforce's default (2,000);
* ``emails_per_query`` -- at most this many emails per SOQL ``IN`` list
  (1-500, default 100); a list is also cut at 12,000 URL-encoded characters,
  because Salesforce refuses a URI plus headers over 16,384 bytes.

Reads: SOQL ``GET …/query`` (following ``nextRecordsUrl``) for lookups by
email and opportunities by account, and sObject Collections
``GET …/composite/sobjects/{type}?ids=…`` for reads by id.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from connectors.salesforce import mapping
from connectors.salesforce._soql import in_list, is_record_id, pack, select
from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    CrmConnector,
    ErrorPolicy,
    Opportunity,
    Organization,
    PageRequest,
    Person,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    gather_chunks,
    group_by,
    normalize_email,
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
#: Account ids per Opportunity SOQL ``IN`` list.
ACCOUNTS_PER_QUERY = 200
#: URL-encoded characters of one ``IN`` list: with the rest of the query, the
#: path and the headers this stays under Salesforce's 16,384-byte URI+headers cap.
IN_LIST_CHARS = 12_000
_VERSION = re.compile(r"v?(\d{2,3}\.\d)")


@dataclass(frozen=True, slots=True)
class _Options:
    api_version: str
    query_batch_size: int | None
    emails_per_query: int


def _int_option(options: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdecimal():
        raise ConfigurationError(f"salesforce option {name!r} must be an integer")
    number = int(value)
    if not low <= number <= high:
        raise ConfigurationError(f"salesforce option {name!r} must be between {low} and {high}")
    return number


def _read_options(options: Mapping[str, Any]) -> _Options:
    version = _VERSION.fullmatch(str(options.get("api_version", "61.0")))
    if version is None:
        raise ConfigurationError("salesforce option 'api_version' must look like '61.0'")
    return _Options(
        api_version=version.group(1),
        query_batch_size=_int_option(options, "query_batch_size", 200, 2000),
        emails_per_query=_int_option(options, "emails_per_query", 1, 500)
        or SalesforceConnector.email_batch_size,
    )


def _vendor_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """``(errorCode, message)`` pairs from ``[{"message", "errorCode", "fields"}]``
    or from an OAuth ``{"error", "error_description"}`` body."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return []
    if isinstance(body, Mapping) and "error" in body:
        return [(str(body.get("error")), str(body.get("error_description", "")))]
    if not isinstance(body, list):
        return []
    return [
        (str(item.get("errorCode", "")), str(item.get("message", "")).strip())
        for item in body
        if isinstance(item, Mapping)
    ]


class SalesforceErrorPolicy(ErrorPolicy):
    """Salesforce's error arrays; the daily API limit (403) counts as a rate limit."""

    def vendor_detail(self, response: httpx.Response) -> str | None:
        errors = _vendor_errors(response)
        if not errors:
            return super().vendor_detail(response)
        return "; ".join(f"{code}: {message}" for code, message in errors)[:500]

    def error_for(self, response: httpx.Response) -> UpstreamError | None:
        if response.status_code == 403 and any(
            code == "REQUEST_LIMIT_EXCEEDED" for code, _ in _vendor_errors(response)
        ):
            return UpstreamRateLimited(
                f"{self.source} API request limit reached",
                source=self.source,
                status=403,
                vendor_detail=self.vendor_detail(response),
            )
        return super().error_for(response)


@dataclass(frozen=True, slots=True)
class _NextRecords:
    """Follows ``nextRecordsUrl`` while ``done`` is false.

    Only a path on this instance is followed: an absolute URL in a body
    would otherwise receive the bearer token.
    """

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        if not isinstance(body, Mapping) or body.get("done") is not False:
            return None
        link = body.get("nextRecordsUrl")
        if not isinstance(link, str) or not link.startswith("/services/data/"):
            raise UpstreamProtocolError(
                "salesforce said the query is not done but sent no usable nextRecordsUrl",
                source=mapping.SOURCE,
            )
        return PageRequest(link, None)


class SalesforceConnector(CrmConnector):
    """Contacts, Accounts and Opportunities of one Salesforce org."""

    name = "salesforce"
    error_policy = SalesforceErrorPolicy
    #: The default ``emails_per_query``.
    email_batch_size = 100

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        # Read before the HTTP client exists, so a bad option leaves nothing to close.
        self.options = _read_options(settings.options)
        super().__init__(settings, transport=transport, observer=observer)
        self._api = f"/services/data/v{self.options.api_version}"
        self._instance_url = settings.base_url.rstrip("/")

    def default_headers(self) -> Mapping[str, str]:
        headers = dict(super().default_headers())
        if self.options.query_batch_size is not None:
            headers["Sforce-Query-Options"] = f"batchSize={self.options.query_batch_size}"
        return headers

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
        merged: dict[str, list[Person]] = {}
        for part in await asyncio.gather(*(fetch(chunk) for chunk in chunks)):
            merged.update(part)
        return merged

    async def people_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        """Contacts by id: one sObject Collections GET per 200 ids."""
        return await self._collection(
            "Contact", CONTACT_FIELDS, ids, mapping.person_from_contact, operation="people_by_id"
        )

    async def organizations_by_id(self, ids: Sequence[str]) -> Mapping[str, Organization]:
        """Accounts by id: one sObject Collections GET per 200 ids."""
        return await self._collection(
            "Account",
            ACCOUNT_FIELDS,
            ids,
            mapping.organization_from_account,
            operation="organizations_by_id",
        )

    async def opportunities_of_organizations(
        self, organization_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Opportunity]]:
        """Opportunities by Account id, latest close date first: one SOQL
        ``AccountId IN (…)`` per 200 accounts, plus one call per further page."""
        wanted = [i for i in organization_ids if is_record_id(i)]

        async def fetch(chunk: Sequence[str]) -> dict[str, list[Opportunity]]:
            soql = select(
                OPPORTUNITY_FIELDS,
                "Opportunity",
                where=f"AccountId IN {in_list(chunk)}",
                order_by="CloseDate DESC, Id",
            )
            records = await self._query(soql, operation="opportunities_of_organizations")
            opportunities = [
                mapping.opportunity_from_record(r, self._instance_url) for r in records
            ]
            # A 15-character id and its 18-character form name the same account.
            found = group_by(opportunities, lambda o: (o.organization_id or "")[:15] or None)
            return {key: found[key[:15]] for key in chunk if key[:15] in found}

        return await gather_chunks(wanted, ACCOUNTS_PER_QUERY, fetch)

    async def _query(self, soql: str, *, operation: str) -> list[Mapping[str, Any]]:
        records: list[Mapping[str, Any]] = []
        pages = self.http.paginate(
            f"{self._api}/query", _NextRecords(), operation=operation, params={"q": soql}
        )
        # Closed explicitly: a page that fails to map leaves the walk suspended.
        async with aclosing(pages):
            async for body in pages:
                records.extend(mapping.query_records(body))
        return records

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
