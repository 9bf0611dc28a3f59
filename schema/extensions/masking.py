"""Unexpected errors masked: the client gets a request id, the log gets the exception.

An error is expected when it carries an ``extensions.code`` (the gateway's
own errors: bad input, upstream failures, limits) or when graphql-core
raised it about the request itself (syntax, validation, variable values).
Everything else -- a resolver's bug, a failed invariant -- becomes
``Internal error`` with ``extensions {code: "INTERNAL", requestId}``, and
the original is logged with the same request id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from schema.extensions._errors import has_code

__all__ = ["INTERNAL", "MaskUnexpectedErrors", "is_unexpected"]

INTERNAL = "INTERNAL"
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

    def on_operation(self) -> Iterator[None]:
        try:
            yield from super().on_operation()
        except (GraphQLError, *_REQUEST_PROBLEMS):
            raise
        except Exception as exc:
            # Raised outside any resolver (an extension, the executor itself):
            # strawberry would send str(exc) to the client.
            self._log(exc, None)
            raise GraphQLError(
                self.error_message, extensions={"code": INTERNAL, "requestId": self.request_id}
            ) from exc
