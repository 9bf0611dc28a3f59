"""A Zendesk Support sandbox: the seeded world in Zendesk's API shapes.

Routes (Zendesk accepts every path with or without ``.json``; so does this)::

    GET /api/v2/search.json                           unified search, offset pages
    GET /api/v2/users/search.json                     ?query= or ?external_id=
    GET /api/v2/users/show_many.json                  ?ids= or ?external_ids= (<= 100)
    GET /api/v2/users/{id}.json
    GET /api/v2/users/{id}/tickets/requested.json     cursor (page[size]) or offset pages
    GET /api/v2/tickets/show_many.json                ?ids= (<= 100)
    GET /api/v2/tickets/{id}.json

Auth is Basic ``{email}/token:{token}`` or Bearer, checked against
``SANDBOX_CREDENTIALS["zendesk"]``; every vendor response carries
``X-Rate-Limit`` and ``X-Rate-Limit-Remaining``. What the world lacks (user
``created_at``, ``external_id`` links, ticket descriptions) derives from the
world's seed, never the clock.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from connectors.sdk._mutations import MutationShape
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, Endpoint, SandboxState, vendor_route
from connectors.sdk.sandbox import vendor_app as _vendor_app
from connectors.sdk.world import EPOCH, World
from connectors.zendesk import webhook
from connectors.zendesk._search import SearchIndex, SearchSyntaxError, parse_query

__all__ = ["MAX_PER_PAGE", "RATE_LIMIT", "SEARCH_WINDOW", "create_app"]

RATE_LIMIT = 700
MAX_PER_PAGE = 100
SEARCH_WINDOW = 1000
SHOW_MANY_LIMIT = 100

Record = dict[str, Any]
_UNAUTHENTICATED = {"error": "Couldn't authenticate you"}


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "description": description}, status_code=status)


def _base(request: Request) -> str:
    """This app's absolute root URL, ending in ``/``. ``request.base_url`` is the
    top-level app's root and lacks a ``Mount`` prefix such as ``/zendesk``."""
    root = request.scope.get("root_path", "").rstrip("/")
    return str(request.base_url.replace(path=f"{root}/"))


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


@dataclass
class _Index:
    """The world as Zendesk holds it, indexed once per app."""

    users: dict[int, Record] = field(default_factory=dict)
    by_external_id: dict[str, list[int]] = field(default_factory=dict)
    tickets: dict[int, Record] = field(default_factory=dict)
    by_requester: dict[int, list[int]] = field(default_factory=dict)
    search: SearchIndex = field(default_factory=SearchIndex)

    @classmethod
    def build(cls, world: World) -> _Index:
        index = cls()
        for p in world.people:
            if p.zendesk_id is None:
                continue
            uid = p.zendesk_id
            rng = random.Random(f"{world.seed}:zendesk:user:{uid}")
            updated = p.zendesk_updated or EPOCH
            user: Record = {
                "id": uid, "name": p.name, "email": p.zendesk_email, "phone": p.zendesk_phone,
                # Some users carry the CRM contact id, as an integration
                # that syncs Salesforce into Zendesk would set it.
                "external_id": p.zendesk_external_id,
                "role": "end-user", "active": True, "verified": True,
                "organization_id": None, "tags": [],
                "created_at": _iso(updated - timedelta(days=rng.randrange(30, 900))),
                "updated_at": _iso(updated),
            }  # fmt: skip
            index.users[uid] = user
            if user["external_id"]:
                index.by_external_id.setdefault(user["external_id"], []).append(uid)
            index.search.add_user(user)
            for t in p.tickets:
                index.tickets[t.id] = {
                    "id": t.id, "subject": t.subject,
                    "description": f"{t.subject}. Reported by {p.first_name}.",
                    "status": t.status, "priority": t.priority, "type": None,
                    "requester_id": uid, "submitter_id": uid, "assignee_id": None,
                    "organization_id": None, "tags": [],
                    "created_at": _iso(t.created_at), "updated_at": _iso(t.updated_at),
                }  # fmt: skip
                index.by_requester.setdefault(uid, []).append(t.id)
                index.search.add_ticket(index.tickets[t.id])
        for ids in index.by_requester.values():
            ids.sort()
        return index

    def records(self, kind: str) -> dict[int, Record]:
        return self.users if kind == "user" else self.tickets

    def render(self, kind: str, rid: int, base: str) -> Record:
        return {**self.records(kind)[rid], "url": f"{base}api/v2/{kind}s/{rid}.json"}


