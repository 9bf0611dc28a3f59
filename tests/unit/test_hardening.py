"""The hardened endpoint's query limits, introspection, suggestions and error masking.

Every query runs against a context that records and refuses any use: a
rejected query must leave it untouched (no resolver ran, so no upstream call
happened), an accepted one must reach a resolver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from graphql import Lexer, Source, TokenKind, get_introspection_query
from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionResult

from gateway.config import ConfigError
from gateway.policy import DEFAULT_POLICY
from gateway.runtime import DEV_PRINCIPAL
from schema._logging import GatewaySchema
from schema.extensions import HardeningLimits, hardening_extensions, limits_from_mapping
from schema.extensions.operations import OperationChoice
from schema.query import Query

LIMIT_CODES = {
    "QUERY_TOO_DEEP",
    "TOO_MANY_ALIASES",
    "TOO_MANY_TOKENS",
    "TOO_MANY_DIRECTIVES",
    "QUERY_TOO_COSTLY",
    "INTROSPECTION_DISABLED",
    "INTROSPECTION_TOO_DEEP",
}


class Tripwire:
    """A resolver context that records every use and fails it.

    Only what the field guard reads to decide access is there (an admin): the
    guard runs before a resolver, and is not what these tests are about.
    """

    request_id: str | None = None
    principal = DEV_PRINCIPAL
    policy = DEFAULT_POLICY

    def __init__(self, request_id: str | None = None) -> None:
        self.memo: dict[Any, Any] = {}
        self.touched: list[str] = []
        if request_id is not None:
            self.request_id = request_id

    def __getattr__(self, name: str) -> Any:
        self.touched.append(name)
        raise RuntimeError(f"resolver used context.{name}")


def make_schema(
    *,
    hardened: bool = True,
    cached: bool = False,
    extra: tuple[Any, ...] = (),
    **limits: Any,
) -> strawberry.Schema:
    extensions: list[Any] = [*hardening_extensions(HardeningLimits(**limits), hardened=hardened)]
    if cached:
        # What the gateway runs: the limits must hold with both caches in front.
        extensions += [lambda: ParserCache(maxsize=64), lambda: ValidationCache(maxsize=64)]
    return GatewaySchema(
        query=Query,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[*extensions, *extra],
    )


async def run(
    schema: strawberry.Schema,
    query: str,
    variables: dict[str, Any] | None = None,
    context: Tripwire | None = None,
) -> tuple[ExecutionResult, Tripwire]:
    context = context or Tripwire()
    result = await schema.execute(query, variable_values=variables, context_value=context)
    return result, context


def codes(result: ExecutionResult) -> list[str | None]:
    return [(e.extensions or {}).get("code") for e in result.errors or []]


def assert_rejected(
    result: ExecutionResult, context: Tripwire, code: str, limit: int | None = None
) -> dict[str, Any]:
    assert context.touched == [], "a resolver ran for a rejected query"
    assert result.data is None
    assert codes(result) == [code], [e.message for e in result.errors or []]
    extensions: dict[str, Any] = result.errors[0].extensions  # type: ignore[index,assignment]
    if limit is not None:
        assert extensions["limit"] == limit
    return extensions


def assert_ran(result: ExecutionResult, context: Tripwire) -> None:
    assert context.touched, [e.message for e in result.errors or []]
    assert not LIMIT_CODES & set(codes(result))


def token_count(query: str) -> int:
    lexer = Lexer(Source(query))
    count = 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def nested(depth: int) -> str:
    """A query exactly ``depth`` field levels deep (``depth >= 3``)."""
    inner = "{ name }"
    for _ in range(depth - 3):
        inner = "{ parent " + inner + " }"
    return '{ customer(email: "a@example.com") { account ' + inner + " } }"


# -- depth --------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize(("depth", "allowed"), [(9, True), (10, True), (11, False)])
async def test_depth_limit(depth: int, allowed: bool, cached: bool) -> None:
    result, context = await run(make_schema(cached=cached), nested(depth))
    if allowed:
        assert_ran(result, context)
    else:
        assert_rejected(result, context, "QUERY_TOO_DEEP", 10)


async def test_depth_counts_through_fragments() -> None:
    query = (
        '{ customer(email: "a@example.com") { ...Deep } }'
        " fragment Deep on Customer { account { parent { parent { name } } } }"
    )
    result, context = await run(make_schema(max_depth=5), query)
    assert_ran(result, context)
    result, context = await run(make_schema(max_depth=4), query)
    assert_rejected(result, context, "QUERY_TOO_DEEP", 4)


# -- aliases ------------------------------------------------------------------


def aliased(count: int) -> str:
    fields = " ".join(f'a{i}: customer(email: "c{i}@example.com") {{ id }}' for i in range(count))
    return "{ " + fields + " }"


@pytest.mark.parametrize(("count", "allowed"), [(14, True), (15, True), (16, False)])
async def test_alias_limit(count: int, allowed: bool) -> None:
    result, context = await run(make_schema(), aliased(count))
    if allowed:
        assert_ran(result, context)
    else:
        extensions = assert_rejected(result, context, "TOO_MANY_ALIASES", 15)
        assert str(count) in result.errors[0].message  # type: ignore[index]
        assert "code" in extensions


async def test_aliases_count_every_fragment_spread() -> None:
    query = (
        '{ ...Eight customer(email: "x@example.com") { id } ...Eight }'
        " fragment Eight on Query { " + " ".join(f"t{i}: __typename" for i in range(8)) + " }"
    )
    result, context = await run(make_schema(max_aliases=16), query)
    assert_ran(result, context)
    result, context = await run(make_schema(max_aliases=15), query)
    assert_rejected(result, context, "TOO_MANY_ALIASES", 15)


async def test_fragment_bomb_is_measured_without_expanding_it() -> None:
    # 10 ** 8 aliased fields once expanded: walking every spread would not end.
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ {' '.join([f'...F{i + 1}'] * 10)} }}" for i in range(8)]
    parts.append("fragment F8 on Query { a: __typename }")
    started = time.perf_counter()
    result, context = await run(make_schema(), "\n".join(parts))
    assert time.perf_counter() - started < 2.0
    assert_rejected(result, context, "TOO_MANY_ALIASES", 15)
    assert "100000000 aliases" in result.errors[0].message  # type: ignore[index]


# -- tokens -------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize(("spare", "allowed"), [(1, True), (0, True), (-1, False)])
async def test_token_limit(spare: int, allowed: bool, cached: bool) -> None:
    query = aliased(3)
    limit = token_count(query) + spare
    result, context = await run(make_schema(cached=cached, max_tokens=limit), query)
    if allowed:
        assert_ran(result, context)
    else:
        assert_rejected(result, context, "TOO_MANY_TOKENS", limit)
        assert "Syntax Error" not in result.errors[0].message  # type: ignore[index]


async def test_comments_count_as_tokens() -> None:
    query = "{ __typename }\n" + "# padding\n" * 50
    result, context = await run(make_schema(max_tokens=20), query)
    assert_rejected(result, context, "TOO_MANY_TOKENS", 20)


async def test_other_syntax_errors_keep_their_message() -> None:
    result, _ = await run(make_schema(cached=True), "{ customer(")
    assert result.errors and result.errors[0].message.startswith("Syntax Error")


# -- directives ---------------------------------------------------------------

TWO_ON_ONE = '{ customer(email: "a@example.com") @include(if: true) @skip(if: false) { id } }'
ONE_ON_ONE = '{ customer(email: "a@example.com") @include(if: true) { id } }'


@pytest.mark.parametrize(
    ("query", "per_field", "allowed"),
    [(ONE_ON_ONE, 2, True), (TWO_ON_ONE, 2, True), (TWO_ON_ONE, 1, False)],
)
async def test_directives_per_field(query: str, per_field: int, allowed: bool) -> None:
    result, context = await run(make_schema(max_directives_per_field=per_field), query)
    if allowed:
        assert_ran(result, context)
    else:
        assert_rejected(result, context, "TOO_MANY_DIRECTIVES", per_field)


@pytest.mark.parametrize(("fields", "allowed"), [(4, True), (5, True), (6, False)])
async def test_directives_per_document(fields: int, allowed: bool) -> None:
    # Two directives per field: 8, 10, 12 against a limit of 10.
    body = " ".join(
        f'c{i}: customer(email: "c{i}@example.com") @include(if: true) @skip(if: false) {{ id }}'
        for i in range(fields)
    )
    result, context = await run(make_schema(max_aliases=20), "{ " + body + " }")
    if allowed:
        assert_ran(result, context)
    else:
        assert_rejected(result, context, "TOO_MANY_DIRECTIVES", 10)


async def test_directive_overloading_is_one_error_not_one_per_directive() -> None:
    result, context = await run(
        make_schema(), "query { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }"
    )
    assert_rejected(result, context, "TOO_MANY_DIRECTIVES", 3)


# -- cost ---------------------------------------------------------------------

CUSTOMERS = "query($emails: [String!]) { customers(emails: $emails) { id tickets { id } } }"


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize(("count", "allowed"), [(49, True), (50, True), (51, False)])
async def test_cost_follows_the_list_sizes_in_variables(
    count: int, allowed: bool, cached: bool
) -> None:
    # Each customer is 1 object plus its tickets, assumed 25: 50 cost 1300.
    schema = make_schema(cached=cached, max_cost=1300)
    emails = [f"c{i}@example.com" for i in range(count)]
    result, context = await run(schema, CUSTOMERS, {"emails": emails})
    if allowed:
        assert_ran(result, context)
    else:
        extensions = assert_rejected(result, context, "QUERY_TOO_COSTLY", 1300)
        assert extensions["cost"] == 51 * 26


async def cost_of(query: str, variables: dict[str, Any] | None = None, **limits: Any) -> int:
    # A limit of 0 rejects everything, and the rejection tells the cost.
    result, context = await run(make_schema(max_cost=0, **limits), query, variables)
    extensions = assert_rejected(result, context, "QUERY_TOO_COSTLY", 0)
    cost: int = extensions["cost"]
    return cost


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ('{ customers(emails: ["a@x.io", "b@x.io", "c@x.io"]) { id } }', None, 3),
        ('{ customers(emails: "a@x.io") { id email } }', None, 1),
        # activity(first: 10) by default; marketing and customer are 1 each.
        ('{ customer(email: "a@x.io") { marketing { activity { kind } } } }', None, 12),
        ('{ customer(email: "a@x.io") { marketing { activity(first: 90) { kind } } } }', None, 92),
        # first sizes a connection's edges: 1 + first * (edge + node).
        ("{ accounts(first: 30) { edges { node { name } } pageInfo { hasNextPage } } }", None, 62),
        ("query($n: Int) { accounts(first: $n) { edges { node { id } } } }", {"n": 5}, 11),
        ("query($n: Int = 7) { accounts(first: $n) { edges { node { id } } } }", None, 15),
        # Without a variable, the field's own default (20) applies.
        ("query($n: Int) { accounts(first: $n) { edges { node { id } } } }", None, 41),
        # Scalars, scalar lists and __typename cost nothing.
        ('{ customer(email: "a@x.io") { id emails __typename } }', None, 1),
    ],
)
async def test_cost_estimates(query: str, variables: dict[str, Any] | None, cost: int) -> None:
    assert await cost_of(query, variables) == cost


async def test_unbounded_lists_use_the_configured_sizes() -> None:
    query = '{ customer(email: "a@x.io") { tickets { id } sources { system } } }'
    assert await cost_of(query) == 1 + 25 + 10
    sized = await cost_of(query, list_sizes={"Customer.tickets": 3}, default_list_size=2)
    assert sized == 1 + 3 + 2


async def test_cost_counts_each_fragment_spread() -> None:
    query = (
        '{ a: customer(email: "a@x.io") { ...T } b: customer(email: "b@x.io") { ...T } }'
        " fragment T on Customer { tickets { id } }"
    )
    assert await cost_of(query) == 2 * (1 + 25)


# -- introspection and suggestions --------------------------------------------

CIRCULAR = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
INTROSPECTION = [
    "{ __schema { types { name } } }",
    '{ __type(name: "Customer") { name fields { name } } }',
    CIRCULAR,
    get_introspection_query(),
]


@pytest.mark.parametrize("query", INTROSPECTION)
async def test_introspection_refused_when_hardened(query: str) -> None:
    result, context = await run(make_schema(), query)
    assert_rejected(result, context, "INTROSPECTION_DISABLED")


@pytest.mark.parametrize("query", [q for q in INTROSPECTION if q is not CIRCULAR])
async def test_introspection_allowed_when_not_hardened(query: str) -> None:
    result, _ = await run(make_schema(hardened=False), query)
    assert result.errors is None
    assert result.data


async def test_circular_introspection_bounded_when_not_hardened() -> None:
    result, context = await run(make_schema(hardened=False), CIRCULAR)
    assert_rejected(result, context, "INTROSPECTION_TOO_DEEP")


async def test_typename_stays_available() -> None:
    result, _ = await run(make_schema(), "{ __typename }")
    assert result.errors is None
    assert result.data == {"__typename": "Query"}


SUGGESTING = [
    ('{ customr(email: "a@x.io") { id } }', None),
    ('{ customer(emial: "a@x.io") { id } }', None),
    (
        "query($r: SystemRefInput) { customer(ref: $r) { id } }",
        {"r": {"sytem": "zendesk", "id": "1"}},
    ),
]


@pytest.mark.parametrize(("query", "variables"), SUGGESTING)
async def test_no_field_suggestions_when_hardened(
    query: str, variables: dict[str, Any] | None
) -> None:
    result, context = await run(make_schema(cached=True), query, variables)
    assert context.touched == []
    messages = [e.message for e in result.errors or []]
    assert messages
    assert not any("Did you mean" in m for m in messages), messages


@pytest.mark.parametrize(("query", "variables"), SUGGESTING)
async def test_suggestions_shown_when_not_hardened(
    query: str, variables: dict[str, Any] | None
) -> None:
    result, _ = await run(make_schema(hardened=False), query, variables)
    assert any("Did you mean" in e.message for e in result.errors or [])


async def test_suggestion_probe_on_introspection_learns_nothing() -> None:
    result, context = await run(make_schema(), "query cop { __schema { directive } }")
    assert_rejected(result, context, "INTROSPECTION_DISABLED")
    assert "Did you mean" not in result.errors[0].message  # type: ignore[index]


async def test_limits_still_apply_when_not_hardened() -> None:
    result, context = await run(make_schema(hardened=False), nested(11))
    assert_rejected(result, context, "QUERY_TOO_DEEP", 10)


# -- masking ------------------------------------------------------------------


async def test_unexpected_error_masked_and_logged_with_its_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="c360.graphql")
    result, context = await run(make_schema(), '{ customer(email: "a@x.io") { id } }')
    assert context.touched
    [error] = result.errors or []
    assert error.message == "Internal error"
    assert "context" not in error.message
    request_id = error.extensions["requestId"]  # type: ignore[index]
    assert error.extensions == {"code": "INTERNAL", "requestId": request_id}
    assert error.original_error is None
    [record] = [r for r in caplog.records if r.name == "c360.graphql"]
    assert request_id in record.getMessage()
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.parametrize(
    ("given", "echoed"), [("req-42", True), ("bad id\nforged", False), ("req-43\n", False)]
)
async def test_request_id_from_the_context(given: str, echoed: bool) -> None:
    query = '{ customer(email: "a@x.io") { id } }'
    result, _ = await run(make_schema(), query, context=Tripwire(request_id=given))
    request_id = result.errors[0].extensions["requestId"]  # type: ignore[index]
    assert (request_id == given) is echoed
    assert "\n" not in request_id


async def test_coded_and_request_errors_pass_through() -> None:
    schema = make_schema()
    result, context = await run(schema, "{ customer { id } }")
    assert context.touched == []
    assert codes(result) == ["BAD_USER_INPUT"]
    assert "exactly one" in result.errors[0].message  # type: ignore[index]
    result, _ = await run(schema, "{ customer(email: 1) { id } }")
    assert result.errors and result.errors[0].message != "Internal error"


async def test_each_error_is_logged_once_and_only_unexpected_ones_with_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    schema = make_schema()
    await run(schema, "{ customer { id } }")  # coded: bad input
    await run(schema, "{ customer(email: 1) { id } }")  # a validation error
    await run(schema, '{ customer(email: "a@x.io") { id } }')  # a bug: masked
    logged = [r for r in caplog.records if r.name in ("c360.graphql", "strawberry.execution")]
    assert [(r.name, r.levelno, bool(r.exc_info)) for r in logged] == [
        ("c360.graphql", logging.INFO, False),
        ("c360.graphql", logging.INFO, False),
        ("c360.graphql", logging.ERROR, True),
    ]
    assert "BAD_USER_INPUT" in logged[0].getMessage()
    # Logged under the code the client gets, though it is added after logging.
    assert "GRAPHQL_VALIDATION_FAILED" in logged[1].getMessage()


# -- request errors: every one coded, nothing executed -------------------------

REQUEST_ERRORS = [
    ("{ customer(", None, "GRAPHQL_PARSE_FAILED"),
    ('{ customer(email: "a@x.io") { id ', None, "GRAPHQL_PARSE_FAILED"),
    ("{ nope }", None, "GRAPHQL_VALIDATION_FAILED"),
    ('{ customer(emial: "a@x.io") { id } }', None, "GRAPHQL_VALIDATION_FAILED"),
    ("{ customer(email: 1) { id } }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("fragment A on Query { ...B } fragment B on Query { ...A } { ...A }", None,
     "GRAPHQL_VALIDATION_FAILED"),
    ("query($e: String) { customer(email: $e) { id } }", {"e": 5}, "BAD_USER_INPUT"),
    ("query($r: SystemRefInput!) { customer(ref: $r) { id } }", {}, "BAD_USER_INPUT"),
    ("query($r: SystemRefInput) { customer(ref: $r) { id } }", {"r": {"system": "x"}},
     "BAD_USER_INPUT"),
    ("query A { __typename } query B { __typename }", None, "OPERATION_NAME_REQUIRED"),
    ('{ customer(email: "a@x.io") { id } } { __typename }', None, "OPERATION_NAME_REQUIRED"),
    ("fragment F on Query { __typename }", None, "OPERATION_NOT_FOUND"),
]  # fmt: skip


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize(("query", "variables", "code"), REQUEST_ERRORS)
async def test_request_errors_are_coded_and_run_nothing(
    query: str, variables: dict[str, Any] | None, code: str, cached: bool
) -> None:
    schema = make_schema(cached=cached, extra=(OperationChoice,))
    for _ in range(2):  # the second time from the caches, which share errors
        result, context = await run(schema, query, variables)
        assert context.touched == [], "a resolver ran for a refused request"
        assert result.data is None
        assert result.errors
        assert {e.extensions["code"] for e in result.errors} == {code}  # type: ignore[index]
        assert all(e.path is None for e in result.errors)


async def test_validation_aborted_is_coded_too() -> None:
    query = "{ " + " ".join(f"f{i}" for i in range(120)) + " }"
    result, _ = await run(make_schema(cached=True), query)
    messages = [e.message for e in result.errors or []]
    assert messages[-1].endswith("Validation aborted.")
    assert set(codes(result)) == {"GRAPHQL_VALIDATION_FAILED"}


async def test_the_named_operation_runs_and_no_other() -> None:
    schema = make_schema(extra=(OperationChoice,))
    document = 'query A { __typename } query B { customer(email: "a@x.io") { id } }'
    result = await schema.execute(document, operation_name="A", context_value=Tripwire())
    assert result.data == {"__typename": "Query"}
    result = await schema.execute(document, operation_name="C", context_value=Tripwire())
    assert codes(result) == ["OPERATION_NOT_FOUND"]
    assert result.errors[0].extensions["operations"] == ["A", "B"]  # type: ignore[index]
    result, context = await run(schema, document)
    assert codes(result) == ["OPERATION_NAME_REQUIRED"]
    assert context.touched == []  # B was not run, and A was not guessed either


async def test_one_unnamed_operation_needs_no_name() -> None:
    schema = make_schema(extra=(OperationChoice,))
    result, _ = await run(schema, "{ __typename } fragment F on Query { __typename }")
    assert codes(result) == ["GRAPHQL_VALIDATION_FAILED"]  # F is never used
    result, _ = await run(schema, "{ __typename }")
    assert result.data == {"__typename": "Query"}
    assert not result.errors


class _BrokenExtension(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        raise RuntimeError("secret detail of a broken extension")
        yield  # pragma: no cover


async def test_errors_outside_resolvers_are_masked_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="c360.graphql")
    schema = make_schema(extra=(_BrokenExtension,))
    result, context = await run(schema, '{ customer(email: "a@x.io") { id } }')
    assert context.touched == []
    [error] = result.errors or []
    assert error.message == "Internal error"
    assert error.extensions and error.extensions["code"] == "INTERNAL"
    assert any(error.extensions["requestId"] in r.getMessage() for r in caplog.records)


# -- configuration ------------------------------------------------------------


def test_limits_default_when_unconfigured() -> None:
    assert limits_from_mapping(None) == HardeningLimits()
    limits = HardeningLimits()
    assert (limits.max_depth, limits.max_aliases, limits.max_tokens) == (10, 15, 2000)
    assert (limits.max_directives_per_field, limits.max_directives) == (3, 10)
    assert limits.max_cost == 2000


def test_limits_read_from_the_graphql_section() -> None:
    limits = limits_from_mapping(
        {"max_depth": 6, "max_cost": 500, "list_sizes": {"Customer.tickets": 5}}
    )
    assert limits.max_depth == 6
    assert limits.max_cost == 500
    assert limits.list_size("Customer", "tickets") == 5
    assert limits.list_size("Customer", "invoices") == 25
    assert limits.max_aliases == 15


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"max_dept": 5}, "unknown setting.*max_dept"),
        ({"max_depth": True}, "graphql.max_depth"),
        ({"max_depth": 0}, "graphql.max_depth"),
        ({"max_cost": "lots"}, "graphql.max_cost"),
        ({"list_sizes": {"tickets": 5}}, "Type.field"),
        ({"list_sizes": {"Customer.tickets": -1}}, "list_sizes.Customer.tickets"),
        ({"list_sizes": [1]}, "list_sizes must be a mapping"),
        ({"max_directives_per_field": 5, "max_directives": 4}, "cannot exceed"),
        (["max_depth"], "graphql must be a mapping"),
    ],
)
def test_bad_limits_are_clear_config_errors(raw: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        limits_from_mapping(raw)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ searchCustomers(text: "lee", first: 1000) { edges { node { id } } } }', None),
        (
            'query($n: Int!) { searchCustomers(text: "lee", first: $n) { edges { node { id } } } }',
            {"n": 1000},
        ),
    ],
)
async def test_a_page_past_its_fields_limit_is_left_to_the_field_to_refuse(query, variables):
    # The field refuses first > 50 itself ("first must be between 1 and 50"):
    # the cost check must not answer for it with a cost nobody would pay.
    result, context = await run(make_schema(), query, variables)
    assert "QUERY_TOO_COSTLY" not in codes(result)
    assert_ran(result, context)
