"""A Mailchimp Marketing API v3 sandbox over the seeded world.

Routes (each also with a trailing slash), all behind the API key
(``SANDBOX_CREDENTIALS["mailchimp"]["token"]`` as the Basic password, or as a
Bearer token)::

    GET /3.0/lists                                         count<=1000, offset
    GET /3.0/lists/{list_id}
    GET /3.0/lists/{list_id}/members                       count, offset, status
    GET /3.0/lists/{list_id}/members/{hash_or_email}
    GET /3.0/lists/{list_id}/members/{hash}/activity-feed  count, offset, activity_filters
    GET /3.0/search-members                                query (required), list_id

Every answer honours ``fields``/``exclude_fields`` and carries ``X-Request-Id``;
errors are problem JSON; more than 10 requests in flight get a 429.
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from connectors.mailchimp import webhook
from connectors.mailchimp._sandbox_data import MailchimpData, Row
from connectors.mailchimp._sandbox_http import (
    MAX_SIMULTANEOUS,
    BadParam,
    ConcurrencyGate,
    Endpoint,
    GateStats,
    authorized,
    count_offset,
    invalid,
    json_response,
    not_found,
    problem,
)
from connectors.sdk._mutations import MutationShape
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState, vendor_app, vendor_route
from connectors.sdk.world import World

__all__ = ["create_app"]

VENDOR = "mailchimp"
_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
_SEARCH_LIMIT = 10  # search-members returns at most 10 members per section


def _mutation_shapes(world: World) -> tuple[MutationShape, ...]:
    return (
        MutationShape(
            kind="member",
            needs={"email": "the member's address (list_id: one audience; default: all of them)"},
            fields=("status", "merge_fields"),
            example={
                "vendor": VENDOR,
                "kind": "member",
                "email": world.people[0].email,
                "changes": {"status": "unsubscribed"},
            },
        ),
    )


def create_app(state: SandboxState, *, max_simultaneous: int = MAX_SIMULTANEOUS) -> Starlette:
    """The sandbox app; ``app.state.mailchimp_gate`` holds in-flight/peak/throttled counts."""
    data = MailchimpData(state.world)
    state.mutations.register(
        VENDOR, webhook.sandbox_mutator(data), webhook.encode, _mutation_shapes(state.world)
    )
    api_key = SANDBOX_CREDENTIALS[VENDOR]["token"]

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def handle(request: Request) -> Response:
            denied = authorized(request, api_key)
            if denied is not None:
                return denied
            try:
                return await endpoint(request)
            except BadParam as exc:
                return invalid(request, exc)

        return handle

    async def lists(request: Request) -> Response:
        count, offset = count_offset(request)
        items = list(data.lists.values())
        return json_response(
            request,
            {
                "lists": items[offset : offset + count],
                "total_items": len(items),
                "constraints": {
                    "may_create": True,
                    "max_instances": 100,
                    "current_total_instances": len(items),
                },
                "_links": [],
            },
        )

    async def one_list(request: Request) -> Response:
        found = data.lists.get(request.path_params["list_id"])
        return json_response(request, found) if found else not_found(request)

    async def members(request: Request) -> Response:
        list_id = request.path_params["list_id"]
        if list_id not in data.lists:
            return not_found(request)
        count, offset = count_offset(request)
        rows = data.rows_by_list.get(list_id, [])
        status = request.query_params.get("status")
        if status:
            if status not in _STATUSES:
                raise BadParam("status", f"Value should be one of: {', '.join(_STATUSES)}.")
            rows = [r for r in rows if r.member["status"] == status]
        return json_response(
            request,
            {
                "members": [r.member for r in rows[offset : offset + count]],
                "list_id": list_id,
                "total_items": len(rows),
                "_links": [],
            },
        )

    def find(request: Request) -> Row | None:
        return data.find(request.path_params["list_id"], request.path_params["subscriber_hash"])

    async def member(request: Request) -> Response:
        row = find(request)
        return json_response(request, row.member) if row else not_found(request)

    async def activity_feed(request: Request) -> Response:
        row = find(request)
        if row is None:
            return not_found(request)
        count, offset = count_offset(request)
        feed = row.feed
        wanted = request.query_params.get("activity_filters")
        if wanted:
            kinds = {k.strip() for k in wanted.split(",") if k.strip()}
            feed = [item for item in feed if item["activity_type"] in kinds]
        return json_response(
            request,
            {
                "activity": feed[offset : offset + count],
                "email_id": row.subscriber_hash,
                "contact_id": row.member["contact_id"],
                "list_id": row.list_id,
                "total_items": len(feed),
                "_links": [],
            },
        )

    async def search_members(request: Request) -> Response:
        query = (request.query_params.get("query") or "").strip()
        if not query:
            raise BadParam("query", "This value should not be blank.")
        list_id = request.query_params.get("list_id") or None
        if list_id is not None and list_id not in data.lists:
            return not_found(request)
        exact, partial = data.search(query, list_id)
        return json_response(
            request,
            {
                "exact_matches": {
                    "members": [r.member for r in exact[:_SEARCH_LIMIT]],
                    "total_items": len(exact),
                },
                "full_search": {
                    "members": [r.member for r in partial[:_SEARCH_LIMIT]],
                    "total_items": len(partial),
                },
                "_links": [],
            },
        )

    paths: list[tuple[str, Endpoint]] = [
        ("/3.0/lists", lists),
        ("/3.0/lists/{list_id}", one_list),
        ("/3.0/lists/{list_id}/members", members),
        ("/3.0/lists/{list_id}/members/{subscriber_hash}", member),
        ("/3.0/lists/{list_id}/members/{subscriber_hash}/activity-feed", activity_feed),
        ("/3.0/search-members", search_members),
    ]
    routes: list[BaseRoute] = [
        vendor_route(state, VENDOR, template, guarded(endpoint))
        for path, endpoint in paths
        for template in (path, path + "/")
    ]

    async def missing(request: Request) -> Response:
        return not_found(request)

    async def wrong_method(request: Request, _: Exception) -> Response:
        response = problem(
            request,
            405,
            "Method Not Allowed",
            "The requested method and resource are not compatible. "
            "See the Allow header for this resource's available methods.",
        )
        response.headers["Allow"] = "GET"
        return response

    def fault_error(request: Request, status: int) -> Response:
        phrase = HTTPStatus(status).phrase
        return problem(request, status, phrase, f"Sandbox fault: {phrase}.")

    app = vendor_app(state, routes, not_found=missing, error_response=fault_error)
    app.add_exception_handler(405, wrong_method)
    gate = GateStats()
    app.state.mailchimp_gate = gate
    app.add_middleware(ConcurrencyGate, seed=state.world.seed, stats=gate, limit=max_simultaneous)
    return app
