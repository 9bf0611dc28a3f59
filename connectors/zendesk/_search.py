"""The subset of the Zendesk search language the sandbox understands, and the
index the sandbox evaluates it against.

Zendesk's unified search (``GET /api/v2/search.json?query=…``) takes
``keyword:value`` filters and free-text words. The rules the sandbox keeps:

* a repeated keyword ORs its values (``status:open status:pending``);
  different keywords AND together, as do free-text words;
* ``keyword:"quoted value"`` and ``"quoted phrase"`` are single terms;
* keywords and ``type`` values are case-insensitive;
* ``phone:4155550123`` matches a user whose phone has exactly those digits,
  ``phone:*4155550123`` one whose phone's digits end with them, whatever the
  stored format (``+1 415.555.0123``, ``(415) 555-0123``) -- Zendesk's
  documented way to find a caller by number.

What the sandbox does not implement (``<``/``>`` comparisons, ``-`` negation,
other keywords) is refused with :class:`SearchSyntaxError` -- the sandbox turns
it into Zendesk's 400 ``InvalidValue`` body -- rather than silently matching
nothing, so a client relying on it notices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KEYWORDS",
    "TYPES",
    "SearchIndex",
    "SearchQuery",
    "SearchSyntaxError",
    "parse_query",
    "words_of",
]

#: Property keywords the sandbox filters on, with the record types they apply to.
KEYWORDS: dict[str, frozenset[str]] = {
    "email": frozenset({"user"}),
    "external_id": frozenset({"user"}),
    "phone": frozenset({"user"}),
    "requester": frozenset({"ticket"}),
    "status": frozenset({"ticket"}),
}
#: Values Zendesk accepts for ``type:``; the sandbox only holds users and tickets.
TYPES = frozenset({"ticket", "user", "organization", "group"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<neg>-)?(?P<key>[A-Za-z_][\w.]*)(?P<op><=|>=|[:<>])
            (?:"(?P<qval>[^"]*)"|(?P<val>[^\s"]+))
      | "(?P<phrase>[^"]*)"
      | (?P<word>[^\s"]+)
    )""",
    re.VERBOSE,
)
_WORD_SPLIT = re.compile(r"[^\w@.+-]+")
_NON_DIGITS = re.compile(r"\D")


class SearchSyntaxError(ValueError):
    """The query is empty, malformed, or outside the sandbox's subset."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    types: frozenset[str] = frozenset()
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    words: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()

    def applies_to(self, record_type: str) -> bool:
        """Whether a record of ``record_type`` can match at all."""
        if self.types and record_type not in self.types:
            return False
        return all(record_type in KEYWORDS[key] for key in self.filters)


def parse_query(query: str | None) -> SearchQuery:
    if query is None or not query.strip():
        raise SearchSyntaxError("The query parameter is required and cannot be blank")
    types: set[str] = set()
    filters: dict[str, list[str]] = {}
    words: list[str] = []
    phrases: list[str] = []
    pos = 0
    while pos < len(query):
        if not query[pos:].strip():
            break
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            raise SearchSyntaxError(f"Unbalanced quote near position {pos}")
        pos = match.end()
        if match["key"] is not None:
            key = match["key"].lower()
            value = match["qval"] if match["qval"] is not None else match["val"]
            if match["neg"] or match["op"] != ":":
                raise SearchSyntaxError(
                    f"The sandbox supports only 'keyword:value', not {match.group().strip()!r}"
                )
            if key == "type":
                kind = value.lower()
                if kind not in TYPES:
                    raise SearchSyntaxError(f"Unknown type {value!r}")
                types.add(kind)
            elif key in KEYWORDS:
                filters.setdefault(key, []).append(value.strip())
            else:
                raise SearchSyntaxError(f"The sandbox does not support the keyword {key!r}")
        elif match["phrase"] is not None:
            if match["phrase"].strip():
                phrases.append(match["phrase"].strip().lower())
        else:
            word = match["word"]
            if word.endswith(":"):
                raise SearchSyntaxError(f"Missing value for {word!r}")
            words.append(word.lower())
    return SearchQuery(
        types=frozenset(types),
        filters={key: tuple(values) for key, values in filters.items()},
        words=tuple(words),
        phrases=tuple(phrases),
    )


def words_of(*texts: str | None) -> tuple[str, ...]:
    """Lower-cased words of ``texts``: a search word matches a word's prefix."""
    out: list[str] = []
    for text in texts:
        if text:
            out.extend(w for w in _WORD_SPLIT.split(text.lower()) if w)
    return tuple(out)


