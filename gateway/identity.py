"""Cross-system identity: who a customer is in every connected system.

The anchor -- the email or the system's record the caller asked for --
defines the person. Resolution is a bounded closure over match keys
(``identity.match_keys``, default ``link, email, phone``; ``max_rounds``
rounds after the anchor)::

    anchor    records found by the anchor email, or the ref record: accepted
              (an anchor email whose records are several people's is
              AmbiguousCustomer, never one merged record)
    link      records an accepted record's explicit link names (a CRM id on a
              Stripe customer's metadata or a Zendesk user's external_id), and
              records that link to an accepted one: accepted
    email     an email of a ref or link record: its records are accepted
              unless they carry a conflicting link or, in a system where the
              person has records, an unrelated name
    phone     a phone of an accepted record (not one a phone found): its
              records are accepted only without a conflicting strong
              identifier -- an email the person does not have, a conflicting
              link, an unrelated name in the same system

(the rules are :mod:`gateway._matching`'s). Each round's results are judged
kind by kind in ``match_keys`` order (strongest first by default), so a
phone's records meet the person as that round's links and emails left them;
a record judged a possible match is accepted if a later round's link or
clean email finds it. A value whose lookup finds
records of different people -- a switchboard phone, a shared inbox --
identifies no one: none of the records found through it is merged, all are
reported as ``possible`` matches (with the reason, never the value). Blocked
values (``test@example.com``, ``n/a``) never become keys. Records a phone
found add no keys of their own: a weak match never widens who the person is.

Lookups that fail are kept per system (``Profile.failures``): the golden
record reports those systems as unreachable instead of claiming the customer
is missing there.

Errors::

    ValueError
    └── InvalidCustomerId    a customer id this gateway did not issue
    LookupError
    └── AmbiguousCustomer    the anchor email is several people's (code AMBIGUOUS_CUSTOMER)
    connectors.sdk.UpstreamError
    └── CustomerUnreachable  nothing found and lookups failed: ``failures`` has every
                             system's first error; code, source and retryable are the
                             first failure's
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.sdk import Connector, Domain, MarketingMember, Person, PiiKind, UpstreamError
from gateway._customer_ids import CustomerIds, InvalidCustomerId
from gateway._identity_config import MATCH_KEYS, IdentitySettings, identity_settings_from_mapping
from gateway._matching import Known, Record, shared
from gateway._rounds import (
    EMAIL_LOOKUP,
    ID_LOOKUP,
    PHONE_LOOKUP,
    Frontier,
    as_list,
    round_calls,
    round_results,
)
from gateway.context import Context

__all__ = [
    "AMBIGUOUS_CUSTOMER",
    "EMAIL_LOOKUP",
    "ID_LOOKUP",
    "PHONE_LOOKUP",
    "AmbiguousCustomer",
    "CustomerIds",
    "CustomerUnreachable",
    "IdentitySettings",
    "InvalidCustomerId",
    "Linked",
    "PossibleMatch",
    "Profile",
    "identity_settings_from_mapping",
    "resolve",
]

AMBIGUOUS_CUSTOMER = "AMBIGUOUS_CUSTOMER"
# Iterating an Enum class walks its member map each time; this is read per profile.
_DOMAINS = tuple(Domain)
_DOMAIN_ORDER = {domain: i for i, domain in enumerate(_DOMAINS)}


class AmbiguousCustomer(LookupError):
    """The anchor email belongs to several people: no record may merge them.

    ``candidates`` are ``(system, record id)`` of the records the email found,
    so a caller can ask for one by ``ref``. No value in it is PII: ids
    computed from personal data (Mailchimp's is the email's hash, and would
    only lead back to this same email) are left out.
    """

    code = AMBIGUOUS_CUSTOMER

    def __init__(self, candidates: Iterable[tuple[str, str]]) -> None:
        super().__init__(
            "this email belongs to several people; ask for one of the candidates by ref"
        )
        self.candidates = tuple(sorted(set(candidates)))

    @property
    def extensions(self) -> dict[str, Any]:
        # graphql-core copies an exception's ``extensions`` onto the error it reports.
        return {
            "code": self.code,
            "candidates": [{"system": system, "id": rid} for system, rid in self.candidates],
        }


class CustomerUnreachable(UpstreamError):
    """Nothing was found and some lookups failed: whether the customer exists
    cannot be told, so there is no false "no such customer".

    Stands for the first failure (its message, source, code, retryable,
    retry_after), so it reports like any upstream error; ``failures`` holds
    every failing system's first error, by connector name.
    """

    def __init__(self, failures: Mapping[str, UpstreamError]) -> None:
        first = next(iter(failures.values()))
        super().__init__(first.message, source=first.source, status=first.status)
        self.code = first.code
        self.retryable = first.retryable
        self.retry_after: float | None = getattr(first, "retry_after", None)
        self.failures = dict(failures)


@dataclass(frozen=True, slots=True)
class Linked:
    """One record of the customer in one system, and the key that found it."""

    connector: Connector
    record: Person | MarketingMember
    matched_by: str  # "ref" | "email" | "phone" | "link"


@dataclass(frozen=True, slots=True, order=True)
class PossibleMatch:
    """A record a key found that was not merged, and why (a stable code, no values)."""

    system: str
    record_id: str
    matched_on: str  # "email" | "phone"
    reason: str  # "email differs" | "link differs" | "name differs" | "shared email" | …
    # Set when the id is computed from personal data (see SourceRef.id_pii).
    id_pii: PiiKind | None = field(default=None, compare=False)


@dataclass
class Profile:
    """Everything resolution found for one customer."""

    linked: dict[Domain, list[Linked]] = field(default_factory=dict)
    # Every system a lookup failed for, by connector name: the first error each.
    failures: dict[str, UpstreamError] = field(default_factory=dict)
    # Records found but not merged, by (system, record id).
    possible: dict[tuple[str, str], PossibleMatch] = field(default_factory=dict)
    # Emails looked up that found one person only: fit to be a customer id.
    identifying_emails: set[str] = field(default_factory=set)
    _failed_domains: dict[str, Domain] = field(default_factory=dict)
    _seen: set[tuple[str, str, str | None]] = field(default_factory=set)

    def records(self, domain: Domain) -> list[Linked]:
        return self.linked.get(domain, [])

    def all(self) -> Iterable[Linked]:
        for domain in _DOMAINS:
            yield from self.records(domain)

    @property
    def found(self) -> bool:
        return bool(self._seen)

    @property
    def unreachable(self) -> tuple[str, ...]:
        return tuple(sorted(self.failures))

    def fail(self, connector: Connector, error: UpstreamError) -> None:
        if connector.name not in self.failures:
            self.failures[connector.name] = error
            self._failed_domains[connector.name] = connector.domain

    def failure(self, domain: Domain) -> UpstreamError | None:
        """The first failure of a system of ``domain``, if any."""
        for name, error in self.failures.items():
            if self._failed_domains[name] is domain:
                return error
        return None

    def has(self, connector: Connector, record: Record) -> bool:
        return _key(connector, record) in self._seen

    def add(self, connector: Connector, records: Iterable[Any], matched_by: str) -> list[Linked]:
        added: list[Linked] = []
        for record in records:
            key = _key(connector, record)
            if key in self._seen:
                continue
            self._seen.add(key)
            self.possible.pop(key[:2], None)
            link = Linked(connector, record, matched_by)
            self.linked.setdefault(connector.domain, []).append(link)
            added.append(link)
        return added


def _key(connector: Connector, record: Record) -> tuple[str, str, str | None]:
    # A marketing member is one record per list it belongs to.
    return (connector.name, record.source.record_id, getattr(record, "list_id", None))


def _canonical(hits: Iterable[tuple[Connector, Record]]) -> list[tuple[Connector, Record]]:
    """Records without links first (they say who is who), then by system and
    id: judging the same records always ends the same way."""
    return sorted(
        hits,
        key=lambda hit: (
            bool(getattr(hit[1], "links", None)),
            _DOMAIN_ORDER[hit[0].domain],
            hit[0].name,
            hit[1].source.record_id,
            getattr(hit[1], "list_id", None) or "",
        ),
    )


class _Resolution:
    """The state of one resolution: the person so far, and the next keys."""

    def __init__(self, settings: IdentitySettings, anchor: str | None = None) -> None:
        self.settings = settings
        self.anchor = anchor
        self.profile = Profile()
        self.known = Known()
        self.frontier = Frontier()
        self.seen = Frontier()
        # "system:id" of every accepted record
        self.have: set[str] = set()
        # Configured priority first; the anchor's own kind is judged even if unlisted.
        self.order = (
            *settings.match_keys,
            *(k for k in MATCH_KEYS if k not in settings.match_keys),
        )

    def email_of(self, record: Record) -> str | None:
        return self.settings.email_key(record.email)

    def accept(self, connector: Connector, record: Record, how: str) -> None:
        for link in self.profile.add(connector, (record,), how):
            self.have.add(f"{connector.name}:{record.source.record_id}")
            self.known.add(connector.name, record, self.email_of(record))
            if how != "phone":
                self._follow(link)

    def _follow(self, link: Linked) -> None:
        keys, record = self.settings.match_keys, link.record
        # A ref's or a link's address is new; an email-found record's is its key (seen).
        if "email" in keys and (email := self.email_of(record)) is not None:
            self.frontier.emails.add(email)
        if isinstance(record, Person):
            if "phone" in keys and (phone := self.settings.phone_key(record.phone)):
                self.frontier.phones.add(phone)
            if "link" in keys:
                for system, target in record.links.items():
                    self.frontier.targets.add(f"{system}:{target}")
                    self.frontier.backrefs.add(f"{system}:{target}")
        if "link" in keys:
            self.frontier.backrefs.add(f"{link.connector.name}:{record.source.record_id}")

    def take(self, calls: Sequence[tuple[Connector, str, str, str]], results: list[Any]) -> None:
        """Judge one round's answers, strongest kind of key first."""
        found: dict[str, dict[str, list[tuple[Connector, Record]]]] = {k: {} for k in MATCH_KEYS}
        for (connector, _method, key, kind), result in zip(calls, results, strict=True):
            if isinstance(result, UpstreamError):
                self.profile.fail(connector, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                hits = found[kind].setdefault(key, [])
                hits += ((connector, record) for record in as_list(result))
        for kind in self.order:
            for key in sorted(found[kind]):
                self._judge(kind, key, found[kind][key])

    def _judge(self, kind: str, key: str, hits: list[tuple[Connector, Record]]) -> None:
        if kind == "link":
            for connector, record in hits:
                self.accept(connector, record, "link")
            return
        new = [hit for hit in _canonical(hits) if not self.profile.has(*hit)]
        if kind == "email" and key == self.anchor:
            self._anchor(key, new)
            return
        # Each record meets the person and the key's other records before it:
        # two people behind one value conflict even if neither conflicts alone.
        trial = self.known.copy()
        reasons: dict[tuple[str, str], str] = {}
        for connector, record in new:
            email = self.email_of(record)
            reason = trial.conflict(connector.name, record, email, check_email=kind == "phone")
            if reason is not None:
                reasons[(connector.name, record.source.record_id)] = reason
            else:
                trial.add(connector.name, record, email)
        if not reasons:
            for connector, record in new:
                self.accept(connector, record, kind)
            if kind == "email":
                self.profile.identifying_emails.add(key)
            return
        # Records of different people behind one value: it identifies no one.
        for connector, record in new:
            rid = (connector.name, record.source.record_id)
            match = PossibleMatch(*rid, kind, reasons.get(rid, shared(kind)), record.source.id_pii)
            self.profile.possible.setdefault(rid, match)

    def _anchor(self, key: str, new: list[tuple[Connector, Record]]) -> None:
        # Every record holds the anchor address: links and names tell people apart.
        trial = Known()
        for connector, record in new:
            if trial.conflict(connector.name, record, None, check_email=False) is not None:
                raise AmbiguousCustomer(
                    (c.name, r.source.record_id) for c, r in new if r.source.id_pii is None
                )
            trial.add(connector.name, record, None)
        for connector, record in new:
            self.accept(connector, record, "email")
        if new:
            self.profile.identifying_emails.add(key)


async def resolve(
    ctx: Context, *, email: str | None = None, ref: tuple[Connector, str] | None = None
) -> Profile | None:
    """Find the customer behind an email or a system's record id, everywhere.

    Raises :class:`AmbiguousCustomer` when the email is several people's,
    and :class:`CustomerUnreachable` when nothing was found and something
    failed (``None`` would claim there is no such customer).
    """
    settings: IdentitySettings = ctx.identity
    if ref is not None:
        run = _Resolution(settings)
        connector, record_id = ref
        found = as_list(await ctx.loaders.load(connector, ID_LOOKUP[connector.domain], record_id))
        for record in found:
            run.accept(connector, record, "ref")
        if not run.profile.found:
            return None
    elif email is not None and (key := settings.email_key(email)) is not None:
        run = _Resolution(settings, anchor=key)
        run.frontier.emails.add(key)
    else:
        return None
    for _ in range(settings.max_rounds):
        calls = round_calls(ctx.connectors, run.frontier, run.seen, run.have)
        if not calls:
            break
        results = await round_results(ctx, calls)
        run.frontier = Frontier()
        run.take(calls, results)
        run.frontier.minus(run.seen)
    profile = run.profile
    if not profile.found:
        if profile.failures:
            first = next(iter(profile.failures.values()))
            raise CustomerUnreachable(profile.failures) from first
        return None
    return profile
