"""The document limits as validation rules, reported ahead of everything else.

The rules run with the spec's rules (and are cached with them by
``ValidationCache``). When a limit is crossed, only the limit errors are
returned: an overloaded document must not make the server build -- or the
client receive -- one spec error per repetition.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import AddValidationRules

from schema.extensions._errors import LIMIT_CODES, has_code, rewrite_errors

__all__ = ["LimitRules"]


def _limits_first(errors: list[GraphQLError]) -> list[GraphQLError]:
    limits = [e for e in errors if has_code(e, LIMIT_CODES)]
    return limits or errors


class LimitRules(AddValidationRules):
    def __init__(self, rules: tuple[type[ASTValidationRule], ...]) -> None:
        super().__init__(list(rules))

    def on_operation(self) -> Iterator[None]:
        yield from super().on_operation()
        rewrite_errors(self.execution_context.result, _limits_first)
