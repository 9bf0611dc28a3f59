"""The sandbox's Salesforce org: world people and orgs as sObject rows, and SOQL over them.

Contacts come from people with a ``crm_id`` (email exactly as the CRM stored
it), Accounts from the world's organizations, and Opportunities -- which the
world does not model -- are derived per Account from
``random.Random(f"{seed}:opp:{account id}")`` so every run serves the same ones.
Rows are built and indexed once per app; a query touches only the rows an
indexed ``=``/``IN`` condition selects when there is one.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

from connectors.salesforce._soql import (
    Condition,
    Expr,
    Junction,
    Literal,
    Query,
    SoqlError,
    Token,
    is_record_id,
    located,
)
from connectors.sdk.world import EPOCH, World, WorldOrg

__all__ = ["SCHEMA", "Kind", "Org", "Plan", "order_rows", "render", "salesforce_datetime"]

Row = dict[str, Any]


class Kind(Enum):
    """A field's SOQL type; ``value`` is the name Salesforce's errors use."""

    ID = "id"
    STRING = "string"
    EMAIL = "email"  # a string compared on its trimmed value
    NUMBER = "double"
    DATE = "date"
    DATETIME = "datetime"


_I, _S, _E = Kind.ID, Kind.STRING, Kind.EMAIL
SCHEMA: dict[str, dict[str, Kind]] = {
    "Contact": {
        "Id": _I, "FirstName": _S, "LastName": _S, "Name": _S, "Email": _E, "Phone": _S,
        "Title": _S, "AccountId": _I, "LastModifiedDate": Kind.DATETIME,
    },
    "Account": {
        "Id": _I, "Name": _S, "Industry": _S, "Website": _S, "ParentId": _I,
        "LastModifiedDate": Kind.DATETIME,
    },
    "Opportunity": {
        "Id": _I, "Name": _S, "StageName": _S, "Amount": Kind.NUMBER, "CloseDate": Kind.DATE,
        "AccountId": _I, "LastModifiedDate": Kind.DATETIME,
    },
}  # fmt: skip
_OBJECTS = {name.lower(): name for name in SCHEMA}
_LITERAL_KINDS = {
    Kind.ID: "string", Kind.STRING: "string", Kind.EMAIL: "string", Kind.NUMBER: "number",
    Kind.DATE: "date", Kind.DATETIME: "datetime",
}  # fmt: skip
_STAGES = (
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
    "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won",
    "Closed Lost",
)  # fmt: skip
_PRODUCTS = ("Platform licence", "Support renewal", "Expansion", "Onboarding", "Pilot")
_B62 = string.digits + string.ascii_letters


def salesforce_datetime(value: datetime) -> str:
    """Salesforce's JSON datetime: ``2026-05-01T10:00:00.000+0000``."""
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}+0000"


def _key(kind: Kind, value: Any) -> Any:
    """What comparisons see: ids by their case-sensitive 15-character form,
    strings case-insensitively, emails also trimmed."""
    if kind is Kind.ID:
        return str(value)[:15]
    if kind is Kind.EMAIL:
        return str(value).strip().lower()
    if kind is Kind.STRING:
        return str(value).lower()
    return value


def _opportunities(seed: int, org: WorldOrg) -> Iterator[Row]:
    rng = random.Random(f"{seed}:opp:{org.crm_id}")
    for _ in range(rng.randrange(4)):
        yield {
            "Id": "006" + "".join(rng.choice(_B62) for _ in range(15)),
            "Name": f"{org.name} - {rng.choice(_PRODUCTS)}",
            "StageName": rng.choice(_STAGES),
            "Amount": None if rng.random() < 0.1 else float(rng.randrange(10, 2500) * 100),
            "CloseDate": EPOCH.date() + timedelta(days=rng.randrange(-300, 180)),
            "AccountId": org.crm_id,
            "LastModifiedDate": EPOCH - timedelta(seconds=rng.randrange(200 * 86400)),
        }


