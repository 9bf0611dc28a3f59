"""The sandbox's SOSL engine: a token index over the org's rows, and searches run on it.

Text fields are split into tokens the way :func:`._sosl.tokens_of` splits a
search term, so a word matches a whole token (or, with a wildcard, a
pattern) and a phrase -- or a term with punctuation inside, such as an email
address -- matches consecutive tokens of one field. Phone fields also match
on all their digits and on their last ten, so ``4155550123`` finds
``(415) 555-0123`` and ``+1 415-555-0123`` alike, as Salesforce's phone
search does. Which fields a search reads depends on its ``IN … FIELDS`` group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connectors.salesforce._records import Org, Row, order_rows
from connectors.salesforce._soql import SoqlError, Token, located
from connectors.salesforce._sosl import MAX_ROWS, tokens_of
from connectors.salesforce._sosl_parse import Node, Op, Returning, Search, Term

__all__ = ["GROUP_FIELDS", "SearchEngine"]

#: The fields each search group reads, per object.
GROUP_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "Contact": {
        "NAME": ("FirstName", "LastName", "Name"),
        "EMAIL": ("Email",),
        "PHONE": ("Phone",),
        "ALL": ("FirstName", "LastName", "Name", "Email", "Phone", "Title"),
    },
    "Account": {
        "NAME": ("Name",),
        "EMAIL": (),
        "PHONE": (),
        "ALL": ("Name", "Industry", "Website"),
    },
    "Opportunity": {"NAME": ("Name",), "EMAIL": (), "PHONE": (), "ALL": ("Name", "StageName")},
}
_PHONES = frozenset({"Phone"})
_NON_DIGITS = re.compile(r"\D")
Sequences = tuple[tuple[str, ...], ...]


def _sequences(field_name: str, value: object) -> list[tuple[str, ...]]:
    if not isinstance(value, str) or not value:
        return []
    out = [tokens_of(value)]
    if field_name in _PHONES:
        digits = _NON_DIGITS.sub("", value)
        out += [(digits,), (digits[-10:],)] if len(digits) > 10 else [(digits,)]
    return [seq for seq in out if seq]


def _token_matches(token: str | re.Pattern[str], word: str) -> bool:
    return token == word if isinstance(token, str) else token.fullmatch(word) is not None


def _holds(sequences: Sequences, term: Term) -> bool:
    size = len(term.tokens)
    return any(
        all(_token_matches(t, seq[start + i]) for i, t in enumerate(term.tokens))
        for seq in sequences
        for start in range(len(seq) - size + 1)
    )


@dataclass
class _Postings:
    """One object's rows as one search group sees them."""

    rows: list[Sequences] = field(default_factory=list)
    index: dict[str, set[int]] = field(default_factory=dict)

    def find(self, node: Node) -> set[int]:
        if isinstance(node, Op):
            if node.op == "NOT":
                return set(range(len(self.rows))) - self.find(node.items[0])
            sets = [self.find(item) for item in node.items]
            return set.union(*sets) if node.op == "OR" else set.intersection(*sets)
        literals = [t for t in node.tokens if isinstance(t, str)]
        if literals:
            candidates = set.intersection(*(self.index.get(t, set()) for t in literals))
        else:
            candidates = set(range(len(self.rows)))
        if len(node.tokens) == 1 and literals:
            return candidates
        return {pos for pos in candidates if _holds(self.rows[pos], node)}


class SearchEngine:
    """SOSL over one :class:`Org`. Postings are built per (object, group) on
    first use and rebuilt when a field they read changed: the sandbox's
    mutation hook edits rows in place."""

    def __init__(self, org: Org) -> None:
        self._org = org
        self._postings: dict[tuple[str, str], tuple[list[tuple[object, ...]], _Postings]] = {}

    def _get(self, sobject: str, group: str) -> _Postings:
        names = GROUP_FIELDS[sobject][group]
        table = self._org.rows[sobject]
        snapshot = [tuple(row[name] for name in names) for row in table]
        cached = self._postings.get((sobject, group))
        if cached is not None and cached[0] == snapshot:
            return cached[1]
        postings = _Postings()
        for pos, values in enumerate(snapshot):
            sequences = tuple(
                s
                for name, value in zip(names, values, strict=True)
                for s in _sequences(name, value)
            )
            postings.rows.append(sequences)
            for word in {w for s in sequences for w in s}:
                postings.index.setdefault(word, set()).add(pos)
        self._postings[(sobject, group)] = (snapshot, postings)
        return postings

    def run(self, search: Search) -> list[tuple[str, tuple[str, ...], list[Row]]]:
        """``(object, fields, rows)`` per RETURNING object, in the order asked."""
        specs = search.returning or tuple(
            Returning(Token("ident", name, 0), (), (), None, None) for name in GROUP_FIELDS
        )
        budget = min(search.limit if search.limit is not None else MAX_ROWS, MAX_ROWS)
        out: list[tuple[str, tuple[str, ...], list[Row]]] = []
        for spec in specs:
            sobject = self._sobject(search.text, spec.sobject)
            fields = tuple(self._field(search.text, sobject, t) for t in spec.fields) or ("Id",)
            order = [(self._field(search.text, sobject, t), desc) for t, desc in spec.order_by]
            table = self._org.rows[sobject]
            rows = [
                table[pos] for pos in sorted(self._get(sobject, search.group).find(search.query))
            ]
            rows = order_rows(rows, sobject, order)[spec.offset or 0 :]
            limit = budget if spec.limit is None else min(spec.limit, budget)
            rows = rows[:limit]
            budget -= len(rows)
            out.append((sobject, fields, rows))
        return out

    @staticmethod
    def _sobject(text: str, token: Token) -> str:
        sobject = Org.sobject(str(token.value))
        if sobject is None or sobject not in GROUP_FIELDS:
            detail = f"sObject type '{token.value}' is not supported."
            raise SoqlError("INVALID_TYPE", located(text, token.pos, detail))
        return sobject

    @staticmethod
    def _field(text: str, sobject: str, token: Token) -> str:
        name = Org.field(sobject, str(token.value))
        if name is None:
            detail = f"No such column '{token.value}' on entity '{sobject}'."
            raise SoqlError("INVALID_FIELD", located(text, token.pos, detail))
        return name
