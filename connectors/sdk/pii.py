"""Personal data on canonical records: which attributes hold which kind.

PII is classified once, here and in :mod:`connectors.sdk.models`, on the
data itself, so the gateway can apply its policy to a value wherever it
surfaces -- any GraphQL field, a contact list, a data-quality conflict, a
search, an identifier derived from it -- not only where a field was
annotated. A model attribute declares its kind with :func:`pii`::

    email: str | None = pii(PiiKind.EMAIL)
    phone: str | None = pii(PiiKind.PHONE, sensitive=True)

and :func:`pii_attributes` lists them per model. An identifier computed from
personal data (Mailchimp's subscriber hash is the md5 of the lower-cased
email) is personal data of the same kind: a record says so with
``SourceRef(id_pii=PiiKind.EMAIL)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = ["PiiKind", "PiiRule", "pii", "pii_attributes", "pii_values"]

_KEY = "c360.pii"


class PiiKind(StrEnum):
    """What kind of personal data a value is; decides how it is masked."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    NAME = "NAME"
    ID = "ID"  # card numbers, account numbers, national ids: last 4 when masked
    OTHER = "OTHER"  # a value of any of the above; masked by its shape


@dataclass(frozen=True, slots=True)
class PiiRule:
    """A kind, and whether the value is sensitive (needs more than ``pii:read``)."""

    kind: PiiKind
    sensitive: bool = False


def pii(kind: PiiKind, *, sensitive: bool = False, required: bool = False) -> Any:
    """A dataclass field that holds personal data of ``kind`` (``None`` unless ``required``)."""
    metadata = {_KEY: PiiRule(kind, sensitive)}
    if required:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=None, metadata=metadata)


@functools.cache
def pii_attributes(model: type) -> Mapping[str, PiiRule]:
    """The attributes of a record type that hold PII, and their rules."""
    if not dataclasses.is_dataclass(model):
        return MappingProxyType({})
    return MappingProxyType(
        {f.name: f.metadata[_KEY] for f in dataclasses.fields(model) if _KEY in f.metadata}
    )


def pii_values(record: Any) -> Iterator[tuple[str, PiiRule, str]]:
    """``(attribute, rule, value)`` for every non-empty PII string ``record`` holds,
    its source's derived id included (as attribute ``"id"``)."""
    kind_of: type = type(record)
    for name, rule in pii_attributes(kind_of).items():
        value = getattr(record, name, None)
        if isinstance(value, str) and value.strip():
            yield name, rule, value
    source = getattr(record, "source", None)
    kind = getattr(source, "id_pii", None)
    if kind is not None:
        yield "id", PiiRule(kind), str(getattr(source, "record_id", ""))
