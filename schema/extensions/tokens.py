"""Maximum lexical tokens per document, comments included.

strawberry's ``MaxTokensLimiter`` hands the limit to graphql-core's parser,
which stops reading at the first token past it -- before any AST is built.
This only gives that syntax error a code. The error either comes back as a
result (strawberry parsed) or escapes the parsing hooks (``ParserCache``
parsed); both are caught here, whatever the order of the extensions.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaxTokensLimiter

from schema.extensions._errors import TOKENS, limit_error, rewrite_errors

__all__ = ["TokenLimit"]


class TokenLimit(MaxTokensLimiter):
    def _coded(self, error: GraphQLError) -> GraphQLError:
        limit = self.max_token_count
        # graphql-core's wording: "Document contains more than {max_tokens} tokens."
        if isinstance(error, GraphQLSyntaxError) and f"more than {limit} tokens" in error.message:
            return limit_error(
                TOKENS, f"the document has more than {limit} tokens", like=error, limit=limit
            )
        return error

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.max_token_count
        try:
            yield
        except GraphQLSyntaxError as exc:
            coded = self._coded(exc)
            if coded is exc:
                raise
            raise coded from exc
        rewrite_errors(
            self.execution_context.result, lambda errors: [self._coded(e) for e in errors]
        )
