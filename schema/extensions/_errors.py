"""Errors for rejected documents: a stable ``extensions.code`` and the limit crossed."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from graphql import GraphQLError, Node

__all__ = [
    "ALIASES",
    "COST",
    "DEPTH",
    "DIRECTIVES",
    "INTROSPECTION",
    "INTROSPECTION_DEPTH",
    "LIMIT_CODES",
    "TOKENS",
    "has_code",
    "limit_error",
    "rewrite_errors",
]

DEPTH = "QUERY_TOO_DEEP"
ALIASES = "TOO_MANY_ALIASES"
TOKENS = "TOO_MANY_TOKENS"
DIRECTIVES = "TOO_MANY_DIRECTIVES"
COST = "QUERY_TOO_COSTLY"
INTROSPECTION = "INTROSPECTION_DISABLED"
INTROSPECTION_DEPTH = "INTROSPECTION_TOO_DEEP"
LIMIT_CODES = frozenset(
    {DEPTH, ALIASES, TOKENS, DIRECTIVES, COST, INTROSPECTION, INTROSPECTION_DEPTH}
)


def limit_error(
    code: str,
    message: str,
    *,
    nodes: Node | Collection[Node] | None = None,
    like: GraphQLError | None = None,
    **extensions: Any,
) -> GraphQLError:
    """A rejection clients can switch on; ``like`` lends its source locations."""
    if like is not None:
        return GraphQLError(
            message,
            nodes=like.nodes,
            source=like.source,
            positions=like.positions,
            extensions={"code": code, **extensions},
        )
    return GraphQLError(message, nodes=nodes, extensions={"code": code, **extensions})


def has_code(error: GraphQLError, codes: Collection[str] | None = None) -> bool:
    code = (error.extensions or {}).get("code")
    if codes is None:
        return isinstance(code, str)
    return code in codes


def rewrite_errors(
    result: object, change: Callable[[list[GraphQLError]], list[GraphQLError]]
) -> None:
    """Replace a finished result's errors (never edit them: validation caches share them)."""
    errors = getattr(result, "errors", None)
    if errors:
        result.errors = change(list(errors))  # type: ignore[attr-defined]
