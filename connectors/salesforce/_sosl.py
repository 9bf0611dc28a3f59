"""SOSL for the connector: search terms, and the limits a search lives within.

:func:`escape` backslash-escapes SOSL's reserved characters
(``? & | ! { } [ ] ( ) ^ ~ * : \\ " ' + -``), :func:`search_text` turns user
text into a search query that can only ever mean "all of these words", and
:func:`phone_term` gives the digits a phone search looks for.
:func:`tokens_of` is how Salesforce's search engine splits text into words;
the sandbox (:mod:`._sosl_parse`, :mod:`._sosl_index`) splits text the same way.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

__all__ = [
    "GROUPS",
    "MAX_OFFSET",
    "MAX_ROWS",
    "MAX_SEARCH_CHARS",
    "OPERATORS",
    "RESERVED",
    "escape",
    "phone_term",
    "search_text",
    "tokens_of",
]

#: Characters a SOSL search query reserves; a backslash makes them literal.
RESERVED = frozenset("?&|!{}[]()^~*:\\\"'+-")
#: Words a search query reads as logical operators, in any case.
OPERATORS = frozenset({"AND", "OR", "NOT"})
#: Past this many characters Salesforce drops the logical operators of a
#: search query, so an ``OR`` list would silently turn into something else.
MAX_SEARCH_CHARS = 4000
#: Rows one SOSL search returns at most, and the largest OFFSET it accepts.
MAX_ROWS = 2000
MAX_OFFSET = 2000
#: The ``IN … FIELDS`` search groups (the sandbox serves these).
GROUPS = ("ALL", "NAME", "EMAIL", "PHONE")


def escape(term: str) -> str:
    """``term`` with every reserved character preceded by a backslash."""
    return "".join("\\" + ch if ch in RESERVED else ch for ch in term)


def search_text(text: str) -> str | None:
    """A search query matching records that hold every word of ``text``.

    Reserved characters are escaped, so braces, quotes, wildcards and
    backslashes stay literal; a word that SOSL would read as an operator
    (``and``, ``or``, ``not``) is quoted, as Salesforce's docs advise. Words
    with fewer than two letters or digits are dropped: SOSL refuses them.
    ``None`` when nothing searchable is left.
    """
    words: list[str] = []
    for word in text.split():
        if sum(ch.isalnum() for ch in word) < 2:
            continue
        escaped = escape(word)
        words.append(f'"{escaped}"' if word.upper() in OPERATORS else escaped)
    return " ".join(words) or None


# Parsing costs ~15 µs a number, and each lookup by phone asks about the same
# few numbers again (the connector checks and then uses every term).
@functools.lru_cache(maxsize=4096)
def phone_term(e164: str) -> str | None:
    """The national number's digits (``4155550123`` for ``+14155550123``): what
    a search in phone fields matches whatever format the record stores."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    digits = str(number.national_number)
    return digits if len(digits) >= 2 else None


_SPLIT = re.compile(r"[^\W_]+")
_RUNS = re.compile(r"\d+|[^\W\d_]+")


def tokens_of(text: str) -> tuple[str, ...]:
    """How the search engine splits text: at spaces and punctuation, and where
    letters change to digits or back; lower-cased."""
    return tuple(run.lower() for part in _SPLIT.findall(text) for run in _RUNS.findall(part))
