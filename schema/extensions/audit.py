"""No event, no PII: a response's PII reads are audited before it is sent.

:class:`~schema.permissions.Guard` notes every PII value it lets through, in
full or masked, per customer (``Context.pii_reads``) and where it went
(``Context.pii_paths``). After execution this extension records one audit
event per customer -- which fields, and how each was shown -- and waits until
the trail has stored them durably (concurrent requests share one append and
one fsync, see :class:`gateway.audit.AuditTrail`). If the trail cannot take
them, by ``audit.on_failure``:

- ``deny`` (the default): every PII value of the response is withheld -- the
  field is null (an empty list / string where the schema says non-null) with
  an ``AUDIT_UNAVAILABLE`` error at its path -- and everything else arrives;
- ``allow``: the response goes out as it is, and each failure is logged as
  an error (the operator chose availability over the audit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

__all__ = ["AUDIT_UNAVAILABLE", "AuditReads"]

AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
logger = logging.getLogger("c360.audit")


class AuditReads(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        reads: dict[str, dict[str, str]] | None = getattr(context, "pii_reads", None)
        trail = getattr(context, "audit", None)
        if not reads or trail is None:
            return
        principal = getattr(context, "principal", None)
        request = getattr(context, "request", None)
        client = getattr(request, "client", None)
        outcomes = await asyncio.gather(
            *(
                trail.record(
                    subject=getattr(principal, "subject", None) or "anonymous",
                    client_id=getattr(principal, "client_id", None),
                    customer_id=customer_id,
                    fields=fields,
                    operation=self.execution_context.operation_name,
                    request_id=getattr(context, "request_id", None),
                    source_ip=getattr(client, "host", None),
                )
                for customer_id, fields in sorted(reads.items())
            ),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if not failures:
            return
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure  # cancellation and the like are not audit failures
        request_id = getattr(context, "request_id", None)
        if getattr(trail, "on_failure", "deny") == "allow":
            for failure in failures:
                logger.error(
                    "audit.on_failure=allow: PII served WITHOUT an audit event "
                    "(request %s): %s", request_id, failure,
                )  # fmt: skip
            return
        logger.error(
            "PII withheld: the audit trail could not record %d event(s) (request %s): %s",
            len(failures), request_id, failures[0],
        )  # fmt: skip
        _withhold(self.execution_context.result, getattr(context, "pii_paths", []))


def _withhold(result: Any, paths: list[tuple[list[str | int], Any]]) -> None:
    data = getattr(result, "data", None)
    if result is None or not isinstance(data, dict):
        return
    errors = list(getattr(result, "errors", None) or [])
    done: set[tuple[str | int, ...]] = set()
    for path, empty in paths:
        if tuple(path) in done:
            continue
        done.add(tuple(path))
        if _replace(data, path, [] if isinstance(empty, tuple) else empty):
            errors.append(
                GraphQLError(
                    "withheld: the audit trail cannot record this read of personal data",
                    path=path,
                    extensions={"code": AUDIT_UNAVAILABLE, "retryable": True},
                )
            )
    result.errors = errors


def _has(node: Any, step: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(step, str) and step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _replace(data: Any, path: list[str | int], value: Any) -> bool:
    """Set ``data`` at ``path`` to ``value``; False when the path is not there."""
    if not path:
        return False
    node = data
    for step in path[:-1]:
        if not _has(node, step):
            return False
        node = node[step]
    if not _has(node, path[-1]):
        return False
    node[path[-1]] = value
    return True
