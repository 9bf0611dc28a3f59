"""Maximum depth: how many levels of fields an operation nests, fragments expanded.

``{ customer { account { name } } }`` is 3 levels deep. Introspection
subtrees (``__schema``, ``__type``) count as one level; they are refused
outright when hardened and bounded by ``introspection_depth_rule`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from graphql import FieldNode, ValidationContext, ValidationRule

from schema.extensions._errors import DEPTH, limit_error
from schema.extensions._walk import DocumentTooNested, measure_operations

__all__ = ["depth_rule"]


def _level(node: FieldNode, children: Callable[[], int]) -> int:
    if node.name.value.startswith("__") or node.selection_set is None:
        return 1
    return 1 + children()


def _deepest(levels: Iterable[int]) -> int:
    return max(levels, default=0)


def depth_rule(max_depth: int) -> type[ValidationRule]:
    class QueryDepthRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            message = f"the query nests fields more than {max_depth} levels deep"
            try:
                for operation, depth in measure_operations(context.document, _level, _deepest):
                    if depth > max_depth:
                        self.report_error(
                            limit_error(DEPTH, message, nodes=operation, limit=max_depth)
                        )
                        return
            except DocumentTooNested:
                self.report_error(limit_error(DEPTH, message, limit=max_depth))

    return QueryDepthRule
