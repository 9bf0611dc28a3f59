"""SOQL helpers: literal quoting for the connector, a small parser for the sandbox.

The client side only ever builds ``SELECT … FROM … WHERE F IN (…)`` with
escaped literals. The sandbox side parses the subset it serves::

    SELECT f1, f2 FROM Object
      [WHERE cond {AND|OR} cond …]      cond: F op literal | F [NOT] IN (literal, …) | (cond …)
      [ORDER BY F [ASC|DESC], …] [LIMIT n]

and reports errors with Salesforce's error codes and its "ERROR at Row:…"
message layout, so a client sees the same 400 bodies it would in production.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote_plus

__all__ = [
    "Condition",
    "Expr",
    "Junction",
    "Literal",
    "Query",
    "SoqlError",
    "Token",
    "in_list",
    "is_record_id",
    "located",
    "pack",
    "parse",
    "quote",
    "select",
    "tokenize",
]

_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
# Salesforce's documented escape sequences (\uXXXX is handled separately).
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_QUOTE = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_QUOTE.update({"\b": "\\b", "\f": "\\f"})
_QUOTE_TABLE = str.maketrans(_QUOTE)
_NEEDS_ESCAPE = re.compile("[" + re.escape("".join(_QUOTE)) + "]")
# What quote_plus leaves as one character: unreserved bytes, and the space it
# writes as "+".
_KEPT_BYTES = string.ascii_letters.encode() + string.digits.encode() + b"_.-~ "
_SEPARATOR_LENGTH = len(quote_plus(", "))
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      |(?P<date>\d{4}-\d{2}-\d{2})
      |(?P<number>-?\d+(?:\.\d+)?)
      |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      |(?P<op>!=|<>|<=|>=|=|<|>)
      |(?P<punct>[(),])
      |(?P<string>')""",
    re.VERBOSE,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "LIMIT"}


def is_record_id(value: str) -> bool:
    """A 15- or 18-character Salesforce record id (shape only)."""
    return _ID.fullmatch(value) is not None


def quote(value: str) -> str:
    """A SOQL string literal: reserved ``'`` and ``\\`` (and controls) escaped."""
    if _NEEDS_ESCAPE.search(value) is None:  # the usual case: nothing to escape
        return "'" + value + "'"
    return "'" + value.translate(_QUOTE_TABLE) + "'"


def in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(quote(v) for v in values) + ")"


def _encoded_length(text: str) -> int:
    """``len(quote_plus(text))`` without building it: ``quote_plus`` keeps
    unreserved bytes, turns a space into ``+`` and any other byte into ``%XX``."""
    raw = text.encode()
    return len(raw) + 2 * len(raw.translate(None, _KEPT_BYTES))


def pack(values: Sequence[str], max_items: int, max_chars: int) -> list[list[str]]:
    """Split ``values`` into ``IN`` lists of at most ``max_items`` literals and
    ``max_chars`` characters once URL-encoded, so a GET stays under the URI limit."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for value in values:
        cost = _encoded_length(quote(value)) + _SEPARATOR_LENGTH
        if current and (len(current) >= max_items or size + cost > max_chars):
            chunks.append(current)
            current, size = [], 0
        current.append(value)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def select(
    fields: Iterable[str],
    sobject: str,
    where: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> str:
    # Names come from the connector's constants; values only ever arrive
    # inside ``where`` as literals built by quote().
    soql = f"SELECT {', '.join(fields)} FROM {sobject}"  # noqa: S608
    if where:
        soql += f" WHERE {where}"
    if order_by:
        soql += f" ORDER BY {order_by}"
    if limit is not None:
        soql += f" LIMIT {int(limit)}"
    return soql


# ---------------------------------------------------------------- sandbox side
class SoqlError(Exception):
    """A query Salesforce would refuse: ``error_code`` is its ``errorCode``."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def located(text: str, pos: int, detail: str) -> str:
    """Salesforce's layout: the query line, a caret, the row/column, the reason."""
    row = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end >= 0 else len(text)]
    column = pos - start
    return f"\n{line}\n{' ' * column}^\nERROR at Row:{row}:Column:{column + 1}\n{detail}"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    value: Any
    pos: int

    @property
    def keyword(self) -> str | None:
        if self.kind == "ident" and str(self.value).upper() in _KEYWORDS:
            return str(self.value).upper()
        return None

    def show(self) -> str:
        return "<EOF>" if self.kind == "eof" else f"'{self.value}'"


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # string | number | date | datetime | null
    value: str | float | date | datetime | None
    pos: int


@dataclass(frozen=True, slots=True)
class Condition:
    field: Token
    op: str  # = != < <= > >= IN NOT IN
    values: tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class Junction:
    op: str  # AND | OR | NOT
    items: tuple[Expr, ...]


Expr = Condition | Junction


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    fields: tuple[Token, ...]
    sobject: Token
    where: Expr | None
    order_by: tuple[tuple[Token, bool], ...]  # (field, descending)
    limit: int | None


