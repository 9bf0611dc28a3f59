"""Salesforce REST JSON -> canonical records.

Pure functions. Records are sObject JSON (``{"attributes": {...}, "Id": …}``);
fields the query did not ask for, or that are null, map to ``None``. A body of
the wrong shape -- a list where a query result object belongs, a record that
is not an object or has no ``Id`` -- raises :class:`UpstreamProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from connectors.sdk import Opportunity, Organization, Person, SourceRef, UpstreamProtocolError

__all__ = [
    "SOURCE",
    "collection_records",
    "domain_from_website",
    "opportunity_from_record",
    "organization_from_account",
    "parse_date",
    "parse_datetime",
    "person_from_contact",
    "query_records",
    "record_url",
    "search_records",
]

SOURCE = "salesforce"
Record = Mapping[str, Any]


def _protocol(message: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(message, source=SOURCE)


def _record(value: Any, what: str) -> Record:
    # A dict is a Mapping; checking its type first skips the slow ABC check.
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _protocol(f"salesforce sent a {type(value).__name__} where a {what} record belongs")
    if not isinstance(value.get("Id"), str) or not value["Id"]:
        raise _protocol(f"salesforce sent a {what} record without an Id")
    return value


def _text(record: Record, field: str) -> str | None:
    value = record.get(field)
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, bool | int | float):
        return str(value)
    raise _protocol(f"salesforce sent a {type(value).__name__} for {field}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_datetime(value: Any) -> datetime | None:
    """Salesforce's ``2026-05-01T10:00:00.000+0000`` (or ISO 8601) as aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    # fromisoformat reads Salesforce's form in well under a microsecond, strptime
    # takes ~10: it goes first. Wherever both read a string they agree, so
    # strptime is only asked about what fromisoformat refuses (single-digit
    # fields, non-ASCII digits), as the last resort it used to be the first.
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
            try:
                return datetime.strptime(value, fmt).astimezone(UTC)
            except ValueError:
                continue
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def domain_from_website(value: str | None) -> str | None:
    """``https://www.acme.example/about`` -> ``acme.example``."""
    if not value or not value.strip():
        return None
    raw = value.strip()
    try:
        host = urlsplit(raw if "://" in raw else f"//{raw}").hostname
    except ValueError:
        return None
    if not host:
        return None
    return host.removeprefix("www.") or None


def record_url(instance_url: str, sobject: str, record_id: str) -> str:
    """The Lightning deep link to a record."""
    return f"{instance_url.rstrip('/')}/lightning/r/{sobject}/{record_id}/view"


def _source(record: Record, sobject: str, instance_url: str) -> SourceRef:
    record_id = str(record["Id"])
    return SourceRef(
        system=SOURCE,
        record_id=record_id,
        updated_at=parse_datetime(record.get("LastModifiedDate")),
        url=record_url(instance_url, sobject, record_id),
    )


def person_from_contact(record: Any, instance_url: str) -> Person:
    contact = _record(record, "Contact")
    first, last = _text(contact, "FirstName"), _text(contact, "LastName")
    name = _text(contact, "Name") or " ".join(p for p in (first, last) if p) or None
    email = _text(contact, "Email")
    return Person(
        source=_source(contact, "Contact", instance_url),
        name=name,
        first_name=first,
        last_name=last,
        email=(email.strip() or None) if email else None,
        phone=_text(contact, "Phone"),
        title=_text(contact, "Title"),
        organization_id=_text(contact, "AccountId"),
    )


def organization_from_account(record: Any, instance_url: str) -> Organization:
    account = _record(record, "Account")
    return Organization(
        source=_source(account, "Account", instance_url),
        name=_text(account, "Name"),
        industry=_text(account, "Industry"),
        domain=domain_from_website(_text(account, "Website")),
        parent_id=_text(account, "ParentId"),
    )


def opportunity_from_record(record: Any, instance_url: str) -> Opportunity:
    opp = _record(record, "Opportunity")
    return Opportunity(
        source=_source(opp, "Opportunity", instance_url),
        organization_id=_text(opp, "AccountId"),
        name=_text(opp, "Name"),
        stage=_text(opp, "StageName"),
        amount=_number(opp.get("Amount")),
        close_date=parse_date(opp.get("CloseDate")),
    )


def query_records(body: Any) -> list[Record]:
    """The ``records`` of one query page ``{totalSize, done, nextRecordsUrl?, records}``."""
    if not isinstance(body, Mapping) or not isinstance(body.get("records"), list):
        raise _protocol("salesforce query answer has no records list")
    records: list[Record] = body["records"]
    return records


def collection_records(body: Any, requested: Sequence[str]) -> list[Record | None]:
    """An sObject Collections answer: one record or ``null`` per requested id, in order."""
    if not isinstance(body, list) or len(body) != len(requested):
        raise _protocol("salesforce collection answer does not match the requested ids")
    return [None if item is None else item for item in body]


def search_records(body: Any) -> list[Record]:
    """The records of a SOSL answer: ``{"searchRecords": [...]}`` (a bare list
    before API version 36.0)."""
    records = body.get("searchRecords") if isinstance(body, Mapping) else body
    if not isinstance(records, list):
        raise _protocol("salesforce search answer has no searchRecords list")
    return records
