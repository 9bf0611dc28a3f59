"""Salesforce record-change webhooks: shared secret, JSON record and its prior values.

Salesforce has no signed webhook of its own that fits a cache (outbound
messages are SOAP, Change Data Capture needs a streaming client), so c360
takes what a record-triggered Flow's HTTP Callout (or a few lines of Apex)
can send after save::

    POST /webhooks/salesforce
    X-C360-Webhook-Secret: <the connector's webhook_secret>
    Content-Type: application/json

    {"sobject": "Contact", "event": "updated",
     "record": {"Id": "003…", "Email": "…", "Phone": "…", "AccountId": "001…"},
     "prior":  {"Id": "003…", "Email": "…", "Phone": "…", "AccountId": "001…"}}

``record`` is ``$Record`` (absent on delete), ``prior`` is ``$Record__Prior``
(absent on create); a JSON array of such objects is accepted too. When the
callout cannot set a header, put the secret in the URL instead:
``POST /webhooks/salesforce/<secret>``. Either way the secret is compared in
constant time; use a long random one and HTTPS.

Replays: nothing in such a delivery is signed or dated, so whoever saw one can
send it again, any time, and the gateway evicts those keys again (harmless to
the data, a cost to the cache). Where that matters, put a relay in front that
signs what it forwards and set ``webhook_signature: c360`` on the connector
(:class:`connectors.sdk.webhooks.C360Signed`).

What each change makes stale, for old and new values, ids in both their
15- and 18-character forms:

* Contact -- the person by id, email and phone, and its account's contact list.
* Account -- the organization by id and its parent's list of children.
* Opportunity -- its account's opportunity list.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors.salesforce._records import SCHEMA, _key, render
from connectors.salesforce._soql import is_record_id
from connectors.sdk import Domain
from connectors.sdk.webhooks import (
    SECRET_HEADER,
    Invalidation,
    InvalidMutation,
    WebhookMalformed,
    check_shared_secret,
    header,
    json_body,
    person_invalidations,
)

if TYPE_CHECKING:
    from connectors.salesforce._records import Org

__all__ = ["SalesforceWebhook", "encode", "handler", "id_forms", "sandbox_mutator"]

JSON = dict[str, Any]
_MAX_CHANGES = 200  # a Flow runs per record; Apex triggers batch up to 200
_CONTACT_FIELDS = frozenset({"FirstName", "LastName", "Email", "Phone", "Title", "AccountId"})
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_API_VERSION = "v61.0"


def id_forms(value: Any) -> list[str]:
    """A record id as sent, in 15 characters, and with its computed 18-character
    suffix (the loaders may have been asked any of them); [] for anything else."""
    if not isinstance(value, str) or not is_record_id(value):
        return []
    short = value[:15]
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(short[start : start + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX[bits]
    return list(dict.fromkeys((value, short, short + suffix)))


def _values(records: tuple[Mapping[str, Any], ...], field: str) -> list[Any]:
    return [record.get(field) for record in records]


def _keys(method: str, ids: list[Any]) -> list[Invalidation]:
    return [Invalidation(method, form) for value in ids for form in id_forms(value)]


def _change(item: Any) -> list[Invalidation]:
    if not isinstance(item, Mapping):
        raise WebhookMalformed("each change is a JSON object")
    sobject = item.get("sobject")
    records = tuple(r for r in (item.get("record"), item.get("prior")) if isinstance(r, Mapping))
    if not isinstance(sobject, str) or not records:
        raise WebhookMalformed("a change names its sobject and carries a record or prior")
    sobject = sobject.lower()
    if sobject == "contact":
        people = person_invalidations(
            Domain.CRM,
            ids=[form for value in _values(records, "Id") for form in id_forms(value)],
            emails=_values(records, "Email"),
            phones=_values(records, "Phone"),
        )
        return people + _keys("contacts_of_organizations", _values(records, "AccountId"))
    if sobject == "account":
        return _keys("organizations_by_id", _values(records, "Id")) + _keys(
            "child_organizations", _values(records, "ParentId")
        )
    if sobject == "opportunity":
        return _keys("opportunities_of_organizations", _values(records, "AccountId"))
    return []


class SalesforceWebhook:
    url_secret = True

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        check_shared_secret(header(headers, SECRET_HEADER), secret)

    def invalidations(self, headers: Mapping[str, str], body: bytes) -> list[Invalidation]:
        payload = json_body(body)
        items = payload if isinstance(payload, list) else [payload]
        if len(items) > _MAX_CHANGES:
            raise WebhookMalformed(f"at most {_MAX_CHANGES} changes per delivery")
        return list(dict.fromkeys(key for item in items for key in _change(item)))

    def event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None: a Flow callout carries no id, and nothing it sends is signed."""
        return None


