"""Maximum directives: on any one node (field, fragment, operation…) and in the document.

Directive overloading (``__typename @a@a@a…``) makes the server build one
error per repetition; these limits stop it at the first count. Directives
are counted where they are written, not per fragment spread.
"""

from __future__ import annotations

from typing import Any

from graphql import BREAK, Node, ValidationContext, ValidationRule, VisitorAction

from schema.extensions._errors import DIRECTIVES, limit_error

__all__ = ["directives_rule"]


def directives_rule(per_node: int, total: int) -> type[ValidationRule]:
    class MaxDirectivesRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.seen = 0

        def enter(self, node: Node, *_args: Any) -> VisitorAction:
            directives = getattr(node, "directives", None)
            if not directives:
                return None
            self.seen += len(directives)
            if len(directives) > per_node:
                message = f"{len(directives)} directives in one place; at most {per_node} allowed"
                self.report_error(limit_error(DIRECTIVES, message, nodes=node, limit=per_node))
                return BREAK
            if self.seen > total:
                self.report_error(
                    limit_error(
                        DIRECTIVES,
                        f"more than {total} directives in the document",
                        nodes=node,
                        limit=total,
                    )
                )
                return BREAK
            return None

    return MaxDirectivesRule