@dataclass
class SearchIndex:
    """Users and tickets by what the search keywords filter on, built once.

    Values compare case-insensitively; ``email`` on the trimmed stored value.
    A free-text word matches a record word's prefix, a phrase any substring.
    """

    _by_email: dict[str, set[int]] = field(default_factory=dict)
    _external_id: dict[int, str] = field(default_factory=dict)
    _phone_digits: dict[int, str] = field(default_factory=dict)
    _by_requester: dict[int, set[int]] = field(default_factory=dict)
    _status: dict[int, str] = field(default_factory=dict)
    _words: dict[str, dict[int, tuple[str, ...]]] = field(
        default_factory=lambda: {"user": {}, "ticket": {}}
    )

    def add_user(self, user: Mapping[str, Any]) -> None:
        """Index a Zendesk user object (``id``, ``email``, ``external_id``, ``name``, ``phone``)."""
        uid, email = user["id"], user.get("email")
        self._by_email.setdefault((email or "").strip().lower(), set()).add(uid)
        if user.get("external_id"):
            self._external_id[uid] = user["external_id"]
        # Indexing a user again (a sandbox mutation) replaces what it held.
        if digits := _NON_DIGITS.sub("", user.get("phone") or ""):
            self._phone_digits[uid] = digits
        else:
            self._phone_digits.pop(uid, None)
        self._words["user"][uid] = words_of(user.get("name"), email, user.get("phone"))

    def add_ticket(self, ticket: Mapping[str, Any]) -> None:
        """Index a Zendesk ticket object (``requester_id``, ``status``, ``subject``, …)."""
        tid = ticket["id"]
        self._by_requester.setdefault(ticket["requester_id"], set()).add(tid)
        self._status[tid] = str(ticket.get("status") or "").lower()
        self._words["ticket"][tid] = words_of(ticket.get("subject"), ticket.get("description"))

    def find(self, kind: str, q: SearchQuery) -> list[int]:
        """Ids of ``kind`` records matching ``q``, ascending."""
        if not q.applies_to(kind):
            return []
        ids: Iterable[int] = self._words[kind]
        if "email" in q.filters:
            ids = {u for v in q.filters["email"] for u in self._by_email.get(v.lower(), ())}
        if "phone" in q.filters:
            ids = [u for u in ids if self._phone_matches(u, q.filters["phone"])]
        if "external_id" in q.filters:
            wanted = set(q.filters["external_id"])
            ids = [u for u in ids if self._external_id.get(u) in wanted]
        if "requester" in q.filters:
            ids = {
                t
                for u in self._requesters(q.filters["requester"])
                for t in self._by_requester.get(u, ())
            }
        if "status" in q.filters:
            statuses = {v.lower() for v in q.filters["status"]}
            ids = [t for t in ids if self._status[t] in statuses]
        return sorted(i for i in ids if self._text_matches(kind, i, q))

    def _phone_matches(self, uid: int, values: Iterable[str]) -> bool:
        stored = self._phone_digits.get(uid)
        if stored is None:
            return False
        for value in values:
            digits = _NON_DIGITS.sub("", value)
            if digits and (stored.endswith(digits) if value.startswith("*") else stored == digits):
                return True
        return False

    def _requesters(self, values: Iterable[str]) -> set[int]:
        out: set[int] = set()
        for value in values:
            if value.isdigit():
                out.add(int(value))
            else:
                out.update(self._by_email.get(value.lower(), ()))
        return out

    def _text_matches(self, kind: str, rid: int, q: SearchQuery) -> bool:
        words = self._words[kind][rid]
        if kind == "ticket" and str(rid) in q.words:
            return True  # a bare number finds the ticket with that id
        text = " ".join(words)
        return all(any(w.startswith(term) for w in words) for term in q.words) and all(
            phrase in text for phrase in q.phrases
        )
