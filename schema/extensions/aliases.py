"""Maximum aliases per operation, fragments expanded.

Aliases let one request run the same resolver many times (``a1: customer(…)
a2: customer(…) …``); graphql-core would happily resolve each. A fragment
spread counts its aliases every time it is spread.
"""

from __future__ import annotations

from collections.abc import Callable

from graphql import FieldNode, ValidationContext, ValidationRule

from schema.extensions._errors import ALIASES, limit_error
from schema.extensions._walk import DocumentTooNested, measure_operations

__all__ = ["aliases_rule"]


def _aliases(node: FieldNode, children: Callable[[], int]) -> int:
    own = 1 if node.alias is not None else 0
    return own + children() if node.selection_set is not None else own


def aliases_rule(max_aliases: int) -> type[ValidationRule]:
    class MaxAliasesRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            try:
                for operation, count in measure_operations(context.document, _aliases, sum):
                    if count > max_aliases:
                        self.report_error(
                            limit_error(
                                ALIASES,
                                f"the query uses {count} aliases; at most {max_aliases} allowed",
                                nodes=operation,
                                limit=max_aliases,
                            )
                        )
                        return
            except DocumentTooNested:
                pass  # depth_rule reports it: both are always installed together

    return MaxAliasesRule
