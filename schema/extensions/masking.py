"""Every error leaves with an ``extensions.code``; unexpected ones are masked.

An error is expected when it carries an ``extensions.code`` (the gateway's
own errors: bad input, upstream failures, limits) or when graphql-core
raised it about the request itself. Those request errors get the code of
the step that refused the request (:func:`request_error_code`)::

    GRAPHQL_PARSE_FAILED       the document is not GraphQL (syntax)
    GRAPHQL_VALIDATION_FAILED  it does not validate against the schema (unknown
                               fields or arguments, fragment cycles, wrong
                               literal types, "Validation aborted")
    BAD_USER_INPUT             a variable's value does not fit its type

Everything else -- a resolver's bug, a failed invariant -- becomes
``Internal error`` with ``extensions {code: "INTERNAL", requestId}``, and
the original is logged with the same request id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from schema.extensions._errors import has_code, rewrite_errors

__all__ = [
    "BAD_USER_INPUT",
    "INTERNAL",
    "PARSE_FAILED",
    "VALIDATION_FAILED",
    "MaskUnexpectedErrors",
    "is_unexpected",
    "request_error_code",
]

INTERNAL = "INTERNAL"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
logger = logging.getLogger("c360.graphql")

# strawberry's views turn these into HTTP 400 answers; they are not bugs.
_REQUEST_PROBLEMS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)
# A request id from the context is echoed to clients and logs: keep it tame.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_unexpected(error: GraphQLError) -> bool:
    if has_code(error):
        return False
    if error.path is not None:
        return True  # raised while resolving a field
    # Without a path, an error with a cause is either a variable the client
    # sent wrong (graphql-core starts all of those so) or a failure elsewhere.
    return error.original_error is not None and not error.message.startswith("Variable '$")


def request_error_code(context: ExecutionContext) -> str:
    """The code of an expected error without one: the step that refused the request."""
    if context.graphql_document is None:
        return PARSE_FAILED
    # Validation refused it (strawberry has no result yet, or an early one),
    # or graphql-core did while coercing variables, before running a resolver.
    if context.result is None or isinstance(context.result, PreExecutionError):
        return VALIDATION_FAILED
    return BAD_USER_INPUT


def _with_code(error: GraphQLError, code: str) -> GraphQLError:
    """``error`` with a code: a copy, since the parser and validation caches share errors."""
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions={**(error.extensions or {}), "code": code},
    )


class MaskUnexpectedErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message="Internal error")
        self._request_id: str | None = None

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            given = getattr(self.execution_context.context, "request_id", None)
            if isinstance(given, str) and _SAFE_ID.fullmatch(given):
                self._request_id = given
            else:
                self._request_id = uuid.uuid4().hex
        return self._request_id

    def _log(self, cause: BaseException | None, path: object) -> None:
        logger.error(
            "unexpected error in GraphQL operation (request %s, path %s)",
            self.request_id,
            path,
            exc_info=(type(cause), cause, cause.__traceback__) if cause else None,
        )

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        self._log(error.original_error or error, error.path)
        return GraphQLError(
            self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": INTERNAL, "requestId": self.request_id},
        )

    def _coded(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        # Masking came first: what has no code now is a request error.
        code = request_error_code(self.execution_context)
        return [e if has_code(e) else _with_code(e, code) for e in errors]

    def on_operation(self) -> Iterator[None]:
        try:
            yield from super().on_operation()
        except GraphQLSyntaxError as exc:
            # The parser cache parses in a hook: its syntax errors escape as exceptions.
            raise _with_code(exc, PARSE_FAILED) from exc
        except (GraphQLError, *_REQUEST_PROBLEMS):
            raise
        except Exception as exc:
            # Raised outside any resolver (an extension, the executor itself):
            # strawberry would send str(exc) to the client.
            self._log(exc, None)
            raise GraphQLError(
                self.error_message, extensions={"code": INTERNAL, "requestId": self.request_id}
            ) from exc
        rewrite_errors(self.execution_context.result, self._coded)
