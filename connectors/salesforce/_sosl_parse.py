"""The sandbox's SOSL parser: the subset of Salesforce's search language it serves.

::

    FIND {search query} [IN ALL|NAME|EMAIL|PHONE FIELDS]
      [RETURNING Object [(field, … [ORDER BY field [ASC|DESC], …] [LIMIT n] [OFFSET m])], …]
      [LIMIT n]

The search query holds words and ``"quoted phrases"`` with ``*``/``?``
wildcards, ``AND``, ``OR``, ``AND NOT`` (case-insensitive; adjacency means
AND) and parentheses; a backslash makes the next character literal, and an
unescaped reserved character is refused, as Salesforce refuses it. Errors
carry Salesforce's codes (``MALFORMED_SEARCH``, ``INVALID_SEARCH``,
``NUMBER_OUTSIDE_VALID_RANGE``) as a :class:`~connectors.salesforce._soql.SoqlError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from connectors.salesforce._soql import SoqlError, Token, located, tokenize
from connectors.salesforce._sosl import GROUPS, MAX_OFFSET, OPERATORS, RESERVED

__all__ = ["Node", "Op", "Returning", "Search", "Term", "parse"]

_WILDCARDS = frozenset("*?")
_WORD_END = frozenset('()"')


@dataclass(frozen=True, slots=True)
class Term:
    """A word or phrase: its tokens in order, each a literal or a wildcard pattern."""

    tokens: tuple[str | re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class Op:
    op: str  # AND | OR | NOT
    items: tuple[Node, ...]


Node = Term | Op


@dataclass(frozen=True, slots=True)
class Returning:
    sobject: Token
    fields: tuple[Token, ...]
    order_by: tuple[tuple[Token, bool], ...]  # (field, descending)
    limit: int | None
    offset: int | None


@dataclass(frozen=True, slots=True)
class Search:
    text: str
    query: Node
    group: str  # one of GROUPS
    returning: tuple[Returning, ...]
    limit: int | None


def _malformed(text: str, pos: int, detail: str) -> SoqlError:
    return SoqlError("MALFORMED_SEARCH", located(text, pos, detail))


def _term(text: str, chars: list[tuple[str, bool]], pos: int) -> Term:
    """Tokens of a word or phrase; ``chars`` pairs each character with
    whether it is a wildcard (an unescaped ``*`` or ``?``)."""
    runs: list[list[tuple[str, bool]]] = []
    previous: str | None = None  # "d" or "a": the class of the last literal
    for ch, wild in chars:
        if wild:
            if not runs or previous is None:
                runs.append([])
            runs[-1].append((ch, True))
            continue
        kind = "d" if ch.isdigit() else "a" if ch.isalnum() else None
        if kind is None:
            previous = None
            continue
        if previous != kind:
            runs.append([])
        runs[-1].append((ch, False))
        previous = kind
    if sum(not wild and ch.isalnum() for ch, wild in chars) < 2:
        raise SoqlError("INVALID_SEARCH", "search term must be longer than one character")
    tokens: list[str | re.Pattern[str]] = []
    for run in runs:
        if any(wild for _, wild in run):
            if run[0][1]:
                raise SoqlError(
                    "INVALID_SEARCH", located(text, pos, "a wildcard cannot start a search term")
                )
            regex = "".join(
                (".*" if ch == "*" else ".") if wild else re.escape(ch.lower()) for ch, wild in run
            )
            tokens.append(re.compile(regex))
        else:
            tokens.append("".join(ch for ch, _ in run).lower())
    return Term(tuple(tokens))


class _Lexer:
    """Lexemes of the text between FIND's braces: ``(``, ``)``, operators, terms."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text, self.pos, self.end = text, start, end
        self.items: list[tuple[str, str | Term, int]] = []
        while self._next():
            pass
        self.items.append(("eof", "", end))

    def _next(self) -> bool:
        text = self.text
        while self.pos < self.end and text[self.pos].isspace():
            self.pos += 1
        if self.pos >= self.end:
            return False
        start, ch = self.pos, text[self.pos]
        if ch in "()":
            self.items.append((ch, ch, start))
            self.pos += 1
            return True
        quoted = ch == '"'
        if quoted:
            self.pos += 1
        chars: list[tuple[str, bool]] = []
        plain = True  # no escapes: a bare AND/OR/NOT is an operator
        while self.pos < self.end:
            ch = text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= self.end:
                    raise _malformed(text, self.pos, "a backslash must escape a character")
                chars.append((text[self.pos + 1], False))
                plain = False
                self.pos += 2
                continue
            if quoted and ch == '"':
                self.pos += 1
                break
            if not quoted and (ch.isspace() or ch in _WORD_END):
                break
            if not quoted and ch in RESERVED and ch not in _WILDCARDS:
                raise _malformed(text, self.pos, f"mismatched character '{ch}'")
            chars.append((ch, ch in _WILDCARDS))
            self.pos += 1
        else:
            if quoted:
                raise _malformed(text, start, "unterminated quoted phrase")
        word = "".join(ch for ch, _ in chars)
        if not quoted and plain and word.upper() in OPERATORS:
            self.items.append(("op", word.upper(), start))
        else:
            self.items.append(("term", _term(text, chars, start), start))
        return True


