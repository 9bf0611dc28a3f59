"""The golden record: merged attributes with provenance, and data quality.

Built from a resolved :class:`~gateway.identity.Profile` by the survivorship
rules of :mod:`gateway.survivorship`. Contact points (emails, phones) are kept
as lists, not reconciled. Data quality is reported, never hidden::

    duplicates        several records of the customer in one system
    conflicts         an attribute with different non-empty values across systems
    possible_matches  records a key found but resolution did not merge, and why
    unreachable       systems a lookup failed for: what they hold is unknown
    missing_in        reachable configured systems with no record of the customer
    score             1.0 minus a penalty per duplicate, conflict and missing
                      system, floored at 0; None when a system was unreachable
                      (completeness that was not checked is not claimed)

Possible matches cost no score: they are other people's records, reported so
that someone can review them, not flaws of this customer's data.

The customer id's anchor is the golden email only if it identified one
person when looked up in this resolution (never a shared inbox, never an
address not looked up); otherwise the customer's best record.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from connectors.sdk import Domain, Person
from gateway.identity import IdentitySettings, Linked, PossibleMatch, Profile
from gateway.survivorship import Candidate, Rule, Winner, survive

__all__ = ["ATTRIBUTES", "Conflict", "DataQuality", "Duplicate", "GoldenRecord"]

#: Golden attributes and the record attribute each is read from.
ATTRIBUTES = ("name", "first_name", "last_name", "email", "phone", "title")
_PENALTY = {"duplicate": 0.2, "conflict": 0.15, "missing": 0.1}


@dataclass(frozen=True, slots=True)
class Duplicate:
    system: str
    record_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    field: str
    values: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class DataQuality:
    duplicates: tuple[Duplicate, ...]
    conflicts: tuple[Conflict, ...]
    missing_in: tuple[str, ...]
    possible_matches: tuple[PossibleMatch, ...] = ()
    unreachable: tuple[str, ...] = ()

    @property
    def score(self) -> float | None:
        if self.unreachable:
            return None
        penalty = (
            _PENALTY["duplicate"] * len(self.duplicates)
            + _PENALTY["conflict"] * len(self.conflicts)
            + _PENALTY["missing"] * len(self.missing_in)
        )
        return round(max(0.0, 1.0 - penalty), 2)


class GoldenRecord:
    """Survivorship applied to one profile; computed lazily, once per attribute."""

    def __init__(self, profile: Profile, settings: IdentitySettings, systems: list[str]) -> None:
        self.profile = profile
        self.settings = settings
        self._systems = systems

    def _value(self, link: Linked, attribute: str) -> str | None:
        value = getattr(link.record, attribute, None)
        if not isinstance(value, str):
            return None
        if attribute == "email":
            return self.settings.email_key(value)
        if attribute == "phone":
            return self.settings.phone_key(value)
        return value.strip() or None

    def candidates(self, attribute: str) -> list[Candidate]:
        out = []
        for link in self.profile.all():
            value = self._value(link, attribute)
            if value is not None:
                ref = link.record.source
                out.append(
                    Candidate(value, ref.system, link.connector.domain.value, ref.record_id,
                              ref.updated_at)
                )  # fmt: skip
        return out

    @cached_property
    def winners(self) -> dict[str, Winner]:
        rules = self.settings.rules
        out: dict[str, Winner] = {}
        for attribute in ATTRIBUTES:
            winner = survive(self.candidates(attribute), rules.get(attribute, Rule()))
            if winner is not None:
                out[attribute] = winner
        return out

    def get(self, attribute: str) -> str | None:
        winner = self.winners.get(attribute)
        return winner.candidate.value if winner else None

    def contact_points(self, attribute: str) -> list[str]:
        return sorted({c.value for c in self.candidates(attribute)})

    @property
    def anchor(self) -> str | None:
        """What the customer id encodes: the golden email if it identified
        this one person, else the best record."""
        email = self.get("email")
        if email is not None and email in self.profile.identifying_emails:
            return f"e:{email}"
        for domain in (Domain.CRM, Domain.BILLING, Domain.TICKETING, Domain.MARKETING):
            for link in sorted(
                self.profile.records(domain), key=lambda link: link.record.source.record_id
            ):
                return f"r:{link.connector.name}:{link.record.source.record_id}"
        return None

    @cached_property
    def quality(self) -> DataQuality:
        by_system: dict[str, list[str]] = {}
        for link in self.profile.all():
            if isinstance(link.record, Person):
                by_system.setdefault(link.connector.name, []).append(link.record.source.record_id)
        duplicates = tuple(
            Duplicate(system, tuple(sorted(ids)))
            for system, ids in sorted(by_system.items())
            if len(ids) > 1
        )
        conflicts = []
        for attribute in self.settings.conflict_fields:
            values: dict[str, Candidate] = {}
            for c in sorted(self.candidates(attribute), key=lambda c: (c.system, c.record_id)):
                values.setdefault(f"{c.system}\\0{c.value}", c)
            if len({c.value for c in values.values()}) > 1:
                conflicts.append(Conflict(attribute, tuple(values.values())))
        linked = {link.connector.name for link in self.profile.all()}
        unreachable = self.profile.unreachable
        # A system whose lookup failed is unknown, not missing.
        missing = tuple(
            s for s in sorted(self._systems) if s not in linked and s not in unreachable
        )
        return DataQuality(
            duplicates=duplicates,
            conflicts=tuple(conflicts),
            missing_in=missing,
            possible_matches=tuple(sorted(self.profile.possible.values())),
            unreachable=unreachable,
        )
