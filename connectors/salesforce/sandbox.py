"""A Salesforce REST API sandbox over the seeded world.

Serves, under any well-formed version segment (``/services/data/v61.0/…``):

* ``GET query`` and ``query/`` -- the SOQL subset of :mod:`._soql` over Contact,
  Account and Opportunity, ``{totalSize, done, nextRecordsUrl?, records}``,
  2,000 records a batch unless ``Sforce-Query-Options: batchSize=N`` (200-2,000);
* ``GET query/{locator}-{offset}`` -- the continuation a ``nextRecordsUrl`` names;
* ``GET search`` and ``search/`` -- the SOSL subset of :mod:`._sosl_parse` over Contact,
  Account and Opportunity, ``{"searchRecords": [...]}`` (see :mod:`._sosl_index`);
* ``GET``/``POST composite/sobjects/{type}`` -- multi-id read (800 ids by GET,
  2,000 by POST), ``null`` in the position of an unknown id;
* ``GET sobjects/{type}/{id}`` -- one record;
* ``GET /services/data`` -- the version list;
* ``POST /services/oauth2/token`` and ``POST /services/oauth2/revoke`` -- the
  client credentials flow for the sandbox connected app (see :mod:`._oauth`).

Errors are Salesforce's ``[{"message", "errorCode"}]`` arrays; a missing,
wrong or revoked bearer token (the static sandbox token and issued tokens are
accepted) gets 401 ``INVALID_SESSION_ID``; every API response carries
``Sforce-Limit-Info: api-usage=n/15000``. ``nextRecordsUrl`` is path-only, as
Salesforce sends it, so it never contains the mount prefix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.salesforce import webhook
from connectors.salesforce._oauth import TokenIssuer
from connectors.salesforce._records import Org, Plan, Row, render
from connectors.salesforce._soql import SoqlError, parse
from connectors.salesforce._sosl_index import SearchEngine
from connectors.salesforce._sosl_parse import parse as parse_sosl
from connectors.sdk._mutations import MutationShape
from connectors.sdk.sandbox import (
    SANDBOX_CREDENTIALS,
    Endpoint,
    SandboxState,
    vendor_app,
    vendor_route,
)
from connectors.sdk.world import World

__all__ = ["API_LIMIT", "GET_ID_LIMIT", "POST_ID_LIMIT", "create_app"]

API_LIMIT = 15_000
GET_ID_LIMIT = 800
POST_ID_LIMIT = 2_000
_BATCH_DEFAULT, _BATCH_MIN, _BATCH_MAX = 2_000, 200, 2_000
_VERSION = re.compile(r"v\d{2,3}\.\d")
_BATCH = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_VERSIONS = (("Summer '23", "58.0"), ("Winter '24", "59.0"), ("Spring '24", "60.0"),
             ("Summer '24", "61.0"), ("Winter '25", "62.0"))  # fmt: skip
_VENDOR = "salesforce"
# What Salesforce puts in errorCode for a status (the fault knobs answer these).
_STATUS_CODES = {401: "INVALID_SESSION_ID", 403: "REQUEST_LIMIT_EXCEEDED", 404: "NOT_FOUND",
                 405: "METHOD_NOT_ALLOWED", 429: "REQUEST_LIMIT_EXCEEDED",
                 503: "SERVER_UNAVAILABLE"}  # fmt: skip

Handler = Callable[[Request, str], Awaitable[Response]]


def _error(status: int, code: str, message: str, fields: Sequence[str] | None = None) -> Response:
    item: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        item["fields"] = list(fields)
    return JSONResponse([item], status_code=status)


def _not_found() -> Response:
    return JSONResponse(
        [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
        status_code=404,
    )


def _batch_size(header: str | None) -> int:
    """Salesforce treats the size as a preference and keeps it within 200-2,000."""
    match = _BATCH.search(header or "")
    if match is None:
        return _BATCH_DEFAULT
    return max(_BATCH_MIN, min(_BATCH_MAX, int(match.group(1))))


def _authorized(request: Request, token: str, issuer: TokenIssuer) -> bool:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    # Salesforce still honours the historical "OAuth <token>" scheme.
    return scheme.lower() in ("bearer", "oauth") and (
        credential == token or issuer.valid(credential)
    )


class _Cursors:
    """Server-side query cursors, as Salesforce keeps them; the oldest are dropped."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[list[Row], int]] = OrderedDict()

    def open(self, key: str, records: list[Row], batch: int) -> str:
        # Derived from the query, not a clock or counter: the same query
        # yields the same locator, which keeps runs reproducible.
        locator = "01g" + hashlib.sha256(key.encode()).hexdigest()[:15].upper()
        self._items[locator] = (records, batch)
        self._items.move_to_end(locator)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return locator

    def get(self, locator: str) -> tuple[list[Row], int] | None:
        return self._items.get(locator)


