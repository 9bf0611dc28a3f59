"""A local stand-in for the Stripe API, serving the seeded world.

Routes (all ``GET``, ``Authorization: Bearer sk_…`` or Basic with the key as
user name; every response carries ``Request-Id`` and ``Stripe-Version``)::

    /v1/customers/search       query over email, name, phone, metadata['k']
    /v1/invoices/search        query over customer, status, subscription, currency, metadata['k']
    /v1/subscriptions/search   query over status, metadata['k']
    /v1/customers              ?email= (exact, case-sensitive, as Stripe documents)
    /v1/customers/{id}
    /v1/subscriptions          ?customer= &status= (default: not canceled; "all")
    /v1/subscriptions/{id}
    /v1/invoices               ?customer= &status= &subscription=
    /v1/invoices/{id}

Searches take ``query`` (see :mod:`connectors.stripe._search`), ``limit``
1-100 and an opaque ``page`` cursor; lists take ``limit``, ``starting_after``
and ``ending_before``. ``expand[]=data.subscriptions`` embeds a customer's
current subscriptions in lists and searches, ``expand[]=subscriptions`` in a
retrieve. Errors are ``{"error": {type, code?, message, param?, doc_url?}}``.
Stripe documents no rate-limit headers, so none are sent.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.sdk._mutations import MutationShape
from connectors.sdk.sandbox import (
    SANDBOX_CREDENTIALS,
    Endpoint,
    SandboxState,
    vendor_app,
    vendor_route,
)
from connectors.sdk.world import World
from connectors.stripe import webhook
from connectors.stripe._objects import JSON, StripeData
from connectors.stripe._protocol import (
    PAGING,
    VERSION,
    PageCursors,
    Reject,
    StripeHeaders,
    check_params,
    expand_of,
    limit_of,
    list_page,
    masked_key,
    presented_key,
)
from connectors.stripe._search import QueryError, parse_query

__all__ = ["create_app"]

VENDOR = "stripe"
_SUB_STATUSES = frozenset(
    {"active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired"}
    | {"trialing", "paused", "all", "ended"}
)
_INVOICE_STATUSES = frozenset({"draft", "open", "paid", "uncollectible", "void"})
_ENDED = frozenset({"canceled", "incomplete_expired"})
_NOUN = {"customers": "customer", "subscriptions": "subscription", "invoices": "invoice"}


def _mutation_shapes(world: World) -> tuple[MutationShape, ...]:
    person = world.people[0]
    customer = person.billing[0].id if person.billing else "cus_…"
    invoice = next((i.id for p in world.people for b in p.billing for i in b.invoices), "in_…")
    return (
        MutationShape(
            kind="customer",
            needs={"id": "the customer's id (cus_…)"},
            fields=("email", "name", "phone", "description", "metadata"),
            example={
                "vendor": VENDOR,
                "kind": "customer",
                "id": customer,
                "changes": {"phone": "+14155550102"},
            },
        ),
        MutationShape(
            kind="invoice",
            needs={"id": "the invoice's id (in_…)"},
            fields=("status", "amount_due", "amount_paid"),
            example={
                "vendor": VENDOR,
                "kind": "invoice",
                "id": invoice,
                "changes": {"status": "paid"},
            },
        ),
    )


def create_app(state: SandboxState) -> Starlette:
    data = StripeData(state.world)
    state.mutations.register(
        VENDOR, webhook.sandbox_mutator(data), webhook.encode, _mutation_shapes(state.world)
    )
    pages = PageCursors(state.world.seed)
    secret = SANDBOX_CREDENTIALS[VENDOR]["token"]

    def guard(endpoint: Callable[[Request], JSON]) -> Endpoint:
        async def handle(request: Request) -> Response:
            try:
                key = presented_key(request)
                if key is None:
                    raise Reject(
                        401,
                        "You did not provide an API key. You need to provide your API key in "
                        "the Authorization header, using Bearer auth (e.g. 'Authorization: "
                        "Bearer YOUR_SECRET_KEY').",
                    )
                if key != secret:
                    raise Reject(401, f"Invalid API Key provided: {masked_key(key)}")
                version = request.headers.get("stripe-version")
                if version is not None and not VERSION.fullmatch(version):
                    raise Reject(400, f"Invalid Stripe API version: {version}")
                return JSONResponse(endpoint(request))
            except Reject as reject:
                return reject.response()

        return handle

    def render_customers(objects: list[JSON], expand: set[str], field: str) -> list[JSON]:
        return [data.with_subscriptions(c) for c in objects] if field in expand else objects

    def search(resource: str) -> Callable[[Request], JSON]:
        expandable = frozenset({"data.subscriptions"} if resource == "customers" else ())

        def endpoint(request: Request) -> JSON:
            params = request.query_params
            check_params(params, frozenset({"query", "limit", "page"}))
            expand = expand_of(params, expandable)
            text = params.get("query")
            if text is None:
                raise Reject(
                    400, "Missing required param: query.", code="parameter_missing", param="query"
                )
            try:
                found = data.search(resource, parse_query(text))
            except QueryError as exc:
                raise Reject(400, str(exc), param="query") from exc
            limit = limit_of(params)
            offset = pages.decode(resource, text, params.get("page"))
            chunk, has_more = found[offset : offset + limit], offset + limit < len(found)
            return {
                "object": "search_result",
                "url": f"/v1/{resource}/search",
                "has_more": has_more,
                "data": render_customers(chunk, expand, "data.subscriptions"),
                "next_page": pages.encode(resource, text, offset + limit) if has_more else None,
            }

        return endpoint

    def retrieve(resource: str) -> Callable[[Request], JSON]:
        expandable = frozenset({"subscriptions"} if resource == "customers" else ())

        def endpoint(request: Request) -> JSON:
            check_params(request.query_params, frozenset())
            expand = expand_of(request.query_params, expandable)
            object_id = request.path_params["id"]
            found = data.by_id[resource].get(object_id)
            if found is None:
                message = f"No such {_NOUN[resource]}: '{object_id}'"
                raise Reject(404, message, code="resource_missing", param="id")
            return render_customers([found], expand, "subscriptions")[0]

        return endpoint

    def listing(resource: str, filters: frozenset[str]) -> Callable[[Request], JSON]:
        expandable = frozenset({"data.subscriptions"} if resource == "customers" else ())

        def endpoint(request: Request) -> JSON:
            params = request.query_params
            check_params(params, filters | PAGING)
            expand = expand_of(params, expandable)
            objects = _filtered(data, resource, params)
            page, has_more = list_page(params, objects, _NOUN[resource])
            return {
                "object": "list",
                "url": f"/v1/{resource}",
                "has_more": has_more,
                "data": render_customers(page, expand, "data.subscriptions"),
            }

        return endpoint

    routes = [
        vendor_route(state, VENDOR, f"/v1/{kind}/search", guard(search(kind)))
        for kind in ("customers", "invoices", "subscriptions")
    ]
    routes += [
        vendor_route(
            state, VENDOR, "/v1/customers", guard(listing("customers", frozenset({"email"})))
        ),
        vendor_route(
            state,
            VENDOR,
            "/v1/subscriptions",
            guard(listing("subscriptions", frozenset({"customer", "status", "price"}))),
        ),
        vendor_route(
            state,
            VENDOR,
            "/v1/invoices",
            guard(listing("invoices", frozenset({"customer", "status", "subscription"}))),
        ),
    ]
    routes += [
        vendor_route(state, VENDOR, f"/v1/{kind}/{{id}}", guard(retrieve(kind)))
        for kind in ("customers", "subscriptions", "invoices")
    ]

    async def unrecognized(request: Request) -> Response:
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        message = (
            f"Unrecognized request URL ({request.method}: {path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/."
        )
        return Reject(404, message).response()

    app = vendor_app(state, routes, not_found=unrecognized, error_response=_fault_error)

    async def wrong_method(request: Request, _: Exception) -> Response:
        return await unrecognized(request)

    # Stripe answers an unsupported method on a known path as an unknown URL.
    app.add_exception_handler(405, wrong_method)
    app.add_middleware(StripeHeaders, seed=state.world.seed)
    return app


def _fault_error(_: Request, status: int) -> Response:
    if status == 429:
        message = "Too many requests hit the API too quickly. Please retry with backoff."
        return Reject(429, message, code="rate_limit").response()
    reject = Reject(status, f"Sandbox fault: {HTTPStatus(status).phrase}")
    if status >= 500:
        reject.body["type"] = "api_error"
    return reject.response()


def _filtered(data: StripeData, resource: str, params: QueryParams) -> list[JSON]:
    customer = params.get("customer")
    objects = (
        data.of_customer[resource].get(customer, [])
        if customer is not None and resource != "customers"
        else data.ordered[resource]
    )
    if resource == "customers" and (email := params.get("email")) is not None:
        # Stripe documents the list filter as case-sensitive (search is not).
        candidates = data.customers_by_email.get(email.strip().lower(), [])
        objects = [c for c in candidates if c["email"].strip() == email]
    status = params.get("status")
    if resource == "subscriptions":
        if status is not None and status not in _SUB_STATUSES:
            raise Reject(
                400,
                f"Invalid status: must be one of {', '.join(sorted(_SUB_STATUSES))}",
                param="status",
            )
        if status is None:
            objects = [s for s in objects if s["status"] not in _ENDED]
        elif status == "ended":
            objects = [s for s in objects if s["status"] in _ENDED]
        elif status != "all":
            objects = [s for s in objects if s["status"] == status]
        if (price := params.get("price")) is not None:
            objects = [s for s in objects if s["items"]["data"][0]["price"]["id"] == price]
    if resource == "invoices":
        if status is not None and status not in _INVOICE_STATUSES:
            raise Reject(
                400,
                f"Invalid status: must be one of {', '.join(sorted(_INVOICE_STATUSES))}",
                param="status",
            )
        if status is not None:
            objects = [i for i in objects if i["status"] == status]
        if (subscription := params.get("subscription")) is not None:
            objects = [i for i in objects if i["subscription"] == subscription]
    return objects
