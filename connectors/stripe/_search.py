"""Stripe's search query language: building queries (connector) and parsing them (sandbox).

Facts from Stripe's "Search query language" documentation
(https://docs.stripe.com/search#search-query-language):

* a clause is ``field`` ``operator`` ``value``, e.g. ``email:'amy@rocketrides.io'``;
* up to 10 clauses per query, joined by spaces or ``AND`` (the default) or by
  ``OR`` -- case-insensitive, never ``AND`` and ``OR`` in one query, no parentheses;
* string values must be quoted; quotes inside a value are escaped with a backslash.

The parser understands the subset the sandbox serves: ``field:'value'`` and
``metadata['key']:'value'`` clauses, bare numbers, either quote style.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MAX_CLAUSES", "Clause", "Query", "QueryError", "any_of", "parse_query", "quote"]

#: Stripe's documented clause cap per search query.
MAX_CLAUSES = 10

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_JOINER = re.compile(r"(AND|OR)(?=\s|$)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def quote(value: str) -> str:
    """``value`` as a single-quoted search string.

    Backslashes are escaped too, so a value ending in ``\\`` cannot swallow the
    closing quote and splice the next clause into this one.
    """
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def any_of(field: str, values: Sequence[str]) -> str:
    """``field:'a' OR field:'b' …``: one query matching any of ``values``."""
    if not values:
        raise ValueError("a search query needs at least one value")
    if len(values) > MAX_CLAUSES:
        raise ValueError(f"Stripe search takes at most {MAX_CLAUSES} clauses, got {len(values)}")
    return " OR ".join(f"{field}:{quote(value)}" for value in values)


@dataclass(frozen=True, slots=True)
class Clause:
    """One ``field:value`` clause; ``key`` is set for ``metadata['key']``."""

    field: str
    value: str
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    clauses: tuple[Clause, ...]
    conjunction: str  # "AND" | "OR"


class QueryError(ValueError):
    """The query is not valid search syntax (the sandbox answers 400)."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> bool:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos > start

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def fail(self, what: str) -> QueryError:
        return QueryError(f"Invalid query: {what} at position {self.pos}.")

    def quoted(self) -> str:
        mark = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == mark:
                return "".join(out)
            out.append(char)
        raise self.fail("unterminated string")

    def clause(self) -> Clause:
        if self.text[self.pos] == "-":
            raise self.fail("negated clauses are not supported by this sandbox")
        match = _FIELD.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a field name")
        field, key = match.group(0), None
        self.pos = match.end()
        if field == "metadata":
            if self.text[self.pos : self.pos + 1] != "[" or self.text[
                self.pos + 1 : self.pos + 2
            ] not in (
                "'",
                '"',
            ):
                raise self.fail("expected metadata['key']")
            self.pos += 1
            key = self.quoted()
            if self.text[self.pos : self.pos + 1] != "]":
                raise self.fail("expected ']'")
            self.pos += 1
        if self.text[self.pos : self.pos + 1] != ":":
            raise self.fail("expected ':' (only exact-match clauses are supported)")
        self.pos += 1
        if self.done():
            raise self.fail("expected a value")
        if self.text[self.pos] in ("'", '"'):
            value = self.quoted()
        else:
            number = _NUMBER.match(self.text, self.pos)
            if number is None:
                raise self.fail("string values must be quoted")
            value = number.group(0)
            self.pos = number.end()
        return Clause(field=field, value=value, key=key)


def parse_query(text: str, *, max_clauses: int = MAX_CLAUSES) -> Query:
    """Parse ``text``; raise :class:`QueryError` with a Stripe-like message."""
    parser = _Parser(text)
    clauses: list[Clause] = []
    joiners: set[str] = set()
    parser.skip_space()
    while not parser.done():
        if clauses:
            joiner = _JOINER.match(parser.text, parser.pos)
            if joiner is not None:
                joiners.add(joiner.group(1).upper())
                parser.pos = joiner.end()
                parser.skip_space()
                if parser.done():
                    raise parser.fail(f"query ends with {joiner.group(1).upper()}")
            else:
                joiners.add("AND")
        clauses.append(parser.clause())
        if not parser.skip_space() and not parser.done():
            raise parser.fail("expected whitespace between clauses")
    if not clauses:
        raise QueryError("Invalid query: the query is empty.")
    if len(joiners) > 1:
        raise QueryError("Invalid query: AND and OR cannot be combined in one query.")
    if len(clauses) > max_clauses:
        raise QueryError(
            f"Invalid query: a query can have at most {max_clauses} clauses, got {len(clauses)}."
        )
    return Query(clauses=tuple(clauses), conjunction=joiners.pop() if joiners else "AND")
