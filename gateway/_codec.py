"""JSON encoding of canonical records for the shared cache -- never pickle.

Cached bytes come back from a store other processes can write to, so decoding
must not be able to run code: the format is plain JSON, and the only types it
can rebuild are the dataclasses and enums of :mod:`connectors.sdk.models`.

JSON has no tuples, datetimes, dates or records, so those travel as tagged
objects ``{"$": tag, ...}``::

    tuple           {"$": "tuple", "v": [...]}
    datetime, date  {"$": "datetime", "v": "2024-05-01T12:00:00+00:00"}
    record          {"$": "Person", "f": {"source": {...}, "email": "..."}}
    enum            {"$": "Domain", "v": "crm"}
    other mapping   {"$": "map", "v": [[key, value], ...]}

Plain lists, string-keyed dicts (without a ``"$"`` key) and JSON scalars are
written as themselves. A record whose fields changed shape since it was cached
fails to decode with :class:`CodecError`; the cache treats that as a miss.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from connectors.sdk import models
from gateway._stores import CacheError

__all__ = ["CodecError", "dumps", "loads"]

_TAG = "$"
_SCALARS = (type(None), bool, int, float, str)


class CodecError(CacheError):
    """A value cannot be encoded, or cached bytes cannot be decoded."""


def _model_types() -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {}
    for name in models.__all__:
        obj = getattr(models, name)
        if inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum)):
            found[name] = obj
    return found


# The allow-list of rebuildable types: every record and enum of the SDK models.
_TYPES = _model_types()
_RESERVED = {"tuple", "datetime", "date", "map"}
assert not _RESERVED & _TYPES.keys(), "a model name collides with a codec tag"


def _encode(obj: Any) -> Any:
    if type(obj) in _SCALARS:  # exact types: enums (str and int subclasses) are tagged
        return obj
    if isinstance(obj, list):
        return [_encode(item) for item in obj]
    if isinstance(obj, tuple):
        return {_TAG: "tuple", "v": [_encode(item) for item in obj]}
    if isinstance(obj, datetime):
        return {_TAG: "datetime", "v": obj.isoformat()}
    if isinstance(obj, date):
        return {_TAG: "date", "v": obj.isoformat()}
    if isinstance(obj, Mapping):
        if all(isinstance(key, str) for key in obj) and _TAG not in obj:
            return {key: _encode(value) for key, value in obj.items()}
        return {_TAG: "map", "v": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    name = type(obj).__name__
    if _TYPES.get(name) is type(obj):
        if isinstance(obj, enum.Enum):
            return {_TAG: name, "v": _encode(obj.value)}
        fields = {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return {_TAG: name, "f": fields}
    raise CodecError(f"cannot cache a value of type {type(obj).__qualname__}")


def _decode_tagged(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    if tag == "tuple":
        return tuple(obj["v"])
    if tag == "datetime":
        return datetime.fromisoformat(obj["v"])
    if tag == "date":
        return date.fromisoformat(obj["v"])
    if tag == "map":
        return {k: v for k, v in obj["v"]}
    cls = _TYPES.get(tag)
    if cls is None:
        raise CodecError(f"unknown type tag {tag!r} in cached value")
    if issubclass(cls, enum.Enum):
        return cls(obj["v"])
    return cls(**obj["f"])


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` (records, their containers, JSON scalars) as UTF-8 JSON."""
    return json.dumps(_encode(obj), separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes) -> Any:
    """Decode bytes written by :func:`dumps`; anything else is a :class:`CodecError`."""
    try:
        return json.loads(data, object_hook=_decode_tagged)
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        # ValueError covers bad JSON, bad UTF-8, bad ISO dates and bad enum values;
        # TypeError covers a record whose fields changed since it was cached.
        raise CodecError("cached value cannot be decoded") from exc
