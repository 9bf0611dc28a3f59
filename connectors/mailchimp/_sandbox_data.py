"""The seeded world rendered once as Mailchimp JSON, with the sandbox's indexes.

Values the world does not hold (web ids, unique email ids, permission ids,
list creation dates) derive from ``random.Random(f"{seed}:…")`` so that one
world always renders the same way.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connectors.sdk.world import EPOCH, Membership, World, WorldPerson, mailchimp_hash

__all__ = ["MailchimpData", "Row"]

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Row:
    """One list membership: its member JSON and what search compares against."""

    list_id: str
    subscriber_hash: str
    email: str  # the stored address, trimmed and lower-cased
    names: str  # lower-cased "first last" for partial search
    member: JSON
    feed: list[JSON] = field(default_factory=list)


def _hex(*parts: object, length: int = 10) -> str:
    return hashlib.md5(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()[
        :length
    ]


class MailchimpData:
    """Lists, members and activity feeds of one world, indexed for lookups."""

    def __init__(self, world: World) -> None:
        self.seed = world.seed
        self.rows: list[Row] = []
        self.rows_by_key: dict[tuple[str, str], Row] = {}
        self.rows_by_email: dict[str, list[Row]] = {}
        self.rows_by_list: dict[str, list[Row]] = {}
        names: dict[str, str] = {}
        for person in world.people:
            for membership in person.memberships:
                names.setdefault(membership.list_id, membership.list_name)
                row = self._row(person, membership)
                self.rows.append(row)
                self.rows_by_key[(row.list_id, row.subscriber_hash)] = row
                self.rows_by_email.setdefault(row.email, []).append(row)
                self.rows_by_list.setdefault(row.list_id, []).append(row)
        self.lists: dict[str, JSON] = {
            list_id: self._list(list_id, name) for list_id, name in names.items()
        }

    # ------------------------------------------------------------------ rows
    def _row(self, person: WorldPerson, membership: Membership) -> Row:
        stored = person.mailchimp_email or person.email
        subscriber = mailchimp_hash(person.email)
        list_id = membership.list_id
        rng = random.Random(f"{self.seed}:mailchimp:{list_id}:{subscriber}")
        last_changed = membership.last_changed.isoformat()
        member: JSON = {
            "id": subscriber,
            "email_address": stored,
            "unique_email_id": _hex(self.seed, "unique", list_id, subscriber),
            "contact_id": _hex(self.seed, "contact", subscriber, length=32),
            "full_name": person.name,
            "web_id": rng.randrange(100_000_000, 999_999_999),
            "email_type": "html",
            "status": membership.status,
            "consents_to_one_to_one_messaging": True,
            "merge_fields": {
                "FNAME": person.first_name,
                "LNAME": person.last_name,
                "PHONE": person.mailchimp_phone or "",
            },
            "stats": {
                "avg_open_rate": membership.avg_open_rate,
                "avg_click_rate": membership.avg_click_rate,
            },
            "ip_signup": "",
            "timestamp_signup": "",
            "ip_opt": "",
            "timestamp_opt": last_changed,
            "member_rating": rng.randrange(1, 6),
            "last_changed": last_changed,
            "language": "",
            "vip": False,
            "email_client": "",
            "source": "API - Generic",
            "tags_count": 0,
            "tags": [],
            "marketing_permissions": [
                {
                    "marketing_permission_id": _hex(list_id, channel),
                    "text": channel,
                    "enabled": enabled,
                }
                for channel, enabled in membership.consents.items()
            ],
            "list_id": list_id,
            "_links": [],
        }
        return Row(
            list_id=list_id,
            subscriber_hash=subscriber,
            email=stored.strip().lower(),
            names=person.name.lower(),
            member=member,
            feed=self._feed(membership, rng),
        )

    @staticmethod
    def _feed(membership: Membership, rng: random.Random) -> list[JSON]:
        """The world's activity as activity-feed items, newest first."""
        feed: list[JSON] = []
        for item in sorted(membership.activity, key=lambda a: str(a["timestamp"]), reverse=True):
            kind = str(item["action"])
            entry: JSON = {
                "activity_type": kind,
                "created_at_timestamp": item["timestamp"],
                "campaign_id": item["campaign_id"],
                "campaign_title": item["title"],
            }
            if kind == "click":
                entry["link_clicked"] = f"https://example.com/c/{item['campaign_id']}"
            elif kind == "bounce":
                entry["bounce_type"] = rng.choice(("hard", "soft"))
                entry["bounce_has_open_activity"] = False
            feed.append(entry)
        return feed

    # ----------------------------------------------------------------- lists
    def _list(self, list_id: str, name: str) -> JSON:
        rows = self.rows_by_list.get(list_id, [])
        rng = random.Random(f"{self.seed}:mailchimp:list:{list_id}")
        statuses = [r.member["status"] for r in rows]
        return {
            "id": list_id,
            "web_id": rng.randrange(100_000, 999_999),
            "name": name,
            "permission_reminder": "You signed up on our website.",
            "date_created": (EPOCH - timedelta(days=rng.randrange(400, 2000))).isoformat(),
            "list_rating": 3,
            "email_type_option": False,
            "visibility": "prv",
            "double_optin": False,
            "marketing_permissions": True,
            "stats": {
                "member_count": statuses.count("subscribed"),
                "unsubscribe_count": statuses.count("unsubscribed"),
                "cleaned_count": statuses.count("cleaned"),
                "total_contacts": len(rows),
                "merge_field_count": 3,
            },
            "_links": [],
        }

    # ---------------------------------------------------------------- lookup
    def find(self, list_id: str, subscriber: str) -> Row | None:
        """A membership by subscriber hash or by email address (any case)."""
        key = subscriber.strip().lower()
        if "@" in key:
            return next((r for r in self.rows_by_email.get(key, []) if r.list_id == list_id), None)
        return self.rows_by_key.get((list_id, key))

    def search(self, query: str, list_id: str | None) -> tuple[list[Row], list[Row]]:
        """Exact matches on the whole address, and partial name/address matches."""
        needle = query.strip().lower()
        exact = [
            r for r in self.rows_by_email.get(needle, []) if list_id is None or r.list_id == list_id
        ]
        partial = [
            r
            for r in (self.rows_by_list.get(list_id, []) if list_id else self.rows)
            if needle in r.email or needle in r.names
        ]
        return exact, partial
