"""GraphQL errors with a stable ``extensions.code``.

Codes clients can switch on::

    BAD_USER_INPUT          the arguments are wrong; the message says how
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
