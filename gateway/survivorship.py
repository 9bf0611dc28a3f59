"""Survivorship: which value of an attribute wins when systems disagree.

Pure functions over candidates, so the merge is deterministic whatever order
the systems answered in. Rules (configured per attribute in the gateway
config, ``identity.survivorship``)::

    source_priority   the first non-empty value in the configured source order
    most_recent       the non-empty value with the newest updated_at
    most_frequent     the value held by the most records

Ties always break the same way: source priority, then system name, then
record id. Empty values (None, blank, or blocked placeholders the caller
filtered out) never win.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "DEFAULT_RULES",
    "Candidate",
    "Rule",
    "RuleName",
    "Winner",
    "rules_from_mapping",
    "survive",
]

RuleName = Literal["source_priority", "most_recent", "most_frequent"]
_RULE_NAMES: tuple[RuleName, ...] = ("source_priority", "most_recent", "most_frequent")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One system's value for one attribute."""

    value: str
    system: str
    domain: str
    record_id: str
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: RuleName = "source_priority"
    # System names or domains ("crm", "billing", …), highest priority first.
    sources: tuple[str, ...] = ("crm", "billing", "ticketing", "marketing")

    def rank(self, candidate: Candidate) -> int:
        for i, source in enumerate(self.sources):
            if source in (candidate.system, candidate.domain):
                return i
        return len(self.sources)


@dataclass(frozen=True, slots=True)
class Winner:
    candidate: Candidate
    rule: RuleName
    # Distinct non-empty values seen, for conflict reporting.
    alternatives: tuple[Candidate, ...] = field(default=())


DEFAULT_RULES: Mapping[str, Rule] = {
    # The CRM owns who a person is; billing knows names well too.
    "name": Rule("source_priority", ("crm", "billing", "ticketing", "marketing")),
    "first_name": Rule("source_priority", ("crm", "billing", "ticketing", "marketing")),
    "last_name": Rule("source_priority", ("crm", "billing", "ticketing", "marketing")),
    "title": Rule("source_priority", ("crm",)),
    "email": Rule("source_priority", ("crm", "billing", "ticketing", "marketing")),
    "phone": Rule("source_priority", ("crm", "billing", "ticketing", "marketing")),
}


def _timestamp(c: Candidate) -> float:
    return c.updated_at.timestamp() if c.updated_at else float("-inf")


def _tiebreak(rule: Rule, c: Candidate) -> tuple[int, str, str, str, float]:
    return (rule.rank(c), c.system, c.record_id, c.value, -_timestamp(c))


def survive(candidates: Iterable[Candidate], rule: Rule) -> Winner | None:
    """The winning candidate under ``rule``; ``None`` when every value is empty."""
    usable = sorted(
        (c for c in candidates if c.value and c.value.strip()), key=lambda c: _tiebreak(rule, c)
    )
    if not usable:
        return None
    if rule.name == "source_priority":
        best = usable[0]  # sorted by rank first
    elif rule.name == "most_recent":
        newest = max(_timestamp(c) for c in usable)
        best = next(c for c in usable if _timestamp(c) == newest)
    else:
        counts = Counter(c.value for c in usable)
        top = max(counts.values())
        best = next(c for c in usable if counts[c.value] == top)
    seen: dict[str, Candidate] = {}
    for c in usable:
        seen.setdefault(c.value, c)
    alternatives = tuple(c for v, c in seen.items() if v != best.value)
    return Winner(candidate=best, rule=rule.name, alternatives=alternatives)


def rules_from_mapping(raw: Any) -> dict[str, Rule]:
    """Read ``identity.survivorship``: ``{attribute: {rule, sources}}`` over the defaults.

    Attributes are the golden record's (the keys of :data:`DEFAULT_RULES`);
    anything else is a :class:`~gateway.config.ConfigError`, never ignored.
    """
    from gateway.config import ConfigError

    rules = dict(DEFAULT_RULES)
    if raw is None:
        return rules
    if not isinstance(raw, Mapping):
        raise ConfigError("identity.survivorship must be a mapping of attribute to rule")
    for attribute, spec in raw.items():
        where = f"identity.survivorship.{attribute}"
        if attribute not in DEFAULT_RULES:
            raise ConfigError(
                f"{where}: unknown attribute; expected one of {', '.join(sorted(DEFAULT_RULES))}"
            )
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a mapping with 'rule' and optional 'sources'")
        if unknown := sorted(str(k) for k in spec if k not in ("rule", "sources")):
            raise ConfigError(f"{where}: unknown key(s) {unknown}; expected 'rule', 'sources'")
        name = spec.get("rule", "source_priority")
        if name not in _RULE_NAMES:
            raise ConfigError(f"{where}.rule must be one of {', '.join(_RULE_NAMES)}")
        sources: Any = spec.get("sources") or DEFAULT_RULES[attribute].sources
        if not isinstance(sources, list | tuple) or not all(isinstance(s, str) for s in sources):
            raise ConfigError(f"{where}.sources must be a list of system or domain names")
        rules[attribute] = Rule(name, tuple(sources))
    return rules
