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

A store in this process skips the bytes: :func:`freeze` checks a value against
the same rules and returns what ``loads(dumps(value))`` would, except that its
lists and dicts are a :class:`FrozenList` and :class:`FrozenDict`, so every
request can share the one copy and none can change it for the others.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, NoReturn

from connectors.sdk import models
from gateway._stores import CacheError

__all__ = ["CodecError", "FrozenDict", "FrozenList", "dumps", "freeze", "loads"]

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


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError("a cached value is shared by every request: copy it to change it")


class FrozenList(list[Any]):
    """A list nobody can change in place; copies (``list(x)``, ``x[:]``) are plain lists."""

    __slots__ = ()
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        # copy.copy and pickle would otherwise refill a new FrozenList item by item.
        return list, (list(self),)


class FrozenDict(dict[Any, Any]):
    """A dict nobody can change in place; ``dict(x)`` and ``x.copy()`` are plain dicts."""

    __slots__ = ()
    clear = pop = popitem = setdefault = update = _refuse
    __setitem__ = __delitem__ = __ior__ = _refuse

    def __reduce__(self) -> tuple[type[dict[Any, Any]], tuple[dict[Any, Any]]]:
        return dict, (dict(self),)


_INIT_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def _init_fields(cls: type[Any]) -> tuple[str, ...]:
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = _INIT_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    return names


def _same(old: Iterable[Any], new: Iterable[Any]) -> bool:
    return all(a is b for a, b in zip(old, new, strict=True))


def freeze(obj: Any) -> Any:
    """``loads(dumps(obj))`` without the JSON, made to be shared; :class:`CodecError` as dumps.

    Immutable parts (scalars, enums, datetimes, records and tuples with nothing
    mutable inside) are kept as they are rather than copied.
    """
    kind = type(obj)
    if kind in _SCALARS:  # the branches follow _encode's, so both accept the same values
        return obj
    if isinstance(obj, list):
        return FrozenList([freeze(item) for item in obj])
    if isinstance(obj, tuple):
        items = tuple([freeze(item) for item in obj])
        return obj if kind is tuple and _same(obj, items) else items
    if isinstance(obj, datetime):
        return obj if kind is datetime else datetime.fromisoformat(obj.isoformat())
    if isinstance(obj, date):
        return obj if kind is date else date.fromisoformat(obj.isoformat())
    if isinstance(obj, Mapping):
        if all(isinstance(key, str) for key in obj) and _TAG not in obj:
            # JSON object keys come back as plain str, even from a StrEnum.
            return FrozenDict({str.__str__(k): freeze(v) for k, v in obj.items()})
        return FrozenDict({freeze(k): freeze(v) for k, v in obj.items()})
    if _TYPES.get(kind.__name__) is kind:
        if isinstance(obj, enum.Enum):
            return obj
        names = _init_fields(kind)
        old = [getattr(obj, name) for name in names]
        new = [freeze(value) for value in old]
        return obj if _same(old, new) else kind(**dict(zip(names, new, strict=True)))
    raise CodecError(f"cannot cache a value of type {kind.__qualname__}")
