"""GraphQL over HTTP as clients expect it (the GraphQL-over-HTTP draft, stage 2).

A POST body is read once, strictly: UTF-8 JSON, one object (no batches) with
``query`` (a string), and ``variables``, ``operationName`` and ``extensions``
of the right types or null, nested at most :data:`MAX_NESTING` deep. Anything
else is not a GraphQL request: 400 with ``extensions.code`` ``BAD_REQUEST``
and a message naming the problem, as ``application/json``.

A well-formed request gets a GraphQL response in the media type the
``Accept`` header prefers (:func:`negotiate`; 406 when it takes neither)::

    answer                          application/json   application/graphql-response+json
    data (even with field errors)   200                200
    request error (no data)         200                400 (500 if the code is INTERNAL)

A request error -- the document does not parse or validate, the operation
cannot be chosen, a variable does not coerce -- happens before execution, so
the response has no ``data`` entry at all (GraphQL spec, "Response Format").

Exceptions::

    cross_web.HTTPException     status 400: the body is not a GraphQL request
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, NoReturn

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from gateway.context import Context

__all__ = [
    "GRAPHQL_RESPONSE",
    "JSON",
    "MAX_NESTING",
    "GraphQLOverHTTP",
    "is_json_body",
    "negotiate",
    "parse_body",
]

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
#: Arrays and objects inside one another, the body itself counted: the
#: schema's inputs nest three deep; json's C parser overflows near 1,000.
MAX_NESTING = 32
# A surrogate escape in the text: the only way a lone surrogate (not Unicode
# text, and not encodable to a vendor) gets into a parsed string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_INTERNAL = "INTERNAL"
# Each media range an Accept header may hold that matches what is served:
# its specificity, and the media types it matches.
_RANGES = {
    "*/*": (0, (JSON, GRAPHQL_RESPONSE)),
    "application/*": (1, (JSON, GRAPHQL_RESPONSE)),
    JSON: (2, (JSON,)),
    GRAPHQL_RESPONSE: (2, (GRAPHQL_RESPONSE,)),
}


def _bad(message: str) -> NoReturn:
    raise HTTPException(400, message)


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> NoReturn:
    raise _NotJson(f"{name} is not a JSON value")


# One decoder: json.loads with any option builds a new one per call (~2 us).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _nesting(value: Any, limit: int) -> bool:
    """Whether ``value`` holds arrays or objects more than ``limit`` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_body(body: bytes) -> GraphQLRequestData:
    """The GraphQL request in a POST body; ``HTTPException(400)`` saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        _bad("the body is not UTF-8 text")
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte order mark: RFC 8259 lets a parser ignore it
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        _bad(f"the body nests arrays or objects deeper than {MAX_NESTING} levels")
    except json.JSONDecodeError as exc:
        _bad(f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except _NotJson as exc:
        _bad(f"the body is not valid JSON: {exc}")
    except ValueError:  # Python refuses to convert integers of over 4,300 digits
        _bad("the body holds a number too long to read")
    if isinstance(data, list):
        _bad("batched requests are not supported: send one operation per request")
    if not isinstance(data, dict):
        _bad("the body must be a JSON object with a query")
    query = data.get("query")
    if query is None or query == "":
        _bad("the body has no query")
    if not isinstance(query, str):
        _bad("query must be a string")
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        _bad("variables must be an object or null")
    operation = data.get("operationName")
    if operation is not None and not isinstance(operation, str):
        _bad("operationName must be a string or null")
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        _bad("extensions must be an object or null")
    # The body is level 1; its variables and extensions are level 2.
    if any(v and _nesting(v, MAX_NESTING - 1) for v in (variables, extensions)):
        _bad(f"the body nests arrays or objects deeper than {MAX_NESTING} levels")
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            _bad("the body escapes a lone UTF-16 surrogate (\\uD800-\\uDFFF): not Unicode text")
    return GraphQLRequestData(
        query=query, variables=variables, operation_name=operation, extensions=extensions
    )


def is_json_body(content_type: str) -> bool:
    """Whether a Content-Type announces a UTF-8 JSON body (UTF-8 unless it says otherwise)."""
    media, _, parameters = content_type.partition(";")
    if media.strip().lower() not in (JSON, GRAPHQL_RESPONSE):
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() in ("utf-8", "utf8")
    return True


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def negotiate(accept: str) -> str | None:
    """The response media type for an ``Accept`` header; ``None``: neither is acceptable.

    The highest quality wins, then the more specific range, then the first
    listed; on a tie (``*/*`` alone, or no header) ``application/json``, which
    every client reads. A media type's quality is that of the most specific
    range matching it (RFC 9110, section 12.5.1).
    """
    # Clients send the same few headers; an odd long one is not worth a slot.
    return _cached_negotiate(accept) if len(accept) <= 256 else _negotiate(accept)


def _negotiate(accept: str) -> str | None:
    if not accept.strip():
        return JSON
    offers: dict[str, tuple[float, int, int]] = {}
    for index, item in enumerate(accept.split(",")):
        media, _, parameters = item.partition(";")
        matched = _RANGES.get(media.strip().lower())
        if matched is None:
            continue
        specificity, served_types = matched
        q = _quality(parameters)
        for served in served_types:
            known = offers.get(served)
            if known is None or specificity > known[1]:
                offers[served] = (q, specificity, -index)
    ranked = [(*rank, served == JSON, served) for served, rank in offers.items() if rank[0] > 0]
    return max(ranked)[-1] if ranked else None


_cached_negotiate = lru_cache(maxsize=64)(_negotiate)


def _is_request_error(result: ExecutionResult) -> bool:
    # Every root field is nullable: after execution ``data`` is an object, so
    # no data and no error at a path means nothing was executed.
    return (
        result.data is None
        and bool(result.errors)
        and all(e.path is None for e in result.errors or ())
    )


class GraphQLOverHTTP(GraphQL[Context, None]):
    """strawberry's ASGI view, reading and answering as the spec says."""

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method != "POST":
            return await super().parse_http_body(request)
        return parse_body(await request.get_body())

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        response = await super().get_sub_response(request)
        # Remembered for create_response, which is not given the request.
        response.media_type = negotiate(request.headers.get("accept", "")) or JSON
        return response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if not _is_request_error(result):
            return await super().process_result(request, result)
        answer: GraphQLHTTPResponse = {"errors": [e.formatted for e in result.errors or ()]}
        if result.extensions:
            answer["extensions"] = result.extensions
        return answer

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if sub_response.media_type != GRAPHQL_RESPONSE:
            return response
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        if isinstance(response_data, dict) and "data" not in response_data:
            errors: list[dict[str, Any]] = response_data.get("errors") or []  # type: ignore[assignment]
            codes = {(e.get("extensions") or {}).get("code") for e in errors}
            response.status_code = 500 if _INTERNAL in codes else 400
        return response
