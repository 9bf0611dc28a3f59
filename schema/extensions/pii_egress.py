"""The last check on personal data: the policy applied to values, not fields.

:class:`~schema.permissions.Guard` applies the policy on every field that
shows a canonical PII attribute. This extension makes that hold for the
*values* too, wherever they end up: after execution it looks at every string
of the response -- data and error messages -- for the personal data this
request read from its sources (every record the request's loaders returned,
classified by :mod:`connectors.sdk.pii`), and withholds any value the
principal may not see in full: masked when the role's treatment of that kind
is ``masked``, removed when ``hidden``. A value counts as found when a string
is that value, or holds it (an email or a phone number inside free text, in
any format: phones compare by their last 10 digits). An email's derived
identifiers (Mailchimp's subscriber hash) are the email.

It does nothing for a principal who may see every kind in full, and it
should never fire at all: a value it catches reached the response through a
field without the right guard, so it is logged as a warning (field paths and
kinds only) and recorded for the audit trail as a masked read.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from connectors.sdk import PiiKind, PiiRule, SourceRef, pii_values
from gateway.policy import DEFAULT_POLICY, Access, Policy, mask

__all__ = ["PiiEgress"]

logger = logging.getLogger("c360.pii")

# An address inside text: the domain ends at its last label, so a sentence's
# full stop or a URL's "&…" is not part of it.
_EMAIL = re.compile(r"[\w.%+'\-]+@[\w\-]+(?:\.[\w\-]+)+")
_PHONEISH = re.compile(r"\+?\d[\d\s().\-]{5,}\d")
_HIDDEN_INSIDE = "***"
_PHONE_KEY = 10  # national numbers of North America; enough to tell numbers apart elsewhere


def _digits_key(value: str) -> str | None:
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits[-_PHONE_KEY:] if len(digits) >= 7 else None


def _records(answers: Iterable[Any]) -> Iterator[Any]:
    for answer in answers:
        if isinstance(answer, list | tuple):
            yield from answer
        elif answer is not None:
            yield answer


class _Ledger:
    """The request's PII values the principal may not see in full."""

    def __init__(self) -> None:
        self.exact: dict[str, tuple[PiiRule, SourceRef]] = {}
        self.phones: dict[str, tuple[PiiRule, SourceRef]] = {}

    def add(self, rule: PiiRule, value: str, source: SourceRef) -> None:
        entry = (rule, source)
        stripped = value.strip()
        self.exact.setdefault(stripped, entry)
        if rule.kind is PiiKind.EMAIL and "@" in stripped:
            lowered = stripped.lower()
            self.exact.setdefault(lowered, entry)
            digest = hashlib.md5(lowered.encode(), usedforsecurity=False).hexdigest()
            self.exact.setdefault(digest, entry)
        elif rule.kind is PiiKind.PHONE and (key := _digits_key(stripped)) is not None:
            self.phones.setdefault(key, entry)

    def __bool__(self) -> bool:
        return bool(self.exact)

    def whole(self, text: str) -> tuple[PiiRule, SourceRef] | None:
        stripped = text.strip()
        found = self.exact.get(stripped) or self.exact.get(stripped.lower())
        if found is None and self.phones and _PHONEISH.fullmatch(stripped):
            key = _digits_key(stripped)
            found = self.phones.get(key) if key else None
        return found

    def inside(self, text: str) -> list[tuple[str, PiiRule, SourceRef]]:
        hits: list[tuple[str, PiiRule, SourceRef]] = []
        if "@" in text:
            for match in _EMAIL.finditer(text):
                entry = self.exact.get(match.group().lower())
                if entry is not None:
                    hits.append((match.group(), *entry))
        if self.phones:
            for match in _PHONEISH.finditer(text):
                key = _digits_key(match.group())
                entry = self.phones.get(key) if key else None
                if entry is not None:
                    hits.append((match.group(), *entry))
        return hits


class PiiEgress(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        loaders = getattr(context, "loaders", None)
        result = self.execution_context.result
        if loaders is None or result is None:
            return
        policy: Policy = getattr(context, "policy", None) or DEFAULT_POLICY
        principal = getattr(context, "principal", None)
        access: dict[PiiRule, Access] = {}
        ledger = _Ledger()
        for record in _records(loaders.results()):
            for _, rule, value in pii_values(record):
                shown = access.get(rule)
                if shown is None:
                    shown = access[rule] = policy.decide(principal, (), rule).access
                if shown is not Access.ALLOWED:
                    ledger.add(rule, value, record.source)
        if not ledger:
            return
        scrub = _Scrub(ledger, access)
        data = getattr(result, "data", None)
        if data is not None:
            result.data = scrub.value(data, [])
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [scrub.error(error) for error in errors]
        if scrub.caught:
            logger.warning(
                "PII outside a guarded field was withheld at %s",
                ", ".join(f"{path} ({kind})" for path, kind in scrub.caught[:20]),
            )
            _note(context, scrub)


class _Scrub:
    def __init__(self, ledger: _Ledger, access: dict[PiiRule, Access]) -> None:
        self.ledger = ledger
        self.access = access
        self.caught: list[tuple[list[str | int], str]] = []
        self.sources: list[tuple[list[str | int], SourceRef]] = []

    def _shown(self, rule: PiiRule, value: str, inside: bool) -> str:
        if self.access[rule] is Access.MASKED:
            return mask(rule.kind, value)
        return _HIDDEN_INSIDE if inside else ""

    def text(self, text: str, path: list[str | int]) -> str:
        whole = self.ledger.whole(text)
        if whole is not None:
            self._caught(path, *whole)
            return self._shown(whole[0], text, inside=False)
        for found, rule, source in self.ledger.inside(text):
            self._caught(path, rule, source)
            text = text.replace(found, self._shown(rule, found, inside=True))
        return text

    def _caught(self, path: list[str | int], rule: PiiRule, source: SourceRef) -> None:
        self.caught.append((list(path), rule.kind.value))
        self.sources.append((list(path), source))

    def value(self, value: Any, path: list[str | int]) -> Any:
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str | dict | list):
                    path.append(key)
                    value[key] = self.value(item, path)
                    path.pop()
            return value
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str | dict | list):
                    path.append(i)
                    value[i] = self.value(item, path)
                    path.pop()
        return value

    def error(self, error: GraphQLError) -> GraphQLError:
        message = self.text(error.message, ["errors"])
        extensions = self.value(dict(error.extensions or {}), ["errors"])
        if message == error.message and extensions == (error.extensions or {}):
            return error
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=error.original_error,
            extensions=extensions,
        )


def _note(context: Any, scrub: _Scrub) -> None:
    """Record what was caught as masked reads of the record it came from."""
    reads = getattr(context, "pii_reads", None)
    ids = getattr(context, "ids", None)
    if not isinstance(reads, dict) or ids is None:
        return
    paths = getattr(context, "pii_paths", None)
    for path, source in scrub.sources:
        owner = ids.encode(f"r:{source.system}:{source.record_id}")
        field = next((p for p in reversed(path) if isinstance(p, str)), "value")
        name = f"Unguarded.{field}" if field.isidentifier() else "Unguarded.value"
        reads.setdefault(owner, {}).setdefault(name, "masked")
        if isinstance(paths, list) and path[:1] != ["errors"]:
            paths.append((path, ""))
