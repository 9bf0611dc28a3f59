"""Queries that reach every field of the schema, and the PII of a whole world.

Used by the all-roles PII walk: the query is generated from the schema itself,
so a field added later is walked too, and the PII to look for is every value
the seeded world stores, in every format, not what the gateway chose to show.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
)

from connectors.sdk.world import PLACEHOLDER_EMAIL, PLACEHOLDER_PHONES, World

__all__ = ["PiiKey", "Selection", "select", "strings", "unwrap"]

_EMAIL = re.compile(r"[\w.%+'\-]+@[\w\-]+(?:\.[\w\-]+)+")
_PHONEISH = re.compile(r"\+?\d[\d\s().\-]{5,}\d")


def unwrap(kind: Any) -> Any:
    while isinstance(kind, GraphQLNonNull | GraphQLList):
        kind = kind.of_type
    return kind


def select(
    schema: GraphQLSchema,
    type_name: str,
    args: Mapping[tuple[str, str], str] | None = None,
    path: tuple[str, ...] = (),
) -> str:
    """A selection of every field of ``type_name``, object types entered once per path.

    A field with required arguments is selected only when ``args`` gives them
    (keyed by ``(type, field)``, the text inside the parentheses).
    """
    args = args or {}
    object_type = schema.type_map[type_name]
    assert isinstance(object_type, GraphQLObjectType)
    parts = []
    for name, definition in object_type.fields.items():
        given = args.get((type_name, name))
        required = [
            a for a, d in definition.args.items()
            if isinstance(d.type, GraphQLNonNull) and d.default_value is None
        ]  # fmt: skip
        if required and given is None:
            continue
        call = f"({given})" if given else ""
        inner = unwrap(definition.type)
        if isinstance(inner, GraphQLObjectType):
            if inner.name in path or _is_wrapper_loop(inner.name, path):
                continue
            parts.append(
                f"{name}{call} {{ {select(schema, inner.name, args, (*path, inner.name))} }}"
            )
        else:
            parts.append(f"{name}{call}")
    return " ".join(parts)


def _is_wrapper_loop(name: str, path: tuple[str, ...]) -> bool:
    # Connection -> Edge -> node: a second connection of the same node type
    # under the first (children of children) adds nothing new.
    return name.endswith(("Connection", "Edge")) and name in path


@dataclass
class Selection:
    """Walks a response along the schema: every value with its parent type and field."""

    schema: GraphQLSchema
    roots: Mapping[str, str]  # response alias -> Query field

    def values(self, data: Mapping[str, Any]) -> Iterator[tuple[str, list[Any], Any]]:
        query = self.schema.query_type
        assert query is not None
        for alias, value in data.items():
            definition = query.fields[self.roots.get(alias, alias)]
            yield from self._walk(
                "Query." + self.roots.get(alias, alias), definition, value, [alias]
            )

    def _walk(
        self, name: str, definition: GraphQLField, value: Any, path: list[Any]
    ) -> Iterator[tuple[str, list[Any], Any]]:
        yield name, path, value
        inner = unwrap(definition.type)
        if not isinstance(inner, GraphQLObjectType) or value is None:
            return
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            where = [*path, i] if isinstance(value, list) else path
            for key, child in item.items():
                yield from self._walk(
                    f"{inner.name}.{key}", inner.fields[key], child, [*where, key]
                )


def strings(value: Any, path: list[Any] | None = None) -> Iterator[tuple[list[Any], str]]:
    """Every string in a JSON value, with its path."""
    path = path or []
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, [*path, key])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, [*path, i])


def _digits(value: str) -> str | None:
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits[-10:] if len(digits) >= 7 else None


def _email(value: str) -> str:
    return value.strip().lower()


@dataclass
class PiiKey:
    """Every personal value a world stores, by kind, in forms that survive reformatting."""

    names: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)  # last 10 digits

    @classmethod
    def of(cls, world: World) -> PiiKey:
        key = cls()
        placeholders = {_digits(p) for p in PLACEHOLDER_PHONES} | {None}
        for person in world.people:
            for attribute, value in _stored(person):
                if not isinstance(value, str) or not value.strip():
                    continue
                if attribute.endswith("email"):
                    email = _email(value)
                    if email != PLACEHOLDER_EMAIL:
                        key.emails.add(email)
                        key.hashes.add(hashlib.md5(email.encode()).hexdigest())
                elif attribute.endswith("phone"):
                    if (digits := _digits(value)) not in placeholders:
                        key.phones.add(digits)  # type: ignore[arg-type]
                elif attribute.endswith("name"):
                    key.names.add(value.strip())
        return key

    def kinds(self, text: str) -> set[str]:
        """The kinds of personal data ``text`` is or holds."""
        found = set()
        stripped = text.strip()
        if stripped in self.names:
            found.add("name")
        if stripped.lower() in self.hashes:
            found.add("hash")
        if any(_email(m.group()) in self.emails for m in _EMAIL.finditer(text)):
            found.add("email")
        if any(_digits(m.group()) in self.phones for m in _PHONEISH.finditer(text)):
            found.add("phone")
        return found


def _stored(person: Any) -> Iterator[tuple[str, Any]]:
    """Every attribute of a world person (and of their billing accounts) that
    holds a name, an email or a phone, whatever the world calls it."""
    for attribute, value in vars(person).items():
        if attribute.endswith(("email", "phone", "name")):
            yield attribute, value
    yield "name", person.name
    for account in getattr(person, "billing", ()):
        for attribute, value in vars(account).items():
            if attribute.endswith(("email", "phone", "name")):
                yield attribute, value
