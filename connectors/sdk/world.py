"""The seeded, deterministic "world" every vendor sandbox serves.

One world holds N people consistent across the four systems (same person by
email in CRM, ticketing, billing and marketing) and B2B organizations, some
with parents, with the mess real data has:

* a few percent of people missing from each system;
* email case and whitespace differences between systems;
* a duplicate billing customer here and there (same email, two records);
* phones stored in each system's own format, a phone that conflicts between
  CRM and ticketing now and then, placeholder values (``n/a`` phones, a
  ``test@example.com`` billing email reachable only through the CRM id the
  billing record carries) that must never link two people;
* explicit links: CRM ids on some billing customers (metadata) and ticketing
  users (external_id);
* values shared by different people, which must identify none of them: an
  organization's switchboard number as the CRM phone of several of its
  contacts, a team billing inbox on two people's Stripe customers (each
  linking to its own CRM contact), and recycled numbers -- a person's current
  phone still held by an older Zendesk user or Stripe customer of someone else;
* one loop in the account hierarchy (two accounts that are each other's parent).

Billing history agrees with each subscription's status, as in Stripe: a
``trialing`` subscription has no invoice yet, an ``active`` one's latest invoice
is paid (older ones paid or void), a ``past_due`` one's latest is open and
unpaid, a ``canceled`` one owes nothing open; each invoice falls inside its
subscription's life, one billing period apart, for the subscription's amount.

Every seeded anomaly is listed in the person's ``anomalies`` (the answer key),
as ``kind:…:system``: ``missing``, ``email_case``, ``email_whitespace``,
``duplicate``, ``conflict:phone``, ``placeholder:phone``, ``placeholder:email``,
``shared:phone`` (their CRM phone is a switchboard), ``shared:email`` (their
Stripe email is a team inbox), ``recycled:phone`` (their record in that system
holds someone else's current number) and ``reassigned:phone`` (their current
number is still held by someone else's record in that system). The answer key
also lists every record with the identifying values it holds (``records``).

Everything derives from ``random.Random(seed)`` and a fixed epoch, never the
wall clock, so the same ``(customers, seed)`` always yields the same world.
Shared values and billing histories are laid over the people afterwards, each
from a generator of its own, so adding them left every other seeded value as
it was.
Vendor-neutral here; each ``connectors/<vendor>/sandbox.py`` renders it in its
vendor's JSON shape.
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "EPOCH",
    "PLACEHOLDER_EMAIL",
    "PLACEHOLDER_PHONES",
    "BillingAccount",
    "Membership",
    "SupportTicket",
    "World",
    "WorldInvoice",
    "WorldOrg",
    "WorldPerson",
    "WorldSubscription",
    "mailchimp_hash",
    "phone_formats",
]

# The world's "now": fixed so that output is reproducible.
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)

_FIRST = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Arjun",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Dara",
    "David",
    "Elena",
    "Emeka",
    "Erik",
    "Fatima",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jamal",
    "Jin",
    "Julia",
    "Kai",
    "Kenji",
    "Lara",
    "Leo",
    "Lina",
    "Luca",
    "Maya",
    "Mei",
    "Mohamed",
    "Nadia",
    "Noah",
    "Nora",
    "Omar",
    "Priya",
    "Rafael",
    "Rosa",
    "Sam",
    "Sara",
    "Sofia",
    "Tariq",
    "Tomas",
    "Uma",
    "Vera",
    "Yara",
    "Yusuf",
    "Zoe",
]
_LAST = [
    "Abe",
    "Adeyemi",
    "Alvarez",
    "Bauer",
    "Chen",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jansen",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lopez",
    "Mehta",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Ortiz",
    "Patel",
    "Petrov",
    "Quinn",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Tanaka",
    "Torres",
    "Ueda",
    "Varga",
    "Wagner",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhang",
]
_ORG_WORDS = [
    "Acme",
    "Apex",
    "Atlas",
    "Beacon",
    "Blue",
    "Cedar",
    "Cobalt",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Helix",
    "Indigo",
    "Juniper",
    "Keystone",
    "Lumen",
    "Maple",
    "Meridian",
    "Nimbus",
    "Northwind",
    "Orbit",
    "Pioneer",
    "Quartz",
    "Redwood",
    "Summit",
    "Tidal",
    "Umbra",
    "Vertex",
    "Willow",
    "Zenith",
]
_ORG_SUFFIX = ("Labs", "Systems", "Logistics", "Health", "Foods", "Energy", "Capital", "Works")
_INDUSTRIES = (
    "Technology",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Finance",
    "Energy",
    "Education",
    "Transportation",
)
_TITLES = (
    "CEO",
    "CTO",
    "VP Sales",
    "Head of Support",
    "Engineer",
    "Product Manager",
    "Buyer",
    "Operations Lead",
    "Analyst",
    None,
)
_SUBJECTS = (
    "Cannot log in",
    "Invoice question",
    "Feature request: export",
    "Password reset not arriving",
    "API returns 500",
    "Upgrade plan",
    "Cancel subscription",
    "Data import stuck",
    "Billing address change",
    "SSO setup help",
)
_PLANS = (
    ("Starter", 1900, "month"),
    ("Growth", 4900, "month"),
    ("Scale", 49000, "year"),
    ("Enterprise", 199000, "year"),
)
_LISTS = (("a1b2c3d4e5", "Newsletter"), ("f6e5d4c3b2", "Product updates"))
_CHANNELS = ("Email", "Direct Mail", "Customized Online Advertising")
_B62 = string.digits + string.ascii_letters
_PERIOD = {"month": timedelta(days=30), "year": timedelta(days=365)}
_TRIAL = timedelta(days=14)
#: Values that are not real contact points; identity resolution must not link on them.
PLACEHOLDER_EMAIL = "test@example.com"
PLACEHOLDER_PHONES = ("n/a", "000-000-0000", "+10000000000")


def phone_formats(e164: str) -> tuple[str, ...]:
    """The ways systems store one North American number: E.164 and display forms."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return (
        e164,
        f"({area}) {exchange}-{line}",
        f"+1 {area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
    )


