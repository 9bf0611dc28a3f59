"""The operation that runs is the one the client named, never a guess.

Asked for no operation by name, strawberry runs a document's first one, so a
document with several ran whichever came first. Here the request is refused
before validation, with the names of the document's operations in
``extensions.operations``::

    OPERATION_NAME_REQUIRED   several operations and no ``operationName``
    OPERATION_NOT_FOUND       no operation of the ``operationName`` given, or
                              a document without any operation
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

__all__ = ["NAME_REQUIRED", "NOT_FOUND", "OperationChoice"]

NAME_REQUIRED = "OPERATION_NAME_REQUIRED"
NOT_FOUND = "OPERATION_NOT_FOUND"


class OperationChoice(SchemaExtension):
    def on_parse(self) -> Iterator[None]:
        yield
        context = self.execution_context
        document = context.graphql_document
        if document is None:
            return  # did not parse: that is the error
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) == 1 and context._provided_operation_name is None:
            return  # the common case, first
        names = [d.name.value for d in operations if d.name is not None]
        # strawberry keeps what the request said only here; its public
        # ``operation_name`` falls back to the first operation's name.
        wanted = context._provided_operation_name
        if not operations:
            message = "the document has no operation to run"
            code = NOT_FOUND
        elif wanted is None and len(operations) > 1:
            message = (
                f"the document has {len(operations)} operations: say which to run with "
                "operationName (each needs a name)"
            )
            code = NAME_REQUIRED
        elif wanted is not None and wanted not in names:
            message = "the document has no operation of the operationName given"
            code = NOT_FOUND
        else:
            return
        # Raised, not returned: strawberry would otherwise look the operation
        # up itself and fail with a bare HTTP 400.
        raise GraphQLError(message, extensions={"code": code, "operations": names})