class Org:
    """Every sObject row of one world, with indexes on id and email fields."""

    def __init__(self, world: World) -> None:
        orgs = world.orgs
        accounts = [
            {
                "Id": o.crm_id,
                "Name": o.name,
                "Industry": o.industry,
                "Website": f"https://www.{o.domain}",
                "ParentId": orgs[o.parent].crm_id if o.parent is not None else None,
                "LastModifiedDate": o.updated_at,
            }
            for o in orgs
        ]
        contacts = [
            {
                "Id": p.crm_id,
                "FirstName": p.first_name,
                "LastName": p.last_name,
                "Name": p.name,
                "Email": p.crm_email,
                "Phone": p.crm_phone,
                "Title": p.title,
                "AccountId": orgs[p.org].crm_id if p.org is not None else None,
                "LastModifiedDate": p.crm_updated,
            }
            for p in world.people
            if p.crm_id
        ]
        opportunities = [row for o in orgs for row in _opportunities(world.seed, o)]
        self.rows: dict[str, list[Row]] = {
            "Account": accounts,
            "Contact": contacts,
            "Opportunity": opportunities,
        }
        self.indexes: dict[tuple[str, str], dict[Any, list[int]]] = {}
        for sobject, fields in SCHEMA.items():
            for field, kind in fields.items():
                if kind in (Kind.ID, Kind.EMAIL):
                    index: dict[Any, list[int]] = {}
                    for pos, row in enumerate(self.rows[sobject]):
                        if row[field] is not None:
                            index.setdefault(_key(kind, row[field]), []).append(pos)
                    self.indexes[(sobject, field)] = index

    @staticmethod
    def sobject(name: str) -> str | None:
        """The canonical object name; Salesforce treats names case-insensitively."""
        return _OBJECTS.get(name.lower())

    @staticmethod
    def field(sobject: str, name: str) -> str | None:
        return next((f for f in SCHEMA[sobject] if f.lower() == name.lower()), None)

    def get(self, sobject: str, record_id: str) -> Row | None:
        if not is_record_id(record_id):
            return None
        hits = self.indexes[(sobject, "Id")].get(record_id[:15], [])
        return self.rows[sobject][hits[0]] if hits else None

    def run(self, plan: Plan) -> list[Row]:
        rows = self.rows[plan.sobject]
        positions = plan.indexed_positions(self)
        candidates = rows if positions is None else [rows[i] for i in sorted(positions)]
        found = order_rows(
            [row for row in candidates if plan.matches(row)], plan.sobject, plan.order_by
        )
        return found if plan.limit is None else found[: plan.limit]


def order_rows(rows: list[Row], sobject: str, order_by: Sequence[tuple[str, bool]]) -> list[Row]:
    """``rows`` sorted in place by ``(field, descending)`` keys, as ORDER BY does."""
    for field, desc in reversed(order_by):
        kind = SCHEMA[sobject][field]

        def sort_key(row: Row, field: str = field, kind: Kind = kind) -> tuple[bool, Any]:
            # Nulls sort first ascending and last descending, as in SOQL.
            value = row[field]
            return (value is not None, 0 if value is None else _key(kind, value))

        rows.sort(key=sort_key, reverse=desc)
    return rows


