"""Reading a GraphQL POST body and choosing the answer's media type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cross_web import HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import Response
from strawberry.http import GraphQLRequestData

import schema.errors
from gateway._graphql_http import (
    MAX_NESTING,
    GraphQLOverHTTP,
    is_json_body,
    negotiate,
    parse_body,
)
from schema import build_schema

JSON = "application/json"
GR = "application/graphql-response+json"


def test_a_request_is_read_as_sent() -> None:
    body = {
        "query": "query Q($e: String) { customer(email: $e) { id } }",
        "variables": {"e": "ann@acme.example", "deep": [[{"x": "é😀"}]]},
        "operationName": "Q",
        "extensions": {"trace": True},
    }
    request = parse_body(json.dumps(body).encode())
    assert (request.query, request.variables, request.operation_name, request.extensions) == (
        body["query"], body["variables"], "Q", {"trace": True},
    )  # fmt: skip


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("where", ["variables", "extensions"])
def test_nesting_is_bounded_exactly(where: str) -> None:
    # The body is one level and its variables another: MAX_NESTING - 2 arrays fit.
    fits = {"query": "{ a }", where: {"a": _deep(MAX_NESTING - 2)}}
    assert parse_body(json.dumps(fits).encode()).query == "{ a }"
    deeper = {"query": "{ a }", where: {"a": _deep(MAX_NESTING - 1)}}
    with pytest.raises(HTTPException) as caught:
        parse_body(json.dumps(deeper).encode())
    assert caught.value.status_code == 400
    assert f"deeper than {MAX_NESTING} levels" in caught.value.reason


def test_nesting_counts_objects_and_arrays_alike() -> None:
    inner: Any = 1
    for i in range(MAX_NESTING):
        inner = {"k": inner} if i % 2 else [inner]
    with pytest.raises(HTTPException):
        parse_body(json.dumps({"query": "{ a }", "variables": {"v": inner}}).encode())


def test_wide_is_not_deep() -> None:
    wide = {
        "query": "{ a }",
        "variables": {"v": [[1]] * 5000, "w": {str(i): [] for i in range(999)}},
    }
    assert parse_body(json.dumps(wide).encode()).variables == wide["variables"]


def _read(body: bytes) -> GraphQLRequestData | HTTPException:
    try:
        return parse_body(body)
    except HTTPException as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_request_or_a_400(body: bytes) -> None:
    read = _read(body)
    if isinstance(read, HTTPException):
        assert (read.status_code, bool(read.reason)) == (400, True)
    else:
        assert isinstance(read.query, str) and read.query


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["query", "variables", "operationName", "extensions", "other"]), JSONISH
    )
    | JSONISH
)
def test_any_json_is_a_request_or_a_400(value: Any) -> None:
    read = _read(json.dumps(value).encode())
    if isinstance(read, HTTPException):
        assert read.status_code == 400
    else:
        assert isinstance(value, dict)
        assert read.query == value["query"]
        assert read.variables == value.get("variables")


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("", JSON),
        ("   ", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GR, GR),
        (f"{GR}, {JSON};q=0.9", GR),
        (f"{JSON}, {GR}", JSON),
        (f"{GR}, {JSON}", GR),
        (f"{JSON};q=0.9, {GR}", GR),
        (f"*/*, {GR}", GR),
        (f"{JSON};q=0, */*", GR),
        (f"{GR};q=0, */*", JSON),
        ("APPLICATION/JSON", JSON),
        (f" {GR} ; charset=utf-8 ; q=1 ", GR),
        (f"{JSON};q=0.5, */*;q=0.9", GR),
        ("text/html", None),
        (f"{JSON};q=0", None),
        (f"{JSON};q=nan, {GR};q=2", None),
        (f"{JSON};q=abc", None),
        ("text/html, application/xhtml+xml, */*;q=0.8", JSON),
        ("application/json-patch+json", None),
    ],
)
def test_negotiation(accept: str, media: str | None) -> None:
    assert negotiate(accept) == media


def test_a_long_accept_header_is_negotiated_too() -> None:
    header = ", ".join(["text/html"] * 200 + [GR])
    assert len(header) > 256
    assert negotiate(header) == GR


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        (JSON, True),
        (GR, True),
        ("Application/JSON ; charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/json; boundary=x", True),
        ("application/json; charset=utf-16", False),
        ("application/json; charset=iso-8859-1", False),
        ("application/jsonp", False),
        ("text/plain", False),
        ("", False),
    ],
)
def test_json_bodies(content_type: str, ok: bool) -> None:
    assert is_json_body(content_type) is ok


CODES = [
    "BAD_REQUEST",
    "UNSUPPORTED_MEDIA_TYPE",
    "NOT_ACCEPTABLE",
    "REQUEST_TOO_LARGE",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "BAD_USER_INPUT",
    "OPERATION_NAME_REQUIRED",
    "OPERATION_NOT_FOUND",
    "INTERNAL",
]


@pytest.mark.parametrize("code", CODES)
def test_every_request_error_code_is_documented(code: str) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"`{code}`" in readme
    assert code in (schema.errors.__doc__ or "")


@pytest.mark.parametrize(
    ("media", "answer", "status"),
    [
        (GR, {"errors": [{"message": "x", "extensions": {"code": "BAD_USER_INPUT"}}]}, 400),
        # Nothing ran because the server failed, not the request: a 5xx.
        (GR, {"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL"}}]}, 500),
        (GR, {"data": None, "errors": [{"message": "x", "path": ["customer"]}]}, 200),
        (GR, {"data": {"__typename": "Query"}}, 200),
        (
            JSON,
            {"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL"}}]},
            200,
        ),
        (JSON, {"errors": [{"message": "x", "extensions": {"code": "BAD_USER_INPUT"}}]}, 200),
    ],
)
def test_status_follows_the_answer_and_the_media_type(
    media: str, answer: dict[str, Any], status: int
) -> None:
    view = GraphQLOverHTTP(build_schema())
    sub_response = Response()
    sub_response.media_type = media
    response = view.create_response(answer, sub_response)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.headers["content-type"].startswith(media)
    assert json.loads(response.body) == answer
