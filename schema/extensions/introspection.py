"""Introspection and field suggestions off; introspection depth bounded when on.

Off, a client learns nothing of the schema it was not given: ``__schema`` and
``__type`` are refused (``__typename`` stays, clients rely on it) and no error
says "Did you mean …?". graphql-core can hide suggestions, but strawberry
does not pass that option to validation or execution, so they are cut from
the finished response instead -- also from variable-coercion errors.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from graphql.validation import MaxIntrospectionDepthRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension

from schema.extensions._errors import (
    INTROSPECTION,
    INTROSPECTION_DEPTH,
    limit_error,
    rewrite_errors,
)

__all__ = ["HideSuggestions", "IntrospectionDepthRule", "NoIntrospectionRule"]

# graphql-core appends every suggestion as " Did you mean …?" (didYouMean).
_SUGGESTION = " Did you mean "


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule, reporting once, with a code."""

    reported = False

    def report_error(self, error: GraphQLError) -> None:
        if not self.reported:
            self.reported = True
            super().report_error(
                limit_error(INTROSPECTION, "introspection is disabled on this endpoint", like=error)
            )


class IntrospectionDepthRule(MaxIntrospectionDepthRule):
    """graphql-core's bound on circular introspection (``fields { type { fields …``)."""

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(
            limit_error(
                INTROSPECTION_DEPTH,
                "introspection nests lists of types too deeply",
                like=error,
            )
        )


def _without_suggestion(error: GraphQLError) -> GraphQLError:
    cut = error.message.find(_SUGGESTION)
    if cut < 0:
        return error
    return GraphQLError(
        error.message[:cut],
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions=error.extensions,
    )


class HideSuggestions(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        rewrite_errors(
            self.execution_context.result,
            lambda errors: [_without_suggestion(e) for e in errors],
        )
