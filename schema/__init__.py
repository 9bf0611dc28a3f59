"""The c360 GraphQL schema (strawberry)."""

from __future__ import annotations

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from schema.customer import Customer
from schema.query import Query, SystemRefInput

__all__ = ["Customer", "Query", "SystemRefInput", "build_schema"]


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        config=StrawberryConfig(auto_camel_case=True),
        # Clients send the same few documents again and again; parsing and
        # validating them was most of the gateway's CPU per request.
        extensions=[ParserCache(maxsize=256), ValidationCache(maxsize=256)],  # type: ignore[list-item]
    )