handler = SalesforceWebhook()


def encode(payload: Any, secret: str, now: float) -> tuple[dict[str, str], bytes]:
    """A change as the Flow callout posts it, the secret in its header."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return {
        "Content-Type": "application/json",
        "User-Agent": "SFDC-Callout/61.0",
        SECRET_HEADER: secret,
    }, body


# ------------------------------------------------------------------ sandbox side
def _contact_changes(org: Org, spec: Mapping[str, Any]) -> Mapping[str, Any]:
    changes = spec.get("changes")
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidMutation("'changes' must be a non-empty object")
    if unknown := sorted(set(changes) - _CONTACT_FIELDS):
        raise InvalidMutation(
            f"cannot change {', '.join(unknown)}; allowed: {sorted(_CONTACT_FIELDS)}"
        )
    if not all(v is None or isinstance(v, str) for v in changes.values()):
        raise InvalidMutation("values must be strings or null")
    account = changes.get("AccountId")
    if account is not None and org.get("Account", account) is None:
        raise InvalidMutation(f"no such Account: {account!r}")
    return changes


def _reindex(org: Org, row: JSON, before: JSON) -> None:
    """Move the row between the index entries of every indexed field that changed."""
    position = next(i for i, r in enumerate(org.rows["Contact"]) if r is row)
    for (sobject, field), index in org.indexes.items():
        if sobject != "Contact" or before[field] == row[field]:
            continue
        kind = SCHEMA[sobject][field]
        if before[field] is not None:
            old = index.get(_key(kind, before[field]), [])
            if position in old:
                old.remove(position)
        if row[field] is not None:
            entries = index.setdefault(_key(kind, row[field]), [])
            entries.append(position)
            entries.sort()


def sandbox_mutator(org: Org) -> Callable[[Mapping[str, Any], float], list[Any]]:
    """The sandbox's ``mutate(spec, now)``: ``{"kind": "contact", "id": "003…",
    "changes": {"Phone": …}}`` (FirstName, LastName, Email, Phone, Title,
    AccountId) changes the Contact row every query reads, and returns the
    change as the Flow callout above posts it."""

    def mutate(spec: Mapping[str, Any], now: float) -> list[Any]:
        if spec.get("kind") != "contact":
            raise InvalidMutation("a salesforce mutation changes a 'contact'")
        record_id = spec.get("id")
        row = org.get("Contact", record_id) if isinstance(record_id, str) else None
        if row is None:
            raise InvalidMutation(f"no such Contact: {record_id!r}")
        changes = _contact_changes(org, spec)
        before = copy.deepcopy(row)
        row.update(changes)
        row["Name"] = " ".join(p for p in (row["FirstName"], row["LastName"]) if p)
        row["LastModifiedDate"] = datetime.fromtimestamp(now, tz=UTC)
        _reindex(org, row, before)
        fields = list(SCHEMA["Contact"])
        return [
            {
                "sobject": "Contact",
                "event": "updated",
                "record": render(row, "Contact", fields, _API_VERSION),
                "prior": render(before, "Contact", fields, _API_VERSION),
            }
        ]

    return mutate