def _read_string(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in _ESCAPES or nxt.lower() in ("n", "r", "t", "b", "f"):
                out.append(_ESCAPES[nxt.lower() if nxt.isalpha() else nxt])
                i += 2
                continue
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            raise SoqlError(
                "MALFORMED_QUERY",
                located(text, i, f"Illegal character sequence '\\{nxt}' in string literal."),
            )
        out.append(ch)
        i += 1
    raise SoqlError("MALFORMED_QUERY", located(text, start, "unterminated string literal"))


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SoqlError(
                "MALFORMED_QUERY", located(text, pos, f"unexpected token: '{text[pos]}'")
            )
        kind = m.lastgroup or ""
        if kind == "string":
            value, pos = _read_string(text, m.start())
            tokens.append(Token("string", value, m.start()))
            continue
        if kind != "ws":
            tokens.append(Token(kind, m.group(), m.start()))
        pos = m.end()
    tokens.append(Token("eof", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, token: Token | None = None) -> SoqlError:
        token = token or self.tok
        return SoqlError(
            "MALFORMED_QUERY", located(self.text, token.pos, f"unexpected token: {token.show()}")
        )

    def take(self) -> Token:
        token = self.tok
        self.i += 1
        return token

    def accept(self, keyword: str) -> bool:
        if self.tok.keyword == keyword:
            self.i += 1
            return True
        return False

    def expect(self, keyword: str) -> None:
        if not self.accept(keyword):
            raise self.fail()

    def punct(self, symbol: str) -> bool:
        if self.tok.kind == "punct" and self.tok.value == symbol:
            self.i += 1
            return True
        return False

    def name(self) -> Token:
        if self.tok.kind != "ident" or self.tok.keyword is not None:
            raise self.fail()
        return self.take()

    def query(self) -> Query:
        self.expect("SELECT")
        fields = [self.name()]
        while self.punct(","):
            fields.append(self.name())
        self.expect("FROM")
        sobject = self.name()
        where = self.disjunction() if self.accept("WHERE") else None
        order: list[tuple[Token, bool]] = []
        if self.accept("ORDER"):
            self.expect("BY")
            while True:
                field = self.name()
                desc = False
                if self.tok.kind == "ident" and str(self.tok.value).upper() in ("ASC", "DESC"):
                    desc = str(self.take().value).upper() == "DESC"
                order.append((field, desc))
                if not self.punct(","):
                    break
        limit: int | None = None
        if self.accept("LIMIT"):
            if self.tok.kind != "number" or not str(self.tok.value).isdigit():
                raise self.fail()
            limit = int(self.take().value)
        if self.tok.kind != "eof":
            raise self.fail()
        return Query(self.text, tuple(fields), sobject, where, tuple(order), limit)

    def disjunction(self) -> Expr:
        first = self.term()
        joiner: str | None = None
        items = [first]
        while self.tok.keyword in ("AND", "OR"):
            # SOQL refuses "a AND b OR c": mixing needs parentheses.
            if joiner is not None and self.tok.keyword != joiner:
                raise self.fail()
            joiner = str(self.take().keyword)
            items.append(self.term())
        return first if joiner is None else Junction(joiner, tuple(items))

    def term(self) -> Expr:
        if self.accept("NOT"):
            return Junction("NOT", (self.term(),))
        if self.punct("("):
            inner = self.disjunction()
            if not self.punct(")"):
                raise self.fail()
            return inner
        field = self.name()
        if self.accept("NOT"):
            self.expect("IN")
            return Condition(field, "NOT IN", self.values())
        if self.accept("IN"):
            return Condition(field, "IN", self.values())
        if self.tok.kind != "op":
            raise self.fail()
        op = "!=" if self.tok.value == "<>" else str(self.take().value)
        return Condition(field, op, (self.literal(),))

    def values(self) -> tuple[Literal, ...]:
        if not self.punct("("):
            raise self.fail()
        values = [self.literal()]
        while self.punct(","):
            values.append(self.literal())
        if not self.punct(")"):
            raise self.fail()
        return tuple(values)

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind == "string":
            value: str | float | date | datetime | None = str(tok.value)
        elif tok.kind == "number":
            value = float(tok.value)
        elif tok.kind == "date":
            value = date.fromisoformat(str(tok.value))
        elif tok.kind == "datetime":
            value = datetime.fromisoformat(str(tok.value).replace("Z", "+00:00"))
        elif tok.kind == "ident" and str(tok.value).lower() == "null":
            return Literal("null", None, self.take().pos)
        else:
            raise self.fail()
        self.i += 1
        return Literal(tok.kind, value, tok.pos)


def parse(text: str) -> Query:
    """Parse the SOQL subset; :class:`SoqlError` with MALFORMED_QUERY otherwise."""
    try:
        return _Parser(text).query()
    except ValueError as exc:  # an impossible date such as 2026-02-30
        raise SoqlError("MALFORMED_QUERY", f"\n{text}\n{exc}") from exc
