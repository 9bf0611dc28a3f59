"""Zendesk webhooks: signed events in, stale cache keys out; the sandbox's events too.

Zendesk signs every webhook request with the webhook's signing secret:
``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(secret, timestamp + body))
with the timestamp in ``X-Zendesk-Webhook-Signature-Timestamp`` (see
:func:`connectors.sdk.webhooks.verify_zendesk`; deliveries more than 300 s
from our clock are refused as replays). Inside that window the gateway handles
each event once, by the body's ``id`` (event webhooks have one) or else by a
digest of the signed timestamp and body (:meth:`ZendeskWebhook.event_id`).

The body is Zendesk's event-webhook shape (``{type: "zen:event-type:…",
subject, detail, event: {current, previous}}``). Webhooks connected to a
trigger send the JSON body the trigger defines; define it in that same shape::

    {"type": "zen:event-type:ticket.updated",
     "detail": {"id": "{{ticket.id}}", "requester_id": "{{ticket.requester.id}}"}}

What each event makes stale:

* ``ticket.*`` -- the ticket list of ``detail.requester_id`` (and of the
  previous requester on ``ticket.requester_changed``).
* ``user.*`` -- the requester by id and by email, the ``people_linked_to`` key
  of its ``external_id`` (the CRM id), and the old and new values an
  ``identity_*`` (email, phone) or ``external_id_changed`` event carries; a
  deleted user's ticket list as well.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.sdk import Domain
from connectors.sdk.webhooks import (
    Invalidation,
    InvalidMutation,
    WebhookMalformed,
    header,
    json_body,
    person_invalidations,
    sign_zendesk,
    signed_event_id,
    verify_zendesk,
)

if TYPE_CHECKING:
    from connectors.zendesk.sandbox import _Index

__all__ = ["ZendeskWebhook", "encode", "handler", "sandbox_mutator"]

JSON = dict[str, Any]
_PREFIX = "zen:event-type:"
_LINKED_SYSTEM = "salesforce"  # what external_id names (see mapping.person_from_user)
_TICKET_FIELDS = {"status", "subject", "priority"}
_USER_FIELDS = {"name", "email", "phone", "external_id"}
_STATUSES = {"new", "open", "pending", "hold", "solved", "closed"}
_PRIORITIES = {None, "low", "normal", "high", "urgent"}
_IDENTITY = {"email": "email", "phone": "phone_number"}


def _id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value.isdigit() else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class ZendeskWebhook:
    url_secret = False

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        verify_zendesk(
            header(headers, "X-Zendesk-Webhook-Signature"),
            header(headers, "X-Zendesk-Webhook-Signature-Timestamp"),
            body,
            secret,
            now,
        )

    def invalidations(self, headers: Mapping[str, str], body: bytes) -> list[Invalidation]:
        event = json_body(body)
        kind = event.get("type") if isinstance(event, Mapping) else None
        detail = event.get("detail") if isinstance(event, Mapping) else None
        if not isinstance(kind, str) or not isinstance(detail, Mapping):
            raise WebhookMalformed("a Zendesk event has a type and a detail object")
        assert isinstance(event, Mapping)
        change = event.get("event")
        values = (
            (change.get("current"), change.get("previous")) if isinstance(change, Mapping) else ()
        )
        kind = kind.removeprefix(_PREFIX)
        if kind.startswith("ticket."):
            requesters = [_id(detail.get("requester_id"))]
            if kind == "ticket.requester_changed":
                requesters += [_id(v.get("id") if isinstance(v, Mapping) else v) for v in values]
            keys = dict.fromkeys(r for r in requesters if r)
            return [Invalidation("tickets_of_requesters", key) for key in keys]
        if not kind.startswith("user."):
            return []
        emails, phones = [_text(detail.get("email"))], []
        links = [(_LINKED_SYSTEM, _text(detail.get("external_id")))]
        for value in values:
            if isinstance(value, Mapping) and value.get("type") == "email":
                emails.append(_text(value.get("value")))
            elif isinstance(value, Mapping) and value.get("type") == "phone_number":
                phones.append(_text(value.get("value")))
            elif kind == "user.external_id_changed":
                links.append((_LINKED_SYSTEM, _text(value)))
        return person_invalidations(
            Domain.TICKETING,
            ids=[_id(detail.get("id"))],
            emails=emails,
            phones=phones,
            links=links,
            dependents=kind == "user.deleted",
        )

    def event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The event's ``id`` from the signed body; for a trigger's body without one,
        a digest of what the signature covers. Never ``X-Zendesk-Webhook-Invocation-Id``:
        no signature covers it, so a replay could change it."""
        event = json_body(body)
        found = event.get("id") if isinstance(event, Mapping) else None
        found = _id(found) or _text(found)
        if found:
            return found
        stamp = header(headers, "X-Zendesk-Webhook-Signature-Timestamp")
        return signed_event_id(stamp, body) if stamp else None


