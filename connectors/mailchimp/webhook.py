"""Mailchimp audience webhooks: a secret in the URL, form-encoded events in.

Mailchimp signs nothing, so the webhook URL carries the secret::

    https://c360.example.com/webhooks/mailchimp/<the connector's webhook_secret>

(``X-C360-Webhook-Secret`` is accepted as well.) Nothing is signed and
``fired_at`` is not authenticated, so a delivery seen once (in a log, a proxy)
can be replayed for ever; where that matters, relay it through something that
signs (``webhook_signature: c360``, :class:`connectors.sdk.webhooks.C360Signed`).
When the URL is saved,
Mailchimp checks it with a ``GET`` (or an empty ``POST``): both are answered
200 when the secret matches. Events are form-encoded, one per audience::

    type=unsubscribe&fired_at=2026-05-01+10:00:00&data[list_id]=…&data[email]=…
    &data[id]=…&data[merges][EMAIL]=…&data[merges][FNAME]=…

What each event makes stale, per address it names (``data[email]``,
``data[merges][EMAIL]``, ``data[old_email]``/``data[new_email]``): the
memberships by email and by subscriber hash (md5 of the lower-cased address,
computed here: ``data[id]`` is Mailchimp's unique email id, not the hash),
and for ``subscribe``, ``unsubscribe``, ``cleaned`` and ``upemail`` the
member's activity feed, where Mailchimp records those. ``profile`` changes
no activity; ``campaign`` events change nothing cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from connectors.sdk import Domain, normalize_email
from connectors.sdk.webhooks import (
    SECRET_HEADER,
    Invalidation,
    InvalidMutation,
    WebhookMalformed,
    check_shared_secret,
    header,
    person_invalidations,
)

if TYPE_CHECKING:
    from connectors.mailchimp._sandbox_data import MailchimpData, Row

__all__ = ["MailchimpWebhook", "encode", "handler", "sandbox_mutator", "subscriber_hash"]

_MEMBER_EVENTS = frozenset({"subscribe", "unsubscribe", "profile", "upemail", "cleaned"})
_ACTIVITY_EVENTS = frozenset({"subscribe", "unsubscribe", "cleaned", "upemail"})
_ADDRESSES = ("data[email]", "data[merges][EMAIL]", "data[old_email]", "data[new_email]")
_EVENT_OF_STATUS = {"subscribed": "subscribe", "unsubscribed": "unsubscribe", "cleaned": "cleaned"}
_FEED_OF_STATUS = {"subscribed": "signup", "unsubscribed": "unsub"}
_STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending"})


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: md5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpWebhook:
    url_secret = True

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        check_shared_secret(header(headers, SECRET_HEADER), secret)

    def invalidations(self, headers: Mapping[str, str], body: bytes) -> list[Invalidation]:
        if not body.strip():
            return []  # Mailchimp's check of a newly saved URL
        try:
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookMalformed("the body is not form-encoded") from exc
        kind = form.get("type", [""])[-1]
        if not kind:
            raise WebhookMalformed("a Mailchimp webhook names its type")
        if kind not in _MEMBER_EVENTS:
            return []
        emails = [
            e for name in _ADDRESSES for raw in form.get(name, []) if (e := normalize_email(raw))
        ]
        return person_invalidations(
            Domain.MARKETING,
            emails=emails,
            ids=[subscriber_hash(email) for email in emails],
            dependents=kind in _ACTIVITY_EVENTS,
        )

    def event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None: Mailchimp events have no id, and nothing in them is signed."""
        return None


handler = MailchimpWebhook()


def encode(payload: Any, secret: str, now: float) -> tuple[dict[str, str], bytes]:
    """An event as Mailchimp posts it; the secret is in the configured URL already."""
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "MailChimp",
    }, urlencode(payload).encode()


# ------------------------------------------------------------------ sandbox side
def _event(kind: str, row: Row, now: float) -> dict[str, str]:
    member = row.member
    fired = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    fields = {"type": kind, "fired_at": fired, "data[list_id]": row.list_id,
              "data[email]": member["email_address"]}  # fmt: skip
    if kind == "cleaned":
        return {**fields, "data[campaign_id]": "", "data[reason]": "hard"}
    fields.update({
        "data[id]": member["unique_email_id"], "data[email_type]": member["email_type"],
        "data[web_id]": str(member["web_id"]), "data[ip_opt]": "", "data[ip_signup]": "",
        "data[merges][EMAIL]": member["email_address"],
    })  # fmt: skip
    for name, value in member["merge_fields"].items():
        fields[f"data[merges][{name}]"] = str(value)
    if kind == "unsubscribe":
        fields.update({"data[action]": "unsub", "data[reason]": "manual"})
    return fields


def _checked(spec: Mapping[str, Any]) -> tuple[str | None, Mapping[str, str]]:
    changes = spec.get("changes")
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidMutation("'changes' must be a non-empty object")
    if unknown := sorted(set(changes) - {"status", "merge_fields"}):
        raise InvalidMutation(f"cannot change {', '.join(unknown)}; allowed: merge_fields, status")
    status = changes.get("status")
    if status is not None and status not in _STATUSES:
        raise InvalidMutation(f"status must be one of {sorted(_STATUSES)}")
    merges = changes.get("merge_fields", {})
    if not isinstance(merges, Mapping) or not all(isinstance(v, str) for v in merges.values()):
        raise InvalidMutation("merge_fields must map merge tags to strings")
    return status, merges


def sandbox_mutator(data: MailchimpData) -> Callable[[Mapping[str, Any], float], list[Any]]:
    """The sandbox's ``mutate(spec, now)``: ``{"kind": "member", "email": …,
    "list_id": … (default: every audience of that address), "changes":
    {"status": "unsubscribed", "merge_fields": {"PHONE": …}}}``; one event per
    audience, as Mailchimp sends them."""

    def mutate(spec: Mapping[str, Any], now: float) -> list[Any]:
        if spec.get("kind") != "member":
            raise InvalidMutation("a mailchimp mutation changes a 'member'")
        email = normalize_email(spec.get("email") if isinstance(spec.get("email"), str) else None)
        list_id = spec.get("list_id")
        rows = [
            row
            for row in data.rows_by_email.get(email or "", [])
            if list_id is None or row.list_id == list_id
        ]
        if not rows:
            raise InvalidMutation(f"no member {spec.get('email')!r} in that audience")
        status, merges = _checked(spec)
        stamp = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="seconds")
        events: list[Any] = []
        for row in rows:
            member = row.member
            changed = status is not None and status != member["status"]
            if status is not None:
                member["status"] = status
            member["merge_fields"].update(merges)
            member["last_changed"] = stamp
            if changed and (feed_kind := _FEED_OF_STATUS.get(member["status"])):
                row.feed.insert(0, {"activity_type": feed_kind, "created_at_timestamp": stamp})
            kind = _EVENT_OF_STATUS.get(member["status"], "profile") if changed else "profile"
            events.append(_event(kind, row, now))
        return events

    return mutate
