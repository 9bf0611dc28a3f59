"""GraphQL errors with a stable ``extensions.code``: every error has one.

Codes clients can switch on, first those of a request refused before any
resolver ran (the response has no ``data``; HTTP 400 when the client prefers
``application/graphql-response+json``, else 200)::

    GRAPHQL_PARSE_FAILED       the document is not GraphQL (a syntax error)
    GRAPHQL_VALIDATION_FAILED  it does not validate: unknown fields or arguments,
                               fragment cycles, wrong literals, "Validation aborted"
    BAD_USER_INPUT             a variable's value does not fit its type
    OPERATION_NAME_REQUIRED    several operations and no ``operationName``
                               (``operations`` lists their names)
    OPERATION_NOT_FOUND        no operation of that name, or none at all
    QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS, TOO_MANY_DIRECTIVES,
    QUERY_TOO_COSTLY, INTROSPECTION_DISABLED, INTROSPECTION_TOO_DEEP
                               a query limit (schema.extensions), with ``limit``

then those of a field, at its ``path`` (the field is null, the rest arrives)::

    BAD_USER_INPUT          the arguments are wrong; the message says how. In a
                            list (``customers(ids:|emails:)``) a bad item is its
                            own error at ``[field, index]``
    UPSTREAM_TIMEOUT        a vendor did not answer in time            (retryable)
    UPSTREAM_UNAVAILABLE    a vendor is down or unreachable            (retryable)
    UPSTREAM_RATE_LIMITED   a vendor throttled the gateway             (retryable)
    UPSTREAM_ERROR          a vendor answered something unusable
    CIRCUIT_OPEN            a vendor failed repeatedly; not called until a probe  (retryable)
    AMBIGUOUS_CUSTOMER      the email belongs to several people: ``candidates`` [{system, id}]
                            to ask for one by ``ref``
    FORBIDDEN               the token lacks a scope (``missing``), or a search would look
                            where the caller may not see in full (``searchedBy``)
    AUDIT_UNAVAILABLE       personal data withheld: the audit trail cannot record the read
                            (retryable)
    INTERNAL                an unexpected error, masked; ``requestId`` finds it in the log

A body that is not a GraphQL request never gets this far: it is an HTTP 400
with ``BAD_REQUEST`` (gateway._graphql_http), or 413 ``REQUEST_TOO_LARGE``,
415 ``UNSUPPORTED_MEDIA_TYPE``, 406 ``NOT_ACCEPTABLE``, 401 ``UNAUTHENTICATED``,
429 ``RATE_LIMITED``.

Upstream errors carry ``source`` (the connector) and ``retryable``; the
vendor's own error body is never included.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from connectors.sdk import UpstreamError

__all__ = ["bad_input", "upstream_error"]


def bad_input(message: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", **extensions})


def upstream_error(exc: UpstreamError) -> GraphQLError:
    extensions: dict[str, Any] = {
        "code": exc.code,
        "source": exc.source,
        "retryable": exc.retryable,
    }
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        extensions["retryAfter"] = round(retry_after, 3)
    error = GraphQLError(exc.message, extensions=extensions)
    error.__cause__ = exc
    return error