handler = ZendeskWebhook()


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(payload: Any, secret: str, now: float) -> tuple[dict[str, str], bytes]:
    """An event as Zendesk delivers it, signed at ``now``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = _iso(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "Zendesk Webhook",
        "X-Zendesk-Webhook-Id": "01SANDBOXWEBHOOK0000000000",
        "X-Zendesk-Webhook-Signature": sign_zendesk(secret, body, timestamp),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
    }, body


# ------------------------------------------------------------------ sandbox side
def _event(kind: str, subject: str, detail: JSON, change: Any, now: float) -> JSON:
    return {
        "type": _PREFIX + kind,
        "account_id": 1,
        "id": str(uuid.uuid4()),
        "time": _iso(now),
        "zendesk_event_version": "2022-11-06",
        "subject": subject,
        "detail": detail,
        "event": change,
    }


def _ticket_detail(ticket: JSON) -> JSON:
    ids = ("id", "requester_id", "submitter_id", "assignee_id", "organization_id")
    detail = {k: ticket.get(k) for k in ("created_at", "updated_at", "description", "priority",
                                         "status", "subject", "tags", "type")}  # fmt: skip
    detail.update({k: None if ticket.get(k) is None else str(ticket[k]) for k in ids})
    return {**detail, "is_public": True, "via": {"channel": "web_service"}}


def _user_detail(user: JSON) -> JSON:
    detail = {k: user.get(k) for k in ("created_at", "email", "role", "updated_at")}
    detail["external_id"] = user.get("external_id") or ""
    return {**detail, "id": str(user["id"]), "organization_id": "0", "default_group_id": "0"}


def _checked(changes: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidMutation("'changes' (or 'create') must be a non-empty object")
    if unknown := sorted(set(changes) - allowed):
        raise InvalidMutation(f"cannot set {', '.join(unknown)}; allowed: {sorted(allowed)}")
    if changes.get("status", "open") not in _STATUSES:
        raise InvalidMutation(f"status must be one of {sorted(_STATUSES)}")
    if changes.get("priority") not in _PRIORITIES:
        raise InvalidMutation("priority must be low, normal, high, urgent or null")
    if not all(v is None or isinstance(v, str) for v in changes.values()):
        raise InvalidMutation("values must be strings or null")
    return changes


def _record_id(value: Any, records: Mapping[int, JSON], what: str) -> int:
    rid = int(value) if _id(value) else None
    if rid is None or rid not in records:
        raise InvalidMutation(f"no such {what}: {value!r}")
    return rid


def sandbox_mutator(index: _Index) -> Callable[[Mapping[str, Any], float], list[Any]]:
    """The sandbox's ``mutate(spec, now)`` over the app's indexes; one event per change.

    ``{"kind": "ticket", "requester": <user id>, "create": {"subject": …}}``,
    ``{"kind": "ticket", "id": <ticket id>, "changes": {"status": "solved"}}`` or
    ``{"kind": "user", "id": <user id>, "changes": {"phone": …}}`` (name, email,
    phone, external_id).
    """

    def create_ticket(spec: Mapping[str, Any], now: float) -> list[Any]:
        uid = _record_id(spec.get("requester"), index.users, "user")
        fields = _checked(spec["create"], _TICKET_FIELDS | {"description"})
        tid = max(index.tickets, default=0) + 1
        subject = fields.get("subject") or "Sandbox ticket"
        ticket: JSON = {
            "id": tid, "subject": subject, "description": fields.get("description") or subject,
            "status": fields.get("status") or "new", "priority": fields.get("priority"),
            "type": None, "requester_id": uid, "submitter_id": uid, "assignee_id": None,
            "organization_id": None, "tags": [], "created_at": _iso(now), "updated_at": _iso(now),
        }  # fmt: skip
        index.tickets[tid] = ticket
        index.by_requester.setdefault(uid, []).append(tid)  # the largest id: stays sorted
        index.search.add_ticket(ticket)
        change = {"current": {"status": ticket["status"]}}
        return [_event("ticket.created", f"zen:ticket:{tid}", _ticket_detail(ticket), change, now)]

    def change_ticket(spec: Mapping[str, Any], now: float) -> list[Any]:
        tid = _record_id(spec.get("id"), index.tickets, "ticket")
        changes = _checked(spec.get("changes"), _TICKET_FIELDS)
        ticket = index.tickets[tid]
        previous = {name: ticket[name] for name in changes}
        ticket.update(changes, updated_at=_iso(now))
        index.search.add_ticket(ticket)  # re-indexes status and words
        detail = _ticket_detail(ticket)
        return [
            _event(f"ticket.{name}_changed", f"zen:ticket:{tid}", detail,
                   {"current": ticket[name], "previous": previous[name]}, now)
            for name in changes
        ]  # fmt: skip

    def change_user(spec: Mapping[str, Any], now: float) -> list[Any]:
        uid = _record_id(spec.get("id"), index.users, "user")
        changes = _checked(spec.get("changes"), _USER_FIELDS)
        user = index.users[uid]
        previous = {name: user.get(name) for name in changes}
        if "external_id" in changes:
            old = index.by_external_id.get(previous["external_id"] or "", [])
            if uid in old:
                old.remove(uid)
            if changes["external_id"]:
                index.by_external_id.setdefault(changes["external_id"], []).append(uid)
        user.update(changes, updated_at=_iso(now))
        # Adds the new address; the old one still finds the user, but the
        # connector only answers an email with users whose address equals it.
        index.search.add_user(user)
        events = []
        for name in changes:
            if name in _IDENTITY:
                kind = "user.identity_changed"
                change: Any = {
                    when: {"id": f"{uid}{len(name)}", "type": _IDENTITY[name],
                           "value": value, "primary": True}
                    for when, value in (("current", user[name]), ("previous", previous[name]))
                }  # fmt: skip
            else:
                kind = f"user.{name}_changed"
                change = {"current": user[name], "previous": previous[name]}
            events.append(_event(kind, f"zen:user:{uid}", _user_detail(user), change, now))
        return events

    def mutate(spec: Mapping[str, Any], now: float) -> list[Any]:
        kind = spec.get("kind")
        if kind == "ticket" and "create" in spec:
            return create_ticket(spec, now)
        if kind == "ticket":
            return change_ticket(spec, now)
        if kind == "user":
            return change_user(spec, now)
        raise InvalidMutation("a zendesk mutation changes a 'ticket' or a 'user'")

    return mutate
