"""How GraphQL errors reach the log: one line for expected ones, no tracebacks.

strawberry logs every error with its traceback (``strawberry.execution``). A
gateway answers bad input and failing vendors all day: a traceback each made
the log unreadable and cost more CPU than the request when a vendor hung.
Here an error with an ``extensions.code`` (bad input, an upstream failure, a
limit) or one about the request itself (syntax, validation) is one INFO line
on ``c360.graphql``; an unexpected error is left to
:class:`~schema.extensions.masking.MaskUnexpectedErrors`, which logs it once,
with its traceback and the request id the client was given.
"""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from schema.extensions.masking import is_unexpected, request_error_code

__all__ = ["GatewaySchema"]

logger = logging.getLogger("c360.graphql")


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        for error in errors:
            if is_unexpected(error):
                continue  # logged by the masking extension, traceback and all
            code = (error.extensions or {}).get("code")
            if code is None and execution_context is not None:
                # Named as the client will see it: the code is added later.
                code = request_error_code(execution_context)
            logger.info("graphql error %s at %s: %s", code, error.path, error.message)