def render(row: Mapping[str, Any], sobject: str, fields: Sequence[str], version: str) -> Row:
    """The JSON record: ``attributes`` plus exactly the requested fields."""
    out: Row = {
        "attributes": {
            "type": sobject,
            "url": f"/services/data/{version}/sobjects/{sobject}/{row['Id']}",
        }
    }
    for field in fields:
        value = row[field]
        if isinstance(value, datetime):
            value = salesforce_datetime(value)
        elif isinstance(value, date):
            value = value.isoformat()
        out[field] = value
    return out


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """A parsed query checked against :data:`SCHEMA`, names made canonical."""

    sobject: str
    fields: tuple[str, ...]
    where: Expr | None
    kinds: Mapping[str, Kind]  # canonical name of every field the WHERE uses
    order_by: tuple[tuple[str, bool], ...]
    limit: int | None

    @classmethod
    def build(cls, query: Query) -> Plan:
        text = query.text
        sobject = Org.sobject(str(query.sobject.value))
        if sobject is None:
            detail = (
                f"sObject type '{query.sobject.value}' is not supported. If you are attempting "
                "to use a custom object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names."
            )
            raise SoqlError("INVALID_TYPE", located(text, query.sobject.pos, detail))

        def resolve(token: Token) -> str:
            name = str(token.value)
            if "." in name:
                detail = (
                    f"Didn't understand relationship '{name.split('.')[0]}' in field path. If "
                    "you are attempting to use a custom relationship, be sure to append the '__r' "
                    "after the custom relationship name. Please reference your WSDL or the "
                    "describe call for the appropriate names."
                )
                raise SoqlError("INVALID_FIELD", located(text, token.pos, detail))
            field = Org.field(str(sobject), name)
            if field is None:
                detail = (
                    f"No such column '{name}' on entity '{sobject}'. If you are attempting to "
                    "use a custom field, be sure to append the '__c' after the custom field name. "
                    "Please reference your WSDL or the describe call for the appropriate names."
                )
                raise SoqlError("INVALID_FIELD", located(text, token.pos, detail))
            return field

        fields = [resolve(t) for t in query.fields]
        for token, field in zip(query.fields, fields, strict=True):
            if fields.count(field) > 1:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    located(text, token.pos, f"duplicate field selected: {field}"),
                )
        kinds: dict[str, Kind] = {}

        def check(expr: Expr) -> Expr:
            if isinstance(expr, Junction):
                return Junction(expr.op, tuple(check(e) for e in expr.items))
            field = resolve(expr.field)
            kind = SCHEMA[sobject][field]
            kinds[field] = kind
            for lit in expr.values:
                _check_literal(text, field, kind, lit)
            return Condition(Token("ident", field, expr.field.pos), expr.op, expr.values)

        where = check(query.where) if query.where is not None else None
        order = tuple((resolve(tok), desc) for tok, desc in query.order_by)
        return cls(sobject, tuple(fields), where, kinds, order, query.limit)

    def matches(self, row: Mapping[str, Any], expr: Expr | None = None) -> bool:
        expr = self.where if expr is None else expr
        if expr is None:
            return True
        if isinstance(expr, Junction):
            if expr.op == "NOT":
                return not self.matches(row, expr.items[0])
            results = (self.matches(row, e) for e in expr.items)
            return all(results) if expr.op == "AND" else any(results)
        field = str(expr.field.value)
        kind, value = self.kinds[field], row[field]
        if expr.op in ("IN", "NOT IN"):
            keys = {_key(kind, lit.value) for lit in expr.values if lit.value is not None}
            hit = value is not None and _key(kind, value) in keys
            return hit if expr.op == "IN" else not hit
        literal = expr.values[0].value
        if literal is None or value is None:
            if expr.op == "=":
                return value is None and literal is None
            # Ordering against null is never true; "!=" is true when exactly one is null.
            return expr.op == "!=" and (value is None) != (literal is None)
        return _COMPARE[expr.op](_key(kind, value), _key(kind, literal))

    def indexed_positions(self, org: Org) -> set[int] | None:
        """Row positions an indexed ``=``/``IN`` conjunct allows, or None (scan)."""
        where = self.where
        conjuncts = where.items if isinstance(where, Junction) and where.op == "AND" else (where,)
        for expr in conjuncts:
            if isinstance(expr, Condition) and expr.op in ("=", "IN"):
                field = str(expr.field.value)
                index = org.indexes.get((self.sobject, field))
                if index is None or any(lit.value is None for lit in expr.values):
                    continue
                kind = self.kinds[field]
                return {p for lit in expr.values for p in index.get(_key(kind, lit.value), ())}
        return None


def _check_literal(text: str, field: str, kind: Kind, lit: Literal) -> None:
    if lit.kind == "null":
        return
    if _LITERAL_KINDS[kind] != lit.kind:
        quoted = "be" if kind in (Kind.ID, Kind.STRING, Kind.EMAIL) else "not be"
        type_name = "string" if kind is Kind.EMAIL else kind.value
        detail = (
            f"value of filter criterion for field '{field}' must be of type {type_name} "
            f"and should {quoted} enclosed in quotes"
        )
        raise SoqlError("INVALID_FIELD", located(text, lit.pos, detail))
    if kind is Kind.ID and not is_record_id(str(lit.value)):
        raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"\ninvalid ID field: {lit.value}")