def _page(records: list[Row], start: int, batch: int, version: str, locator: str) -> Row:
    chunk = records[start : start + batch]
    end = start + len(chunk)
    body: Row = {"totalSize": len(records), "done": end >= len(records)}
    if not body["done"]:
        body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
    body["records"] = chunk
    return body


def _split(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _mutation_shapes(world: World) -> tuple[MutationShape, ...]:
    contact = world.people[0].crm_id or "003…"
    return (
        MutationShape(
            kind="contact",
            needs={"id": "the Contact's id (003…)"},
            fields=("FirstName", "LastName", "Email", "Phone", "Title", "AccountId"),
            example={
                "vendor": _VENDOR,
                "kind": "contact",
                "id": contact,
                "changes": {"Phone": "(415) 555-0100"},
            },
        ),
    )


def create_app(state: SandboxState) -> Starlette:
    org = Org(state.world)
    state.mutations.register(
        _VENDOR, webhook.sandbox_mutator(org), webhook.encode, _mutation_shapes(state.world)
    )
    cursors = _Cursors()
    engine = SearchEngine(org)
    credentials = SANDBOX_CREDENTIALS[_VENDOR]
    token = credentials["token"]
    issuer = TokenIssuer(credentials["client_id"], credentials["client_secret"])
    served = 0

    def api(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            nonlocal served
            served += 1
            version = str(request.path_params.get("version", ""))
            if not _authorized(request, token, issuer):
                response = _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            elif not _VERSION.fullmatch(version):
                response = _not_found()
            else:
                response = await handler(request, version)
            response.headers["Sforce-Limit-Info"] = f"api-usage={served}/{API_LIMIT}"
            return response

        return endpoint

    def fields_of(sobject: str, names: list[str]) -> list[str] | Response:
        resolved: list[str] = []
        for name in names:
            field = Org.field(sobject, name)
            if field is None:
                message = f"No such column '{name}' on sobject of type {sobject}"
                return _error(400, "INVALID_FIELD", message)
            resolved.append(field)
        return resolved

    async def versions(_: Request) -> Response:
        return JSONResponse(
            [
                {"label": label, "url": f"/services/data/v{v}", "version": v}
                for label, v in _VERSIONS
            ]
        )

    async def query(request: Request, version: str) -> Response:
        soql = request.query_params.get("q", "")
        if not soql.strip():
            return _error(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            plan = Plan.build(parse(soql))
        except SoqlError as exc:
            return _error(400, exc.error_code, exc.message)
        records = [render(row, plan.sobject, plan.fields, version) for row in org.run(plan)]
        batch = _batch_size(request.headers.get("sforce-query-options"))
        locator = ""
        if len(records) > batch:
            locator = cursors.open(f"{version}\n{batch}\n{soql}", records, batch)
        return JSONResponse(_page(records, 0, batch, version, locator))

    async def search(request: Request, version: str) -> Response:
        sosl = request.query_params.get("q", "")
        if not sosl.strip():
            return _error(400, "MALFORMED_SEARCH", "A search string has to be specified")
        try:
            results = engine.run(parse_sosl(sosl))
        except SoqlError as exc:
            return _error(400, exc.error_code, exc.message)
        records = [
            render(row, sobject, fields, version)
            for sobject, fields, rows in results
            for row in rows
        ]
        return JSONResponse({"searchRecords": records})

    async def query_more(request: Request, version: str) -> Response:
        locator, _, offset = str(request.path_params["locator"]).rpartition("-")
        entry = cursors.get(locator) if offset.isdigit() else None
        if entry is None:
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        records, batch = entry
        return JSONResponse(_page(records, int(offset), batch, version, locator))

    async def collection(request: Request, version: str) -> Response:
        sobject = Org.sobject(str(request.path_params["sobject"]))
        if sobject is None:
            return _not_found()
        if request.method == "POST":
            try:
                body = json.loads(await request.body())
            except ValueError:
                return _error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
            if not isinstance(body, dict):
                return _error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            ids, names, limit = (
                _strings(body.get("ids")),
                _strings(body.get("fields")),
                POST_ID_LIMIT,
            )
        else:
            ids = _split(request.query_params.get("ids"))
            names = _split(request.query_params.get("fields"))
            limit = GET_ID_LIMIT
        if not ids:
            return _error(400, "MISSING_ARGUMENT", "Required parameter 'ids' is missing")
        if not names:
            return _error(400, "MISSING_ARGUMENT", "Required parameter 'fields' is missing")
        if len(ids) > limit:
            message = (
                f"record limit reached. cannot submit more than {limit} records into this call"
            )
            return _error(400, "EXCEEDED_ID_LIMIT", message)
        fields = fields_of(sobject, names)
        if isinstance(fields, Response):
            return fields
        rows = (org.get(sobject, record_id) for record_id in ids)
        return JSONResponse(
            [None if row is None else render(row, sobject, fields, version) for row in rows]
        )

    async def one(request: Request, version: str) -> Response:
        sobject = Org.sobject(str(request.path_params["sobject"]))
        row = org.get(sobject, str(request.path_params["record_id"])) if sobject else None
        if sobject is None or row is None:
            return _not_found()
        names = _split(request.query_params.get("fields")) or list(row)
        fields = fields_of(sobject, names)
        if isinstance(fields, Response):
            return fields
        return JSONResponse(render(row, sobject, fields, version))

    base = "/services/data/{version}"
    routes = [
        vendor_route(state, _VENDOR, "/services/data", versions),
        vendor_route(state, _VENDOR, "/services/data/", versions),
        vendor_route(state, _VENDOR, "/services/oauth2/token", issuer.token, methods=("POST",)),
        vendor_route(state, _VENDOR, "/services/oauth2/revoke", issuer.revoke, methods=("POST",)),
        vendor_route(state, _VENDOR, f"{base}/query", api(query)),
        vendor_route(state, _VENDOR, f"{base}/query/", api(query)),
        vendor_route(state, _VENDOR, f"{base}/query/{{locator}}", api(query_more)),
        vendor_route(state, _VENDOR, f"{base}/search", api(search)),
        vendor_route(state, _VENDOR, f"{base}/search/", api(search)),
        vendor_route(
            state,
            _VENDOR,
            f"{base}/composite/sobjects/{{sobject}}",
            api(collection),
            methods=("GET", "POST"),
        ),
        vendor_route(state, _VENDOR, f"{base}/sobjects/{{sobject}}/{{record_id}}", api(one)),
    ]

    async def not_found(_: Request) -> Response:
        return _not_found()

    def fault_error(_: Request, status: int) -> Response:
        code = _STATUS_CODES.get(
            status, "UNKNOWN_EXCEPTION" if status >= 500 else "INVALID_OPERATION"
        )
        response = _error(status, code, f"Sandbox fault: {HTTPStatus(status).phrase}")
        response.headers["Sforce-Limit-Info"] = f"api-usage={served}/{API_LIMIT}"
        return response

    app = vendor_app(state, routes, not_found=not_found, error_response=fault_error)

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        allowed = (getattr(exc, "headers", None) or {}).get("Allow", "GET")
        message = f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}"
        return _error(405, "METHOD_NOT_ALLOWED", message)

    app.add_exception_handler(405, method_not_allowed)
    return app
