"""Every query limit of the hardened endpoint, with production defaults.

Read from the ``graphql:`` section of the config file::

    graphql:
      max_depth: 10                 # levels of nested fields
      max_aliases: 15               # aliased fields per operation, fragments expanded
      max_tokens: 2000              # lexical tokens (comments included) per document
      max_directives_per_field: 3   # directives on any one field, fragment or operation
      max_directives: 10            # directives in the whole document
      max_cost: 2000                # objects a response may hold, see below
      default_list_size: 10         # assumed length of a list nobody bounds
      list_sizes:                   # assumed length of particular lists
        Customer.tickets: 25

A query's cost is the number of objects its response may hold: one per
object-typed field, a list multiplying its items by the list's length. The
length comes from the arguments that bound it -- the ``ids``/``emails`` given
to ``customers``, ``first`` on a page -- and otherwise from ``list_sizes`` or
``default_list_size``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from gateway.config import ConfigError

__all__ = ["HardeningLimits", "limits_from_mapping"]

_LIST_SIZES = MappingProxyType(
    {
        "Customer.tickets": 25,
        "Customer.invoices": 25,
        "Customer.subscriptions": 10,
        "Account.opportunities": 25,
        "Account.ancestors": 20,  # schema.account.MAX_ANCESTORS
    }
)
_FIELD_REF = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*\.[_A-Za-z][_0-9A-Za-z]*$")
# Bounds that catch typos (an extra zero) without second-guessing operators.
_MAXIMA = {"max_tokens": 1_000_000, "max_cost": 10_000_000}
_DEFAULT_MAXIMUM = 10_000


@dataclass(frozen=True, slots=True)
class HardeningLimits:
    max_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    max_directives_per_field: int = 3
    max_directives: int = 10
    max_cost: int = 2000
    default_list_size: int = 10
    list_sizes: Mapping[str, int] = field(default_factory=lambda: _LIST_SIZES)

    def list_size(self, type_name: str, field_name: str) -> int:
        return self.list_sizes.get(f"{type_name}.{field_name}", self.default_list_size)


def _count(where: str, value: Any, *, low: int, high: int) -> int:
    # bool is an int to Python, but `max_depth: yes` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _list_sizes(raw: Any) -> Mapping[str, int]:
    if not isinstance(raw, Mapping):
        raise ConfigError("graphql.list_sizes must be a mapping of Type.field to a length")
    sizes = dict(_LIST_SIZES)
    for key, value in raw.items():
        if not isinstance(key, str) or not _FIELD_REF.match(key):
            raise ConfigError(f"graphql.list_sizes: {key!r} is not a Type.field name")
        sizes[key] = _count(f"graphql.list_sizes.{key}", value, low=0, high=_DEFAULT_MAXIMUM)
    return MappingProxyType(sizes)


def limits_from_mapping(raw: Mapping[str, Any] | None) -> HardeningLimits:
    """Limits from the ``graphql:`` config section; missing keys keep their defaults."""
    if raw is None:
        return HardeningLimits()
    if not isinstance(raw, Mapping):
        raise ConfigError("graphql must be a mapping of limit names to numbers")
    known = [f.name for f in fields(HardeningLimits)]
    # A misspelt limit must not silently leave the default in place.
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ConfigError(
            f"graphql: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "list_sizes":
            values[name] = _list_sizes(value)
        else:
            low = 0 if name == "default_list_size" else 1
            high = _MAXIMA.get(name, _DEFAULT_MAXIMUM)
            values[name] = _count(f"graphql.{name}", value, low=low, high=high)
    limits = HardeningLimits(**values)
    if limits.max_directives_per_field > limits.max_directives:
        raise ConfigError("graphql.max_directives_per_field cannot exceed graphql.max_directives")
    return limits
