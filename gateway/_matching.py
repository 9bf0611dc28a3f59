"""Whether a found record can be the person's: the conflict rules of identity resolution.

:class:`Known` is the person as resolution has accepted them so far: their
normalized emails, per system the ids of their records and of the records
their explicit links name, and the name tokens of their records per system.
A found record *conflicts* when it carries a strong identifier of someone
else; the reason is a short stable code, never a value::

    "link differs"    an explicit link into a system where the person's records
                      are known, naming none of them
    "email differs"   a normalized, non-blocked email the person does not have
                      (asked only of records a phone found: an email lookup
                      found its records by that very address)
    "name differs"    a name with no token in common with any name of the
                      person's records in the same system (two records of one
                      system with unrelated names are two people)

Names are compared in the same system only: a billing account may rightly
carry a company name where the CRM has the person's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connectors.sdk import MarketingMember, Person

__all__ = [
    "EMAIL_DIFFERS",
    "LINK_DIFFERS",
    "NAME_DIFFERS",
    "Known",
    "Record",
    "name_tokens",
    "shared",
]

Record = Person | MarketingMember
LINK_DIFFERS = "link differs"
EMAIL_DIFFERS = "email differs"
NAME_DIFFERS = "name differs"
# Letters only, two or more: initials ("A.") and digits say nothing about who.
_TOKEN = re.compile(r"[^\W\d_]{2,}")


def shared(key_kind: str) -> str:
    """The reason for a record found through a value several people share."""
    return f"shared {key_kind}"


def name_tokens(record: Record) -> frozenset[str]:
    name = record.name
    if not name and isinstance(record, Person):
        name = " ".join(part for part in (record.first_name, record.last_name) if part)
    return frozenset(_TOKEN.findall(name.casefold())) if name else frozenset()


@dataclass(slots=True)
class Known:
    """The accepted records' identifiers, as the conflict rules read them."""

    emails: set[str] = field(default_factory=set)
    # system -> ids of the person's records there and of records their links name
    records: dict[str, set[str]] = field(default_factory=dict)
    # system -> name tokens of each of the person's records there that has a name
    names: dict[str, list[frozenset[str]]] = field(default_factory=dict)

    def add(self, system: str, record: Record, email: str | None) -> None:
        if email is not None:
            self.emails.add(email)
        self.records.setdefault(system, set()).add(record.source.record_id)
        if isinstance(record, Person):
            for target_system, target in record.links.items():
                self.records.setdefault(target_system, set()).add(target)
        if tokens := name_tokens(record):
            self.names.setdefault(system, []).append(tokens)

    def copy(self) -> Known:
        return Known(
            set(self.emails),
            {system: set(ids) for system, ids in self.records.items()},
            {system: list(names) for system, names in self.names.items()},
        )

    def conflict(
        self, system: str, record: Record, email: str | None, *, check_email: bool
    ) -> str | None:
        """Why ``record`` (of ``system``, normalized email ``email``) is someone
        else's, or ``None`` when nothing it carries says so."""
        if isinstance(record, Person):
            for target_system, target in record.links.items():
                known = self.records.get(target_system)
                if known and target not in known:
                    return LINK_DIFFERS
        if check_email and email is not None and email not in self.emails:
            return EMAIL_DIFFERS
        names = self.names.get(system)
        tokens = name_tokens(record)
        if names and tokens and not any(tokens & other for other in names):
            return NAME_DIFFERS
        return None