class _QueryParser:
    """``expr := and (OR and)*``, ``and := unary ((AND [NOT] | NOT)? unary)*``."""

    def __init__(self, lexer: _Lexer) -> None:
        self.text = lexer.text
        self.items = lexer.items
        self.i = 0

    def peek(self) -> tuple[str, str | Term, int]:
        return self.items[self.i]

    def fail(self) -> SoqlError:
        kind, value, pos = self.peek()
        shown = "<EOF>" if kind == "eof" else f"'{value if isinstance(value, str) else '…'}'"
        return _malformed(self.text, pos, f"unexpected token: {shown}")

    def parse(self) -> Node:
        node = self.disjunction()
        if self.peek()[0] != "eof":
            raise self.fail()
        return node

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.peek()[:2] == ("op", "OR"):
            self.i += 1
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Op("OR", tuple(items))

    def conjunction(self) -> Node:
        items = [self.unary()]
        while True:
            kind, value, _ = self.peek()
            if kind in ("eof", ")") or (kind, value) == ("op", "OR"):
                break
            negate = False
            if (kind, value) == ("op", "AND"):
                self.i += 1
                if self.peek()[:2] == ("op", "NOT"):
                    self.i += 1
                    negate = True
            elif (kind, value) == ("op", "NOT"):
                self.i += 1
                negate = True
            item = self.unary()
            items.append(Op("NOT", (item,)) if negate else item)
        return items[0] if len(items) == 1 else Op("AND", tuple(items))

    def unary(self) -> Node:
        kind, value, _ = self.peek()
        if kind == "(":
            self.i += 1
            node = self.disjunction()
            if self.peek()[0] != ")":
                raise self.fail()
            self.i += 1
            return node
        if kind == "term" and isinstance(value, Term):
            self.i += 1
            return value
        raise self.fail()


def _closing_brace(text: str, start: int) -> int:
    pos = start
    while pos < len(text):
        if text[pos] == "\\":
            pos += 2
            continue
        if text[pos] == "}":
            return pos
        pos += 1
    raise _malformed(text, start - 1, "the search term is missing its closing brace")


class _Clauses:
    """The clauses after ``FIND {…}``, read with the SOQL tokenizer."""

    def __init__(self, text: str, offset: int) -> None:
        self.text = text
        try:
            tokens = tokenize(text[offset:])
        except SoqlError as exc:
            raise SoqlError("MALFORMED_SEARCH", exc.message) from exc
        self.tokens = [Token(t.kind, t.value, t.pos + offset) for t in tokens]
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def word(self, *words: str) -> str | None:
        if self.tok.kind == "ident" and str(self.tok.value).upper() in words:
            self.i += 1
            return str(self.tokens[self.i - 1].value).upper()
        return None

    def fail(self) -> SoqlError:
        return _malformed(self.text, self.tok.pos, f"unexpected token: {self.tok.show()}")

    def punct(self, symbol: str) -> bool:
        if self.tok.kind == "punct" and self.tok.value == symbol:
            self.i += 1
            return True
        return False

    def name(self) -> Token:
        if self.tok.kind != "ident":
            raise self.fail()
        self.i += 1
        return self.tokens[self.i - 1]

    def count(self) -> int:
        if self.tok.kind != "number" or not str(self.tok.value).isdigit():
            raise self.fail()
        self.i += 1
        return int(self.tokens[self.i - 1].value)

    def returning(self) -> Returning:
        sobject = self.name()
        fields: list[Token] = []
        order: list[tuple[Token, bool]] = []
        limit = offset = None
        if self.punct("("):
            fields.append(self.name())
            while self.punct(","):
                fields.append(self.name())
            if self.word("ORDER"):
                if not self.word("BY"):
                    raise self.fail()
                while True:
                    field = self.name()
                    order.append((field, self.word("ASC", "DESC") == "DESC"))
                    if not self.punct(","):
                        break
            if self.word("LIMIT"):
                limit = self.count()
            if self.word("OFFSET"):
                offset = self.count()
            if not self.punct(")"):
                raise self.fail()
        return Returning(sobject, tuple(fields), tuple(order), limit, offset)


def parse(text: str) -> Search:
    """Parse the SOSL subset; :class:`SoqlError` with Salesforce's codes otherwise."""
    head = re.match(r"\s*FIND\s*\{", text, re.IGNORECASE)
    if head is None:
        raise SoqlError(
            "MALFORMED_SEARCH", "No search term found. The search term must be enclosed in braces."
        )
    end = _closing_brace(text, head.end())
    query = _QueryParser(_Lexer(text, head.end(), end)).parse()
    clauses = _Clauses(text, end + 1)
    group = "ALL"
    if clauses.word("IN"):
        found = clauses.word(*GROUPS)
        if found is None or not clauses.word("FIELDS"):
            raise clauses.fail()
        group = found
    returning: list[Returning] = []
    if clauses.word("RETURNING"):
        returning.append(clauses.returning())
        while clauses.punct(","):
            returning.append(clauses.returning())
    limit = clauses.count() if clauses.word("LIMIT") else None
    if clauses.tok.kind != "eof":
        raise clauses.fail()
    for spec in returning:
        if spec.offset is not None and spec.offset > MAX_OFFSET:
            raise SoqlError(
                "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOSL offset allowed is {MAX_OFFSET}"
            )
    return Search(text, query, group, tuple(returning), limit)
