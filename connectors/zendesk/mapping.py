"""Zendesk Support JSON -> canonical records.

Pure functions: no I/O. Missing or ``null`` fields become ``None``; a body of
the wrong shape (a list where Zendesk sends an object, a user without an id)
raises :class:`~connectors.sdk.UpstreamProtocolError`, never ``KeyError`` or
``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.sdk import Person, SourceRef, Ticket, UpstreamProtocolError, normalize_email

__all__ = [
    "SOURCE",
    "items_of",
    "next_page_of",
    "parse_time",
    "person_from_user",
    "record_id",
    "search_count",
    "search_results",
    "ticket_from_json",
]

SOURCE = "zendesk"


def _protocol(message: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"zendesk answered with {message}", source=SOURCE)


def _object(body: Any, what: str) -> Mapping[str, Any]:
    # A dict is a Mapping; checking its type first skips the slow ABC check.
    if type(body) is not dict and not isinstance(body, Mapping):
        raise _protocol(f"{type(body).__name__} where {what} should be an object")
    return body


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_time(value: Any) -> datetime | None:
    """Zendesk's ISO 8601 timestamps (``2026-05-01T10:00:00Z``) as aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def record_id(record: Any, what: str) -> str:
    """The record's integer id as a string; a record without one is unusable."""
    obj = _object(record, what)
    value = obj.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value) == "":
        raise _protocol(f"a {what} without an id")
    return str(value)


def items_of(body: Any, key: str) -> list[Mapping[str, Any]]:
    """``body[key]`` as a list of objects (``users``, ``tickets``, ``results``)."""
    obj = _object(body, "the response body")
    items = obj.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _protocol(f"{type(items).__name__} where {key!r} should be a list")
    return [_object(item, f"each of {key!r}") for item in items]


def search_results(body: Any, result_type: str) -> list[Mapping[str, Any]]:
    """Results of one search page whose ``result_type`` is ``result_type``."""
    return [r for r in items_of(body, "results") if r.get("result_type") == result_type]


def search_count(body: Any) -> int:
    """How many records match in all (Zendesk counts past its 1,000-result window)."""
    count = _object(body, "the response body").get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def next_page_of(body: Any) -> str | None:
    value = _object(body, "the response body").get("next_page")
    return value if isinstance(value, str) and value else None


def person_from_user(user: Any, *, base_url: str) -> Person:
    """A Zendesk user (requester). ``external_id`` links it to the CRM record."""
    obj = _object(user, "a user")
    uid = record_id(obj, "user")
    raw_email = _text(obj.get("email"))
    external_id = _text(obj.get("external_id"))
    return Person(
        source=SourceRef(
            system=SOURCE,
            record_id=uid,
            updated_at=parse_time(obj.get("updated_at")),
            url=f"{base_url.rstrip('/')}/agent/users/{uid}",
        ),
        name=_text(obj.get("name")),
        email=normalize_email(raw_email) or raw_email,
        phone=_text(obj.get("phone")),
        links={"salesforce": external_id} if external_id else {},
    )


def ticket_from_json(ticket: Any, *, base_url: str) -> Ticket:
    obj = _object(ticket, "a ticket")
    tid = record_id(obj, "ticket")
    updated = parse_time(obj.get("updated_at"))
    return Ticket(
        source=SourceRef(
            system=SOURCE,
            record_id=tid,
            updated_at=updated,
            url=f"{base_url.rstrip('/')}/agent/tickets/{tid}",
        ),
        requester_id=_text(obj.get("requester_id")),
        subject=_text(obj.get("subject")),
        status=_text(obj.get("status")),
        priority=_text(obj.get("priority")),
        created_at=parse_time(obj.get("created_at")),
        updated_at=updated,
    )
