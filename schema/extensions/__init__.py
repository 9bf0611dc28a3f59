"""GraphQL hardening: query limits, no introspection or suggestions, masked errors.

``build_schema`` adds ``hardening_extensions(limits, hardened=…)`` to its
extensions. Every rejection is an error with ``extensions.code`` and the
limit crossed, returned before any resolver runs:

    QUERY_TOO_DEEP           fields nested deeper than ``max_depth``
    TOO_MANY_ALIASES         more than ``max_aliases`` aliased fields
    TOO_MANY_TOKENS          a document longer than ``max_tokens`` tokens
    TOO_MANY_DIRECTIVES      over ``max_directives_per_field`` in one place / ``max_directives``
    QUERY_TOO_COSTLY         a response that could hold over ``max_cost`` objects
    INTROSPECTION_DISABLED   ``__schema`` / ``__type`` on the hardened endpoint
    INTROSPECTION_TOO_DEEP   circular introspection, where introspection is on
    INTERNAL                 an unexpected error; ``requestId`` finds it in the log

``hardened=False`` (``c360 demo`` only) allows introspection and "Did you
mean …?" suggestions, which GraphiQL needs; every limit and masking stay.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from graphql import ASTValidationRule
from strawberry.extensions import SchemaExtension

from schema.extensions._limits import HardeningLimits, limits_from_mapping
from schema.extensions.aliases import aliases_rule
from schema.extensions.cost import CostAnalyzer, CostLimit
from schema.extensions.depth import depth_rule
from schema.extensions.directives import directives_rule
from schema.extensions.introspection import (
    HideSuggestions,
    IntrospectionDepthRule,
    NoIntrospectionRule,
)
from schema.extensions.masking import MaskUnexpectedErrors
from schema.extensions.tokens import TokenLimit
from schema.extensions.validation import LimitRules

__all__ = ["HardeningLimits", "hardening_extensions", "limits_from_mapping"]

ExtensionFactory = Callable[[], SchemaExtension]


def hardening_extensions(limits: HardeningLimits, *, hardened: bool) -> list[ExtensionFactory]:
    """Extension factories for ``strawberry.Schema(extensions=…)``, one instance per request.

    Call once per schema: the rule classes made here are part of
    ``ValidationCache``'s key, and the cost plans are cached with them.
    """
    rules: list[type[ASTValidationRule]] = [
        depth_rule(limits.max_depth),
        aliases_rule(limits.max_aliases),
        directives_rule(limits.max_directives_per_field, limits.max_directives),
        NoIntrospectionRule if hardened else IntrospectionDepthRule,
    ]
    analyzer = CostAnalyzer(limits)
    factories: list[ExtensionFactory] = [
        MaskUnexpectedErrors,
        partial(TokenLimit, limits.max_tokens),
        partial(LimitRules, tuple(rules)),
        partial(CostLimit, analyzer),
    ]
    if hardened:
        factories.append(HideSuggestions)
    return factories
