"""The c360 GraphQL schema (strawberry)."""

from __future__ import annotations

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from schema._logging import GatewaySchema
from schema.customer import Customer
from schema.extensions import HardeningLimits, hardening_extensions
from schema.extensions.audit import AuditReads
from schema.extensions.operations import OperationChoice
from schema.extensions.pii_egress import PiiEgress
from schema.extensions.stale import StaleNotes
from schema.extensions.unreachable import PartialAnswers
from schema.query import Query, SystemRefInput

__all__ = ["Customer", "Query", "SystemRefInput", "build_schema"]


def build_schema(
    limits: HardeningLimits | None = None, *, hardened: bool = True
) -> strawberry.Schema:
    """The schema; ``hardened=False`` (the demo only) allows introspection."""
    return GatewaySchema(
        query=Query,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=[
            *hardening_extensions(limits or HardeningLimits(), hardened=hardened),
            # strawberry would run the first of several operations when none is named.
            OperationChoice,
            # Clients send the same few documents again and again; parsing and
            # validating them was most of the gateway's CPU per request.
            StaleNotes,
            # After execution, innermost first: every failed source gets its
            # error, PII outside a guarded field is withheld, then the
            # request's PII reads are audited before the response leaves.
            AuditReads,
            PiiEgress,
            PartialAnswers,
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
        ],
    )
