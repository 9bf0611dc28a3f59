"""A partial answer always says so: one error per source that could not be reached.

Identity resolution asks every connected system about a customer; a system
that fails there leaves the customer incomplete even when no field of that
system was asked for (its records are missing from ``sources``, its values
from the golden record). Resolvers note such failures with the customer's
response path (``Context.unreachable``); after execution this extension adds
one error per failing source at that path, ``extensions {code, source,
retryable[, retryAfter]}`` as for any upstream failure, unless the response
already carries an error from that source inside that customer (a field of
the failing system reports it itself). ``dataQuality.unreachable`` lists the
same systems in the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from schema.errors import upstream_error

__all__ = ["PartialAnswers"]


def _within(inner: Any, outer: list[str | int]) -> bool:
    return isinstance(inner, list) and inner[: len(outer)] == outer


class PartialAnswers(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        noted = getattr(context, "unreachable", None)
        result = self.execution_context.result
        if not noted or result is None:
            return
        errors: list[GraphQLError] = list(getattr(result, "errors", None) or [])
        reported = [(list(e.path or []), (e.extensions or {}).get("source")) for e in errors]
        for path, failure in noted:
            if any(source == failure.source and _within(at, path) for at, source in reported):
                continue
            error = upstream_error(failure)
            errors.append(GraphQLError(error.message, path=path, extensions=error.extensions))
            reported.append((path, failure.source))
        result.errors = errors