def mailchimp_hash(email: str) -> str:
    """Mailchimp's subscriber hash: md5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


@dataclass
class WorldOrg:
    index: int
    crm_id: str
    name: str
    industry: str
    domain: str
    parent: int | None
    updated_at: datetime


@dataclass
class SupportTicket:
    id: int
    subject: str
    status: str
    priority: str
    created_at: datetime
    updated_at: datetime


@dataclass
class WorldSubscription:
    id: str
    status: str
    plan: str
    price_id: str
    amount: int
    currency: str
    interval: str
    created: datetime
    current_period_end: datetime


@dataclass
class WorldInvoice:
    id: str
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    created: datetime
    subscription: str | None


@dataclass
class BillingAccount:
    id: str
    email: str  # as stored by the billing system: may differ in case/padding
    name: str
    phone: str | None  # E.164, as Stripe recommends
    created: datetime
    crm_id: str | None  # metadata link some billing records carry
    subscriptions: list[WorldSubscription] = field(default_factory=list)
    invoices: list[WorldInvoice] = field(default_factory=list)


@dataclass
class Membership:
    list_id: str
    list_name: str
    status: str
    last_changed: datetime
    consents: dict[str, bool]
    avg_open_rate: float
    avg_click_rate: float
    activity: list[dict[str, Any]]


@dataclass
class WorldPerson:
    index: int
    first_name: str
    last_name: str
    email: str  # canonical: trimmed, lower-case
    phone: str
    title: str | None
    org: int | None
    # Per system: None means "not in that system".
    crm_id: str | None = None
    crm_email: str | None = None
    crm_phone: str | None = None
    crm_phone_e164: str | None = None  # what crm_phone is, None for a placeholder
    crm_updated: datetime | None = None
    zendesk_id: int | None = None
    zendesk_email: str | None = None
    zendesk_phone: str | None = None
    zendesk_phone_e164: str | None = None
    zendesk_external_id: str | None = None  # the CRM id, on some users
    zendesk_updated: datetime | None = None
    tickets: list[SupportTicket] = field(default_factory=list)
    billing: list[BillingAccount] = field(default_factory=list)
    mailchimp_email: str | None = None
    mailchimp_phone: str | None = None
    memberships: list[Membership] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def in_all(self) -> bool:
        return bool(self.crm_id and self.zendesk_id and self.billing and self.memberships)


class World:
    """N people, their organizations, and every system's view of them."""

    def __init__(self, customers: int = 1000, seed: int = 42) -> None:
        if customers < 1:
            raise ValueError("a world needs at least one customer")
        self.customers = customers
        self.seed = seed
        self._rng = random.Random(seed)
        self.orgs: list[WorldOrg] = self._make_orgs(max(4, customers // 8))
        # One loop in the hierarchy: the last two accounts are each other's parent.
        a, b = self.orgs[-2], self.orgs[-1]
        a.parent, b.parent = b.index, a.index
        self.cycle = (a.index, b.index)
        self.people: list[WorldPerson] = [self._make_person(i) for i in range(customers)]
        _share_values(self, random.Random(f"{seed}:shared"))
        for person in self.people:
            for account in person.billing:
                _settle(account, random.Random(f"{seed}:billing:{account.id}"))
        self._index()

    # ------------------------------------------------------------------ build
    def _id(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._rng.choice(_B62) for _ in range(length))

    def _when(self, max_days: int) -> datetime:
        return EPOCH - timedelta(seconds=self._rng.randrange(max_days * 86400))

    def _make_orgs(self, count: int) -> list[WorldOrg]:
        orgs: list[WorldOrg] = []
        for i in range(count):
            word = _ORG_WORDS[i % len(_ORG_WORDS)]
            suffix = _ORG_SUFFIX[(i // len(_ORG_WORDS)) % len(_ORG_SUFFIX)]
            name = f"{word} {suffix}" + (f" {i // 256 + 1}" if i >= 256 else "")
            slug = name.lower().replace(" ", "")
            # About a fifth of organizations roll up into an earlier one.
            parent = self._rng.randrange(i) if i > 3 and self._rng.random() < 0.2 else None
            orgs.append(
                WorldOrg(
                    index=i,
                    crm_id=self._id("001", 15),
                    name=name,
                    industry=self._rng.choice(_INDUSTRIES),
                    domain=f"{slug}.example",
                    parent=parent,
                    updated_at=self._when(400),
                )
            )
        return orgs

    def _mess(self, email: str, person: WorldPerson, system: str, rate: float) -> str:
        """Return the address as ``system`` stores it, sometimes messier."""
        roll = self._rng.random()
        if roll < rate:
            person.anomalies.append(f"email_case:{system}")
            local, _, host = email.partition("@")
            return f"{local.title()}@{host.upper()}"
        if roll < rate * 1.5:
            person.anomalies.append(f"email_whitespace:{system}")
            return f" {email} "
        return email

    def _make_person(self, i: int) -> WorldPerson:
        rng = self._rng
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        org = rng.randrange(len(self.orgs)) if rng.random() < 0.7 else None
        host = (
            self.orgs[org].domain
            if org is not None
            else rng.choice(("mail.example", "inbox.example"))
        )
        email = f"{first}.{last}.{i}@{host}".lower()
        p = WorldPerson(
            index=i,
            first_name=first,
            last_name=last,
            email=email,
            phone=f"+1415555{i % 10000:04d}",
            title=rng.choice(_TITLES),
            org=org,
        )
        missing = {
            s
            for s, rate in (
                ("salesforce", 0.03),
                ("zendesk", 0.05),
                ("stripe", 0.06),
                ("mailchimp", 0.05),
            )
            if rng.random() < rate
        }
        # The first people are complete in every system, so demos and tests
        # always have an obvious "in all four" customer to start from.
        if i < 5:
            missing = set()
        for system in sorted(missing):
            p.anomalies.append(f"missing:{system}")
        formats = phone_formats(p.phone)
        if "salesforce" not in missing:
            p.crm_id = self._id("003", 15)
            p.crm_email = self._mess(email, p, "salesforce", 0.08)
            p.crm_phone = rng.choice(formats[1:3])
            p.crm_phone_e164 = p.phone
            if i >= 5 and rng.random() < 0.02:
                p.anomalies.append("placeholder:phone:salesforce")
                p.crm_phone = rng.choice(PLACEHOLDER_PHONES)
                p.crm_phone_e164 = None
            p.crm_updated = self._when(300)
        if "zendesk" not in missing:
            # Zendesk lower-cases addresses itself, so no case mess there.
            p.zendesk_id = 360_000_000_000 + i * 7 + 3
            p.zendesk_email = email
            p.zendesk_phone = rng.choice((formats[0], formats[3]))
            p.zendesk_phone_e164 = p.phone
            if i >= 5 and p.crm_id and rng.random() < 0.03:
                # A number of its own: it must conflict, never link elsewhere.
                p.anomalies.append("conflict:phone:zendesk")
                p.zendesk_phone = p.zendesk_phone_e164 = f"+1628555{i % 10000:04d}"
            if p.crm_id and rng.random() < 0.5:
                p.zendesk_external_id = p.crm_id
            p.zendesk_updated = self._when(200)
            p.tickets = [self._make_ticket(p.zendesk_id, n) for n in range(rng.randrange(0, 6))]
        if "stripe" not in missing:
            placeholder = i >= 5 and p.crm_id is not None and rng.random() < 0.015
            p.billing.append(self._make_billing(p, email, placeholder=placeholder))
            if not placeholder and rng.random() < 0.02:
                p.anomalies.append("duplicate:stripe")
                p.billing.append(self._make_billing(p, email, duplicate=True))
        if "mailchimp" not in missing:
            p.mailchimp_email = self._mess(email, p, "mailchimp", 0.05)
            p.mailchimp_phone = formats[1] if rng.random() < 0.5 else None
            lists = _LISTS if rng.random() < 0.4 else _LISTS[:1]
            p.memberships = [
                self._make_membership(list_id, list_name) for list_id, list_name in lists
            ]
        return p

    def _make_ticket(self, requester: int, n: int) -> SupportTicket:
        created = self._when(365)
        return SupportTicket(
            id=requester % 1_000_000 * 10 + n,
            subject=self._rng.choice(_SUBJECTS),
            status=self._rng.choice(("new", "open", "pending", "hold", "solved", "closed")),
            priority=self._rng.choice(("low", "normal", "high", "urgent")),
            created_at=created,
            updated_at=min(EPOCH, created + timedelta(hours=self._rng.randrange(1, 500))),
        )

    def _make_billing(
        self, p: WorldPerson, email: str, *, duplicate: bool = False, placeholder: bool = False
    ) -> BillingAccount:
        rng = self._rng
        if placeholder:
            # Reachable only through the CRM id in its metadata.
            p.anomalies.append("placeholder:email:stripe")
            stored = PLACEHOLDER_EMAIL
        else:
            stored = self._mess(email, p, "stripe", 0.06) if not duplicate else email.upper()
        account = BillingAccount(
            id=self._id("cus_", 14),
            email=stored,
            name=p.name,
            phone=p.phone if rng.random() < 0.6 else None,
            created=self._when(900),
            crm_id=p.crm_id if p.crm_id and (placeholder or rng.random() < 0.5) else None,
        )
        if not duplicate:
            for _ in range(rng.choice((0, 1, 1, 1, 2))):
                plan, amount, interval = rng.choice(_PLANS)
                created = self._when(700)
                period = timedelta(days=30 if interval == "month" else 365)
                account.subscriptions.append(
                    WorldSubscription(
                        id=self._id("sub_", 14),
                        status=rng.choice(
                            ("active", "active", "active", "trialing", "past_due", "canceled")
                        ),
                        plan=plan,
                        price_id=f"price_{plan.lower()}_{interval}",
                        amount=amount,
                        currency="usd",
                        interval=interval,
                        created=created,
                        current_period_end=EPOCH + timedelta(days=rng.randrange(1, period.days)),
                    )
                )
        # Drafts: _settle makes them agree with the subscriptions afterwards,
        # from a generator of its own, so these draws stay as they always were.
        for n in range(rng.randrange(0, 7)):
            sub = (
                account.subscriptions[n % len(account.subscriptions)]
                if account.subscriptions
                else None
            )
            due = sub.amount if sub else rng.choice((500, 2500, 9900))
            status = rng.choice(("paid", "paid", "paid", "open", "void", "uncollectible"))
            account.invoices.append(
                WorldInvoice(
                    id=self._id("in_", 14),
                    status=status,
                    amount_due=due,
                    amount_paid=due if status == "paid" else 0,
                    currency="usd",
                    created=self._when(700),
                    subscription=sub.id if sub else None,
                )
            )
        account.invoices.sort(key=lambda inv: inv.created, reverse=True)
        return account

    def _make_membership(self, list_id: str, list_name: str) -> Membership:
        rng = self._rng
        status = rng.choice(
            ("subscribed", "subscribed", "subscribed", "unsubscribed", "cleaned", "pending")
        )
        changed = self._when(500)
        activity = [
            {
                "action": rng.choice(("open", "click", "bounce", "sent")),
                "timestamp": (changed + timedelta(hours=rng.randrange(1, 2000))).isoformat(),
                "campaign_id": self._id("", 10).lower(),
                "title": rng.choice(
                    ("Spring launch", "Monthly digest", "Webinar invite", "Renewal reminder")
                ),
            }
            for _ in range(rng.randrange(0, 6))
        ]
        return Membership(
            list_id=list_id,
            list_name=list_name,
            status=status,
            last_changed=changed,
            consents={c: rng.random() < 0.6 for c in _CHANNELS},
            avg_open_rate=round(rng.random(), 2),
            avg_click_rate=round(rng.random() * 0.3, 2),
            activity=activity,
        )

    # ----------------------------------------------------------------- index
    def _index(self) -> None:
        self.by_crm_id = {p.crm_id: p for p in self.people if p.crm_id}
        self.by_zendesk_id = {p.zendesk_id: p for p in self.people if p.zendesk_id}
        self.by_org_crm_id = {o.crm_id: o for o in self.orgs}
        self.billing_by_id: dict[str, tuple[WorldPerson, BillingAccount]] = {
            b.id: (p, b) for p in self.people for b in p.billing
        }
        self.by_mailchimp_hash = {mailchimp_hash(p.email): p for p in self.people if p.memberships}
        self.by_email = {p.email: p for p in self.people}
        self.tickets_by_id = {t.id: (p, t) for p in self.people for t in p.tickets}

    # ------------------------------------------------------------- answer key
    def answer_key(self, person: WorldPerson) -> dict[str, Any]:
        systems: dict[str, list[str]] = {
            "salesforce": [person.crm_id] if person.crm_id else [],
            "zendesk": [str(person.zendesk_id)] if person.zendesk_id else [],
            "stripe": [b.id for b in person.billing],
            "mailchimp": [mailchimp_hash(person.email)] if person.memberships else [],
        }
        org = self.orgs[person.org] if person.org is not None else None
        return {
            "email": person.email,
            "name": person.name,
            "phone": person.phone,
            "systems": systems,
            "records": _records(person),
            "organization": {
                "salesforce": org.crm_id,
                "name": org.name,
                "in_cycle": org.index in self.cycle,
            }
            if org
            else None,
            "in_all": person.in_all,
            "anomalies": list(person.anomalies),
            "counts": {
                "tickets": len(person.tickets),
                # Current subscriptions, as billing systems embed them (Stripe
                # leaves canceled ones out of customer.subscriptions).
                "subscriptions": sum(
                    1 for b in person.billing for s in b.subscriptions if s.status != "canceled"
                ),
                "invoices": sum(len(b.invoices) for b in person.billing),
                "memberships": len(person.memberships),
            },
        }


def _identifying(email: str | None) -> str | None:
    if email is None or email == PLACEHOLDER_EMAIL:
        return None
    return email.strip().lower()


def _records(p: WorldPerson) -> list[dict[str, str | None]]:
    """Each record of the person and the values a lookup finds it by: the
    address as stored (trimmed, lower-cased) and the phone in E.164, ``None``
    for a placeholder. Mailchimp cannot be searched by phone, so its
    members hold none here."""
    held: list[tuple[str, str, str | None, str | None]] = []
    if p.crm_id:
        held.append(("salesforce", p.crm_id, p.crm_email, p.crm_phone_e164))
    if p.zendesk_id:
        held.append(("zendesk", str(p.zendesk_id), p.zendesk_email, p.zendesk_phone_e164))
    held += [("stripe", b.id, b.email, b.phone) for b in p.billing]
    if p.memberships:
        held.append(("mailchimp", mailchimp_hash(p.email), p.mailchimp_email, None))
    return [
        {"system": system, "id": rid, "email": _identifying(email), "phone": phone}
        for system, rid, email, phone in held
    ]


# ------------------------------------------------------------ shared values
def _share_values(world: World, rng: random.Random) -> None:
    """Lay values shared by different people over the world: switchboards,
    team inboxes, recycled numbers. Each touches people whose data was clean
    (only ``missing:…`` anomalies, not among the first five), once each, so
    every anomaly in the answer key still means one thing. Several groups of
    each kind: one per 50 people, at least one."""
    groups = max(1, world.customers // 50)
    free = [
        p
        for p in world.people
        if p.index >= 5 and all(a.startswith("missing:") for a in p.anomalies)
    ]
    used: set[int] = set()
    _switchboards(rng, groups, free, used)
    _team_inboxes(world, rng, groups, free, used)
    for system in ("zendesk", "stripe"):
        _recycled_numbers(rng, groups, free, used, system)


def _by_org(people: list[WorldPerson], used: set[int]) -> dict[int, list[WorldPerson]]:
    out: dict[int, list[WorldPerson]] = {}
    for p in people:
        if p.org is not None and p.index not in used:
            out.setdefault(p.org, []).append(p)
    return out


def _switchboards(rng: random.Random, groups: int, free: list[WorldPerson], used: set[int]) -> None:
    """An organization's main number as the CRM phone of two to four contacts."""
    staff = _by_org([p for p in free if p.crm_id], used)
    orgs = sorted(org for org, members in staff.items() if len(members) >= 2)
    for org in rng.sample(orgs, min(groups, len(orgs))):
        number = f"+1646555{org % 10000:04d}"
        for p in rng.sample(staff[org], min(len(staff[org]), rng.choice((2, 3, 3, 4)))):
            p.crm_phone = rng.choice(phone_formats(number)[1:3])
            p.crm_phone_e164 = number
            p.anomalies.append("shared:phone:salesforce")
            used.add(p.index)


def _team_inboxes(
    world: World, rng: random.Random, groups: int, free: list[WorldPerson], used: set[int]
) -> None:
    """One billing inbox of an organization on two colleagues' Stripe
    customers, each customer linking to its own CRM contact."""
    payers = _by_org([p for p in free if p.crm_id and p.billing], used)
    orgs = sorted(org for org, members in payers.items() if len(members) >= 2)
    for org in rng.sample(orgs, min(groups, len(orgs))):
        inbox = f"billing@{world.orgs[org].domain}"
        for p in rng.sample(payers[org], 2):
            account = p.billing[0]
            account.email = inbox
            account.crm_id = p.crm_id
            p.anomalies.append("shared:email:stripe")
            used.add(p.index)


def _recycled_numbers(
    rng: random.Random, groups: int, free: list[WorldPerson], used: set[int], system: str
) -> None:
    """A person's current number (their CRM phone) still held by an older
    record of someone else in ``system``; the holder's CRM has their own."""

    def holds(p: WorldPerson) -> bool:
        return p.zendesk_id is not None if system == "zendesk" else bool(p.billing)

    for _ in range(groups):
        owners = [p for p in free if p.index not in used and p.crm_phone_e164 == p.phone]
        holders = [p for p in free if p.index not in used and p.crm_id and holds(p)]
        if len(owners) < 2 or len(holders) < 2:
            return
        owner = rng.choice(owners)
        holder = rng.choice([p for p in holders if p is not owner])
        if system == "zendesk":
            holder.zendesk_phone = rng.choice((owner.phone, phone_formats(owner.phone)[3]))
            holder.zendesk_phone_e164 = owner.phone
        else:
            holder.billing[0].phone = owner.phone
        holder.anomalies.append(f"recycled:phone:{system}")
        owner.anomalies.append(f"reassigned:phone:{system}")
        used.update((owner.index, holder.index))


# ----------------------------------------------------------- billing history
def _settle(account: BillingAccount, rng: random.Random) -> None:
    """Make the account's invoices agree with its subscriptions' statuses.

    One-off invoices (no subscription) stay as drafted. A subscription's
    invoices keep their drafted ids, count and (where the status allows)
    void or unpaid outcomes; the status decides the rest: none while
    ``trialing``, the latest ``paid`` when ``active``, ``open`` when
    ``past_due``, never ``open`` once ``canceled``."""
    drafted: dict[str | None, list[WorldInvoice]] = {}
    for invoice in account.invoices:
        drafted.setdefault(invoice.subscription, []).append(invoice)
    invoices = list(drafted.get(None, []))
    for sub in account.subscriptions:
        invoices += _history(sub, drafted.get(sub.id, []), rng)
    invoices.sort(key=lambda inv: inv.created, reverse=True)
    account.invoices = invoices


def _history(
    sub: WorldSubscription, drafts: list[WorldInvoice], rng: random.Random
) -> list[WorldInvoice]:
    """The subscription's invoices, newest first: one per billing period back
    from the current one, the subscription started no later than the oldest."""
    if sub.status == "trialing":
        # Nothing is invoiced before the trial ends.
        sub.current_period_end = EPOCH + timedelta(days=rng.randrange(1, _TRIAL.days))
        sub.created = sub.current_period_end - _TRIAL
        return []
    period = _PERIOD[sub.interval]
    start = sub.current_period_end - period
    count = len(drafts) if sub.status == "canceled" else max(1, len(drafts))
    sub.created = min(sub.created, start - (count - 1) * period)
    outcomes = [d.status for d in drafts] + ["paid"] * (count - len(drafts))
    history = []
    for n in range(count):
        status = _status(sub.status, outcomes[n], latest=n == 0)
        history.append(
            WorldInvoice(
                id=drafts[n].id if n < len(drafts) else "in_" + _token(rng, 14),
                status=status,
                amount_due=sub.amount,
                amount_paid=sub.amount if status == "paid" else 0,
                currency=sub.currency,
                # Finalized within a day of its period's start (at least a day ago).
                created=start - n * period + timedelta(minutes=rng.randrange(1, 1440)),
                subscription=sub.id,
            )
        )
    return history


def _status(subscription: str, drafted: str, *, latest: bool) -> str:
    """An invoice's status given its subscription's; ``drafted`` picks among
    what that allows."""
    if latest and subscription == "past_due":
        return "open"  # the payment that failed, retried until paid or given up
    if latest and subscription == "active":
        return "paid"
    if subscription == "canceled" and drafted in ("open", "uncollectible"):
        return "uncollectible" if latest else "paid"  # canceled after payments failed
    return "void" if drafted == "void" else "paid"


def _token(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_B62) for _ in range(length))
