"""Mailchimp Marketing API v3 JSON -> canonical records.

Pure functions: no I/O. Missing or ``null`` fields become ``None``; a body of
the wrong shape (a list where an object belongs, a string where a list of
members belongs) raises :class:`~connectors.sdk.UpstreamProtocolError`, so a
vendor change surfaces as one typed error instead of a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.sdk import (
    Consent,
    EngagementEvent,
    MarketingMember,
    PiiKind,
    SourceRef,
    UpstreamProtocolError,
    normalize_email,
)

__all__ = [
    "SYSTEM",
    "activity_feed",
    "list_names",
    "member",
    "member_url",
    "parse_time",
    "search_exact_matches",
]

SYSTEM = "mailchimp"

ListNames = Mapping[str, str | None]


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UpstreamProtocolError(
            f"{SYSTEM} sent {type(value).__name__} where {what} (an object) belongs",
            source=SYSTEM,
        )
    return value


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    """A list of objects; an absent (``None``) list is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UpstreamProtocolError(
            f"{SYSTEM} sent {type(value).__name__} where {what} (a list) belongs",
            source=SYSTEM,
        )
    return [_object(item, what) for item in value]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_time(value: Any) -> datetime | None:
    """Mailchimp's ISO 8601 times (``2026-05-01T10:00:00+00:00``) as aware UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def member_url(dc: str | None, web_id: Any) -> str | None:
    """Deep link to the member's profile page in the Mailchimp web app."""
    if not dc or isinstance(web_id, bool) or not isinstance(web_id, int | str) or web_id == "":
        return None
    return f"https://{dc}.admin.mailchimp.com/lists/members/view?id={web_id}"


def list_names(body: Any) -> dict[str, str | None]:
    """``GET /3.0/lists`` page -> ``{list id: name}``."""
    page = _object(body, "a lists page")
    names: dict[str, str | None] = {}
    for item in _objects(page.get("lists"), "lists"):
        list_id = _text(item.get("id"))
        if list_id:
            names[list_id] = _text(item.get("name"))
    return names


def _name(raw: dict[str, Any]) -> str | None:
    merge = raw.get("merge_fields")
    if isinstance(merge, dict):
        parts = [_text(merge.get("FNAME")), _text(merge.get("LNAME"))]
        joined = " ".join(p for p in parts if p)
        if joined:
            return joined
    return _text(raw.get("full_name"))


def _consents(raw: dict[str, Any], updated_at: datetime | None) -> tuple[Consent, ...]:
    consents: list[Consent] = []
    for permission in _objects(raw.get("marketing_permissions"), "marketing_permissions"):
        channel = _text(permission.get("text")) or _text(permission.get("marketing_permission_id"))
        if channel is None:
            continue
        status = "granted" if permission.get("enabled") is True else "denied"
        consents.append(Consent(channel=channel, status=status, updated_at=updated_at))
    return tuple(consents)


def member(body: Any, *, lists: ListNames, dc: str | None) -> MarketingMember:
    """One list member (``GET /3.0/lists/{list}/members/{hash}``) -> a membership."""
    raw = _object(body, "a list member")
    member_id = _text(raw.get("id"))
    if member_id is None:
        raise UpstreamProtocolError(f"{SYSTEM} sent a list member without an id", source=SYSTEM)
    updated_at = parse_time(raw.get("last_changed"))
    stored = _text(raw.get("email_address"))
    list_id = _text(raw.get("list_id"))
    stats = raw.get("stats")
    stats = stats if isinstance(stats, dict) else {}
    return MarketingMember(
        source=SourceRef(
            system=SYSTEM,
            record_id=member_id,
            updated_at=updated_at,
            url=member_url(dc, raw.get("web_id")),
            # The member id is the subscriber hash, md5 of the email: an email.
            id_pii=PiiKind.EMAIL,
        ),
        email=normalize_email(stored) or stored,
        name=_name(raw),
        status=_text(raw.get("status")),
        list_id=list_id,
        list_name=lists.get(list_id) if list_id else None,
        consents=_consents(raw, updated_at),
        avg_open_rate=_rate(stats.get("avg_open_rate")),
        avg_click_rate=_rate(stats.get("avg_click_rate")),
    )


def search_exact_matches(body: Any, *, lists: ListNames, dc: str | None) -> list[MarketingMember]:
    """``GET /3.0/search-members`` -> the memberships in ``exact_matches``."""
    page = _object(body, "a search-members result")
    exact = page.get("exact_matches")
    if exact is None:
        return []
    members = _object(exact, "exact_matches").get("members")
    return [member(m, lists=lists, dc=dc) for m in _objects(members, "exact_matches.members")]


def activity_feed(body: Any, *, member_id: str) -> list[EngagementEvent]:
    """``GET …/members/{hash}/activity-feed`` page -> engagement events.

    Feed items are a union keyed by ``activity_type`` (open, click, bounce,
    unsub, sent, note, signup kinds …); campaign items carry ``campaign_title``.
    The older ``/activity`` shape (``action``, ``timestamp``, ``title``) is read too.
    """
    page = _object(body, "an activity feed page")
    list_id = _text(page.get("list_id")) or ""
    events: list[EngagementEvent] = []
    for item in _objects(page.get("activity"), "activity"):
        kind = _text(item.get("activity_type")) or _text(item.get("action")) or "unknown"
        stamp = item.get("created_at_timestamp") or item.get("timestamp")
        occurred_at = parse_time(stamp)
        subject = _text(item.get("campaign_id")) or _text(item.get("note_id")) or ""
        events.append(
            EngagementEvent(
                # Feed items have no id of their own; this tuple is what makes one unique.
                source=SourceRef(
                    system=SYSTEM,
                    record_id=f"{list_id}:{member_id}:{kind}:{stamp or ''}:{subject}",
                    updated_at=occurred_at,
                    id_pii=PiiKind.EMAIL,  # it holds the subscriber hash
                ),
                member_id=member_id,
                kind=kind,
                occurred_at=occurred_at,
                detail=_text(item.get("campaign_title"))
                or _text(item.get("title"))
                or _text(item.get("note_text")),
            )
        )
    return events