class _Gate:
    """Zendesk's auth check and rate-limit headers."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self._basic = f"{credentials['email']}/token:{credentials['token']}".encode()
        self._bearer = credentials.get("oauth_token", credentials["token"]).encode()
        self._served = 0

    def authorized(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self._bearer)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, self._basic)
        return False

    def stamp(self, response: Response) -> Response:
        # The remaining budget counts down per request served; never the clock.
        self._served += 1
        remaining = RATE_LIMIT - 1 - (self._served - 1) % RATE_LIMIT
        response.headers["X-Rate-Limit"] = str(RATE_LIMIT)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        return response

    def guard(self, endpoint: Endpoint) -> Endpoint:
        async def handle(request: Request) -> Response:
            if self.authorized(request):
                return self.stamp(await endpoint(request))
            challenge = {"WWW-Authenticate": 'Basic realm="Web Password"'}
            return self.stamp(JSONResponse(_UNAUTHENTICATED, status_code=401, headers=challenge))

        return handle


def _offset_page(
    request: Request, path: str, items: list[Any], render: Callable[[Any], Record], key: str
) -> Response:
    """Zendesk offset pagination: ``page``/``per_page``, absolute page links."""
    page = max(1, _int(request.query_params.get("page"), 1))
    per_page = min(MAX_PER_PAGE, max(1, _int(request.query_params.get("per_page"), MAX_PER_PAGE)))
    offset = (page - 1) * per_page
    limit = SEARCH_WINDOW if key == "results" else len(items)
    if key == "results" and offset >= SEARCH_WINDOW:
        return _error(
            422,
            "InvalidPaginationParameter",
            "Invalid search: Requested response size was greater than Search Response Limits",
        )
    params = dict(request.query_params)

    def link(n: int) -> str:
        return f"{_base(request)}{path}?{urlencode({**params, 'page': n, 'per_page': per_page})}"

    body: Record = {
        key: [render(item) for item in items[offset : min(offset + per_page, limit)]],
        "next_page": link(page + 1) if offset + per_page < min(len(items), limit) else None,
        "previous_page": link(page - 1) if page > 1 else None,
        "count": len(items),
    }
    if key == "results":
        body["facets"] = None
    return JSONResponse(body)


def _cursor(ticket_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{ticket_id}".encode()).decode().rstrip("=")


def _uncursor(raw: str) -> int:
    decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    if not decoded.startswith("t:") or not decoded[2:].isdigit():
        raise ValueError(raw)
    return int(decoded[2:])


def _cursor_page(
    request: Request, path: str, ids: list[int], render: Callable[[int], Record]
) -> Response:
    """Zendesk cursor pagination: ``page[size]`` with ``page[after]``/``page[before]``."""
    qp = request.query_params
    size = _int(qp.get("page[size]"), -1) if "page[size]" in qp else MAX_PER_PAGE
    if not 1 <= size <= MAX_PER_PAGE:
        return _error(400, "InvalidPaginationParameter", "page[size] must be between 1 and 100")
    try:
        if "page[before]" in qp:
            end = bisect_left(ids, _uncursor(qp["page[before]"]))
            page = ids[max(0, end - size) : end]
        else:
            after = qp.get("page[after]")
            start = bisect_right(ids, _uncursor(after)) if after is not None else 0
            page = ids[start : start + size]
    except (ValueError, binascii.Error):
        return _error(
            400, "InvalidPaginationParameter", "page[after]/page[before] is not a valid cursor"
        )
    more_after = bool(page) and page[-1] < ids[-1]
    more_before = bool(page) and page[0] > ids[0]

    def link(param: str, ticket_id: int) -> str:
        query = urlencode({"page[size]": size, param: _cursor(ticket_id)})
        return f"{_base(request)}{path}?{query}"

    meta = {
        "has_more": more_before if "page[before]" in qp else more_after,
        "after_cursor": _cursor(page[-1]) if page else None,
        "before_cursor": _cursor(page[0]) if page else None,
    }
    links = {
        "next": link("page[after]", page[-1]) if more_after else None,
        "prev": link("page[before]", page[0]) if more_before else None,
    }
    return JSONResponse({"tickets": [render(t) for t in page], "meta": meta, "links": links})


def _ids_param(request: Request, names: tuple[str, ...]) -> list[str] | Response:
    name = next((n for n in names if n in request.query_params), None)
    if name is None:
        return _error(400, "InvalidValue", f"One of {', '.join(names)} is required")
    raw = request.query_params[name].split(",")
    values = list(dict.fromkeys(v.strip() for v in raw if v.strip()))
    if len(values) > SHOW_MANY_LIMIT:
        return _error(400, "InvalidValue", f"Too many values in {name}: at most {SHOW_MANY_LIMIT}")
    if name == "ids" and not all(v.isdigit() for v in values):
        return _error(400, "InvalidValue", "ids must be a comma-separated list of integers")
    return values


def _mutation_shapes(world: World) -> tuple[MutationShape, ...]:
    person = world.people[0]
    user = person.zendesk_id or 360000000003
    ticket = person.tickets[0].id if person.tickets else 3600000030
    return (
        MutationShape(
            kind="ticket",
            needs={"requester": "the requester's user id"},
            sets="create",
            fields=("subject", "description", "status", "priority"),
            example={
                "vendor": "zendesk",
                "kind": "ticket",
                "requester": user,
                "create": {"subject": "Printer on fire", "priority": "high"},
            },
        ),
        MutationShape(
            kind="ticket",
            needs={"id": "the ticket's id"},
            fields=("subject", "status", "priority"),
            example={
                "vendor": "zendesk",
                "kind": "ticket",
                "id": ticket,
                "changes": {"status": "solved"},
            },
        ),
        MutationShape(
            kind="user",
            needs={"id": "the user's id"},
            fields=("name", "email", "phone", "external_id"),
            example={
                "vendor": "zendesk",
                "kind": "user",
                "id": user,
                "changes": {"phone": "+14155550101"},
            },
        ),
    )


def create_app(state: SandboxState) -> Starlette:
    index = _Index.build(state.world)
    state.mutations.register(
        "zendesk", webhook.sandbox_mutator(index), webhook.encode, _mutation_shapes(state.world)
    )
    gate = _Gate(SANDBOX_CREDENTIALS["zendesk"])

    async def search(request: Request) -> Response:
        try:
            q = parse_query(request.query_params.get("query"))
        except SearchSyntaxError as exc:
            return _error(400, "InvalidValue", str(exc))
        found = [(kind, rid) for kind in ("user", "ticket") for rid in index.search.find(kind, q)]
        sort_by = request.query_params.get("sort_by")
        if sort_by in ("created_at", "updated_at"):
            desc = request.query_params.get("sort_order", "desc") != "asc"
            found.sort(key=lambda kr: index.render(kr[0], kr[1], "")[sort_by], reverse=desc)
        base = _base(request)

        def render(kr: tuple[str, int]) -> Record:
            return {**index.render(kr[0], kr[1], base), "result_type": kr[0]}

        return _offset_page(request, "api/v2/search.json", found, render, "results")

    async def users_search(request: Request) -> Response:
        if "external_id" in request.query_params:
            found = sorted(index.by_external_id.get(request.query_params["external_id"], []))
        elif request.query_params.get("query", "").strip():
            try:
                found = index.search.find("user", parse_query(request.query_params["query"]))
            except SearchSyntaxError as exc:
                return _error(400, "InvalidValue", str(exc))
        else:
            return _error(400, "InvalidValue", "Supply query or external_id")
        base = _base(request)
        path = "api/v2/users/search.json"
        return _offset_page(request, path, found, lambda u: index.render("user", u, base), "users")

    async def tickets_requested(request: Request) -> Response:
        uid = request.path_params["rid"]
        if uid not in index.users:
            return _error(404, "RecordNotFound", "Not found")
        ids = index.by_requester.get(uid, [])
        base, path = _base(request), f"api/v2/users/{uid}/tickets/requested.json"

        def render(tid: int) -> Record:
            return index.render("ticket", tid, base)

        if any(k.startswith("page[") for k in request.query_params):
            return _cursor_page(request, path, ids, render)
        return _offset_page(request, path, ids, render, "tickets")

    def show_many(kind: str, names: tuple[str, ...]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            values = _ids_param(request, names)
            if isinstance(values, Response):
                return values
            if "ids" in request.query_params:
                ids = [int(v) for v in values if int(v) in index.records(kind)]
            else:
                ids = [u for v in values for u in index.by_external_id.get(v, [])]
            items = [index.render(kind, i, _base(request)) for i in ids]
            page = {"next_page": None, "previous_page": None, "count": len(items)}
            return JSONResponse({f"{kind}s": items, **page})

        return endpoint

    def show(kind: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            rid = request.path_params["rid"]
            if rid not in index.records(kind):
                return _error(404, "RecordNotFound", "Not found")
            return JSONResponse({kind: index.render(kind, rid, _base(request))})

        return endpoint

    async def not_found(_: Request) -> Response:
        return gate.stamp(_error(404, "InvalidEndpoint", "Not found"))

    endpoints: list[tuple[str, Endpoint]] = [
        ("/api/v2/search.json", search),
        ("/api/v2/users/search.json", users_search),
        ("/api/v2/users/show_many.json", show_many("user", ("ids", "external_ids"))),
        ("/api/v2/users/{rid:int}.json", show("user")),
        ("/api/v2/users/{rid:int}/tickets/requested.json", tickets_requested),
        ("/api/v2/tickets/show_many.json", show_many("ticket", ("ids",))),
        ("/api/v2/tickets/{rid:int}.json", show("ticket")),
    ]
    routes: list[BaseRoute] = []
    for path, endpoint in endpoints:
        for variant in (path, path.removesuffix(".json")):
            routes.append(vendor_route(state, "zendesk", variant, gate.guard(endpoint)))

    def fault_error(_: Request, status: int) -> Response:
        phrase = HTTPStatus(status).phrase
        return gate.stamp(_error(status, phrase.replace(" ", ""), f"Sandbox fault: {phrase}"))

    return _vendor_app(state, routes, not_found=not_found, error_response=fault_error)
