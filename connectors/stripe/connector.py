"""The Stripe billing connector.

Settings: ``base_url`` (``https://api.stripe.com``; paths are ``/v1/…``),
``credentials["token"]`` (a secret ``sk_…`` or restricted ``rk_…`` key, sent as
a bearer token), and options:

* ``api_version`` -- the ``Stripe-Version`` header, default ``2024-06-20``;
* ``page_size`` -- search page size, 1-100 (Stripe's ``limit`` range), default 100.

Stripe has no multi-id read. Lookups by email, phone and CRM link
(``metadata['salesforce_id']``) and invoice reads go through the Search API,
which OR-combines up to 10 clauses per query
(https://docs.stripe.com/search#search-query-language), so keys are chunked at
10 and the chunks run concurrently. Search is eventually consistent (normally
under a minute), which suits a read-through 360 view but not read-after-write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote as quote_path

import httpx

from connectors.sdk import (
    BillingConnector,
    ConfigurationError,
    ConnectorSettings,
    CursorPaginator,
    ErrorPolicy,
    Invoice,
    Person,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamUnavailable,
    gather_chunks,
    normalize_email,
    normalize_phone,
)
from connectors.sdk.http import RequestObserver
from connectors.stripe import mapping
from connectors.stripe._search import MAX_CLAUSES, any_of, quote

__all__ = ["DEFAULT_API_VERSION", "StripeConnector", "StripeErrorPolicy"]

DEFAULT_API_VERSION = "2024-06-20"
_MAX_PAGE = 100
_SEARCH_PAGES = CursorPaginator("has_more", param="page", cursor_field="next_page")
#: The system whose record ids customers carry in ``metadata['salesforce_id']``.
LINKED_SYSTEM = "salesforce"
_LINK_FIELD = "metadata['salesforce_id']"
Params = dict[str, str | int | Sequence[str]]


class StripeErrorPolicy(ErrorPolicy):
    """Reads ``{"error": {type, code, message, param}}`` and honours ``Stripe-Should-Retry``."""

    def vendor_detail(self, response: httpx.Response) -> str | None:
        try:
            body = response.json()
        except ValueError:
            return super().vendor_detail(response)
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return super().vendor_detail(response)
        kind = "/".join(str(error[k]) for k in ("type", "code") if isinstance(error.get(k), str))
        detail = kind
        if isinstance(message := error.get("message"), str):
            detail = f"{kind}: {message}" if kind else message
        if isinstance(param := error.get("param"), str):
            detail += f" (param {param})"
        if request_id := response.headers.get("request-id"):
            # Stripe support asks for the request id; keep it in the logs.
            detail += f" [{request_id}]"
        return detail[:500] or None

    def error_for(self, response: httpx.Response) -> UpstreamError | None:
        error = super().error_for(response)
        # Stripe marks some 4xx (e.g. 409 lock_timeout) as safe to retry with
        # this header; the retryable class in the SDK tree is "unavailable".
        if (
            isinstance(error, UpstreamBadRequest)
            and response.headers.get("stripe-should-retry", "").lower() == "true"
        ):
            return UpstreamUnavailable(
                error.message,
                source=error.source,
                status=error.status,
                vendor_detail=error.vendor_detail,
            )
        return error


def _newest_first(invoice: Invoice) -> float:
    return -invoice.created_at.timestamp() if invoice.created_at is not None else 0.0


def _page_size(options: Mapping[str, Any]) -> int:
    value = options.get("page_size", _MAX_PAGE)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_PAGE:
        raise ConfigurationError(f"stripe option page_size must be an integer 1-{_MAX_PAGE}")
    return value


def _api_version(options: Mapping[str, Any]) -> str:
    value = options.get("api_version", DEFAULT_API_VERSION)
    if not isinstance(value, str) or not value:
        raise ConfigurationError("stripe option api_version must be a non-empty string")
    return value


class StripeConnector(BillingConnector):
    """Stripe customers (with embedded subscriptions) and invoices, batch-first."""

    name = "stripe"
    error_policy: ClassVar[type[ErrorPolicy]] = StripeErrorPolicy
    email_batch_size = MAX_CLAUSES
    phone_batch_size: ClassVar[int] = MAX_CLAUSES

    def __init__(
        self,
        settings: ConnectorSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        # Validate before the base class opens an HTTP client that would leak.
        self._page_size = _page_size(settings.options)
        self._api_version = _api_version(settings.options)
        super().__init__(settings, transport=transport, observer=observer)

    def default_headers(self) -> Mapping[str, str]:
        return {**super().default_headers(), "Stripe-Version": self._api_version}

    async def _search(
        self, resource: str, query: str, operation: str, expand: Sequence[str] = ()
    ) -> list[Any]:
        params: Params = {"query": query, "limit": self._page_size}
        if expand:
            params["expand[]"] = list(expand)
        items: list[Any] = []
        async for body in self.http.paginate(
            f"/v1/{resource}/search", _SEARCH_PAGES, operation=operation, params=params
        ):
            items.extend(mapping.list_data(body, f"a {resource} search result"))
        return items

    async def customers_by_email(self, emails: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """``GET /v1/customers/search?query=email:'a' OR …&expand[]=data.subscriptions``.

        One call per 10 emails (Stripe's clause cap) plus one per further page.
        Stripe matches email case-insensitively; results are keyed by the
        normalized email, and two customers sharing an address both appear.
        """
        keys = [key for key in (normalize_email(email) for email in emails) if key]

        async def fetch(chunk: Sequence[str]) -> dict[str, list[Person]]:
            wanted = set(chunk)
            found = await self._customers(
                any_of("email", chunk), "customers_by_email", lambda p: normalize_email(p.email)
            )
            return {key: people for key, people in found.items() if key in wanted}

        return await gather_chunks(keys, MAX_CLAUSES, fetch)

    async def _customers(
        self, query: str, operation: str, key_of: Callable[[Person], str | None]
    ) -> dict[str, list[Person]]:
        """Customers matching ``query`` (with current subscriptions), grouped by ``key_of``."""
        found: dict[str, list[Person]] = {}
        seen: set[str] = set()
        items = await self._search("customers", query, operation, expand=("data.subscriptions",))
        for item in items:
            person = mapping.person_from_customer(item)
            if person is None or person.id in seen:
                continue
            key = key_of(person)
            if key is not None:
                seen.add(person.id)
                found.setdefault(key, []).append(person)
        return found

    async def customers_by_phone(self, phones: Sequence[str]) -> Mapping[str, Sequence[Person]]:
        """``GET /v1/customers/search?query=phone:'+14155550123' OR …&expand[]=data.subscriptions``.

        One call per 10 numbers (the clause cap) plus one per further page.
        Stripe matches the phone exactly as stored, and stores what it was
        given -- E.164, as Stripe recommends; keys must be E.164 (anything else
        is never sent) and each customer is keyed by its own phone normalized.
        """
        keys = [p for p in phones if normalize_phone(p) == p]

        async def fetch(chunk: Sequence[str]) -> dict[str, list[Person]]:
            wanted = set(chunk)
            found = await self._customers(
                any_of("phone", chunk), "customers_by_phone", lambda p: normalize_phone(p.phone)
            )
            return {key: people for key, people in found.items() if key in wanted}

        return await gather_chunks(keys, MAX_CLAUSES, fetch)

    async def people_linked_to(self, keys: Sequence[str]) -> Mapping[str, Sequence[Any]]:
        """Customers whose ``metadata['salesforce_id']`` names a CRM record, keyed
        ``"salesforce:<id>"``: ``GET /v1/customers/search?query=metadata['salesforce_id']:'…'
        OR …``, one call per 10 ids. This is how a customer stored under a
        placeholder email is still found."""
        prefix = f"{LINKED_SYSTEM}:"
        ids = [k.removeprefix(prefix) for k in keys if k.startswith(prefix) and k != prefix]

        async def fetch(chunk: Sequence[str]) -> dict[str, list[Person]]:
            wanted = set(chunk)
            query = " OR ".join(f"{_LINK_FIELD}:{quote(i)}" for i in chunk)

            def key_of(person: Person) -> str | None:
                target = person.links.get(LINKED_SYSTEM)
                return f"{prefix}{target}" if target in wanted else None

            return await self._customers(query, "people_linked_to", key_of)

        return await gather_chunks(ids, MAX_CLAUSES, fetch)

    async def customers_by_id(self, ids: Sequence[str]) -> Mapping[str, Person]:
        """``GET /v1/customers/{id}?expand[]=subscriptions``, one call per id.

        Stripe has no multi-id read and its customer search has no id field,
        so one call per id is the floor; the calls run concurrently. Unknown
        ids (404 ``resource_missing``) and deleted customers are absent.
        """

        async def fetch(chunk: Sequence[str]) -> dict[str, Person]:
            customer_id = chunk[0]
            try:
                body = await self.http.get_json(
                    f"/v1/customers/{quote_path(customer_id, safe='')}",
                    operation="customers_by_id",
                    params={"expand[]": ["subscriptions"]},
                )
            except UpstreamBadRequest as exc:
                if exc.status == 404:
                    return {}
                raise
            person = mapping.person_from_customer(body)
            return {customer_id: person} if person is not None else {}

        return await gather_chunks([i for i in ids if i], 1, fetch)

    async def invoices_of_customers(
        self, customer_ids: Sequence[str]
    ) -> Mapping[str, Sequence[Invoice]]:
        """``GET /v1/invoices/search?query=customer:'cus_a' OR …``, newest first.

        One call per 10 customers plus one per further page; customers without
        invoices are absent.
        """

        async def fetch(chunk: Sequence[str]) -> dict[str, list[Invoice]]:
            wanted = set(chunk)
            found: dict[str, list[Invoice]] = {}
            seen: set[str] = set()
            items = await self._search(
                "invoices", any_of("customer", chunk), "invoices_of_customers"
            )
            for item in items:
                invoice = mapping.invoice_from_stripe(item)
                owner = invoice.customer_id
                if owner is not None and owner in wanted and invoice.id not in seen:
                    seen.add(invoice.id)
                    found.setdefault(owner, []).append(invoice)
            for invoices in found.values():
                # Search does not promise an order; lists answer newest first.
                invoices.sort(key=_newest_first)
            return found

        return await gather_chunks([i for i in customer_ids if i], MAX_CLAUSES, fetch)
