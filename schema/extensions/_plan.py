"""Cost plans: a document's cost with the variable-free parts already summed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Length", "Plan", "Size", "evaluate", "plus", "times"]


@dataclass(frozen=True, slots=True)
class Length:
    """A list length that depends on a variable: its list's length or its int value."""

    variable: str
    counts_items: bool
    fallback: int
    cap: int | None = None  # a page argument past its field's limit is refused, not served

    def value(self, variables: Mapping[str, Any]) -> int:
        found = self._value(variables)
        return found if self.cap is None else min(found, self.cap)

    def _value(self, variables: Mapping[str, Any]) -> int:
        given = variables.get(self.variable)
        if given is None:
            return self.fallback
        if self.counts_items:
            # A single value where a list is expected is coerced to a list of one.
            return len(given) if isinstance(given, list) else 1
        if isinstance(given, int) and not isinstance(given, bool):
            return max(given, 0)
        return self.fallback


Size = int | Length


@dataclass(frozen=True, slots=True)
class _Node:
    """``fixed`` plus, for each ``(size, item)``, size times the item's cost."""

    fixed: int
    scaled: tuple[tuple[Size, Plan], ...]


Plan = int | _Node


def plus(parts: Iterable[Plan]) -> Plan:
    fixed = 0
    scaled: list[tuple[Size, Plan]] = []
    for part in parts:
        if isinstance(part, int):
            fixed += part
        else:
            fixed += part.fixed
            scaled.extend(part.scaled)
    return _Node(fixed, tuple(scaled)) if scaled else fixed


def times(size: Size, item: Plan) -> Plan:
    if isinstance(size, int) and isinstance(item, int):
        return size * item
    return _Node(0, ((size, item),)) if item != 0 else 0


def evaluate(plan: Plan, variables: Mapping[str, Any], memo: dict[int, int]) -> int:
    if isinstance(plan, int):
        return plan
    # Fragments compile once and are shared by every spread: evaluate each once.
    known = memo.get(id(plan))
    if known is not None:
        return known
    total = plan.fixed
    for size, item in plan.scaled:
        length = size if isinstance(size, int) else size.value(variables)
        if length:
            total += length * evaluate(item, variables, memo)
    memo[id(plan)] = total
    return total
