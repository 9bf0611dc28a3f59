"""Cross-system identity: who a customer is in every connected system.

Resolution is a bounded closure over match keys, in the configured priority
order (``identity.match_keys``, default ``link, email, phone``)::

    round 1   the anchor: an email (or a system's own record, for ``ref``)
    round 2+  keys the found records carry: explicit links (a CRM id on a
              Stripe customer's metadata or a Zendesk user's external_id, and
              records elsewhere that link back to a found one), phones (E.164),
              and emails of records found by id or link

Each round asks every connector for all new keys at once, through the
request's DataLoaders, so N customers still cost one batch per connector
method per round. Blocked values (placeholders like ``test@example.com`` or
``n/a``) never become keys, so they never link two people, and a record found
by several keys is linked once. Emails found only by a phone match are not
followed: a shared phone must not pull in someone else's records.

The gateway's customer id is the anchor encrypted deterministically
(AES-SIV): stable across processes that share ``C360_ID_KEY``, opaque to
clients, and reversible without a database.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from connectors.sdk import (
    Connector,
    Domain,
    MarketingMember,
    Person,
    UpstreamError,
    UpstreamTimeout,
    normalize_email,
    normalize_phone,
)
from connectors.sdk.webhooks import LINKED, PERSON_LOOKUPS
from gateway.config import ConfigError
from gateway.context import Context
from gateway.survivorship import DEFAULT_RULES, Rule, rules_from_mapping

__all__ = [
    "EMAIL_LOOKUP",
    "ID_LOOKUP",
    "PHONE_LOOKUP",
    "CustomerIds",
    "IdentitySettings",
    "InvalidCustomerId",
    "Linked",
    "Profile",
    "identity_settings_from_mapping",
    "resolve",
]

# One table of person lookups per domain, owned by the SDK (webhooks evict
# by the same method names).
EMAIL_LOOKUP = {d: names[0] for d, names in PERSON_LOOKUPS.items()}
ID_LOOKUP = {d: names[1] for d, names in PERSON_LOOKUPS.items()}
PHONE_LOOKUP = {d: names[2] for d, names in PERSON_LOOKUPS.items() if names[2] is not None}
_LINKED = LINKED
_ID_PREFIX = "c360_"
# Iterating an Enum class walks its member map each time; this is read per profile.
_DOMAINS = tuple(Domain)
# Ids are deterministic (AES-SIV), so an anchor's id can be remembered.
_ENCODED_IDS = 4096
_MATCH_KEYS = ("link", "email", "phone")


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    match_keys: tuple[str, ...] = _MATCH_KEYS
    max_rounds: int = 3
    blocked_emails: tuple[str, ...] = (
        "test@example.com", "noreply@*", "no-reply@*", "donotreply@*", "*@example.invalid",
    )  # fmt: skip
    blocked_phones: tuple[str, ...] = ()
    rules: Mapping[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    conflict_fields: tuple[str, ...] = ("name", "phone", "title")

    def email_key(self, value: str | None) -> str | None:
        email = normalize_email(value)
        if email is None or _blocked(self.blocked_emails).match(email):
            return None
        return email

    def phone_key(self, value: str | None) -> str | None:
        phone = normalize_phone(value)
        if phone is None or phone in self.blocked_phones:
            return None
        return phone


@functools.lru_cache(maxsize=16)
def _blocked(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for every glob: resolution checks each email it sees."""
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


def identity_settings_from_mapping(raw: Any) -> IdentitySettings:
    """Read the ``identity:`` section of the gateway config."""
    if raw is None:
        return IdentitySettings()
    if not isinstance(raw, Mapping):
        raise ConfigError("identity must be a mapping")
    defaults = IdentitySettings()
    keys = tuple(raw.get("match_keys", defaults.match_keys))
    if not keys or any(k not in _MATCH_KEYS for k in keys):
        raise ConfigError(f"identity.match_keys must name some of {', '.join(_MATCH_KEYS)}")
    rounds = raw.get("max_rounds", defaults.max_rounds)
    if not isinstance(rounds, int) or not 1 <= rounds <= 5:
        raise ConfigError("identity.max_rounds must be an integer from 1 to 5")
    blocked = raw.get("blocked") or {}
    if not isinstance(blocked, Mapping):
        raise ConfigError("identity.blocked must map 'emails' and/or 'phones' to lists")
    emails = blocked.get("emails", defaults.blocked_emails)
    phones = blocked.get("phones", defaults.blocked_phones)
    fields = raw.get("conflict_fields", defaults.conflict_fields)
    for name, value in (("blocked.emails", emails), ("blocked.phones", phones),
                        ("conflict_fields", fields)):  # fmt: skip
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"identity.{name} must be a list of strings")
    return IdentitySettings(
        match_keys=keys,
        max_rounds=rounds,
        blocked_emails=tuple(e.strip().lower() for e in emails),
        blocked_phones=tuple(p for v in phones if (p := normalize_phone(v) or v)),
        rules=rules_from_mapping(raw.get("survivorship")),
        conflict_fields=tuple(fields),
    )


class InvalidCustomerId(ValueError):
    """A customer id that this gateway did not issue."""


class CustomerIds:
    """Anchors are ``e:<email>`` or ``r:<system>:<record id>``."""

    def __init__(self, key: bytes) -> None:
        self._siv = AESSIV(key)
        self._encoded: dict[str, str] = {}

    def encode(self, anchor: str) -> str:
        known = self._encoded.get(anchor)
        if known is not None:
            return known
        token = self._siv.encrypt(anchor.encode(), None)
        encoded = _ID_PREFIX + base64.urlsafe_b64encode(token).rstrip(b"=").decode()
        if len(self._encoded) >= _ENCODED_IDS:
            self._encoded.clear()
        self._encoded[anchor] = encoded
        return encoded

    def decode(self, customer_id: str) -> str:
        if not customer_id.startswith(_ID_PREFIX) or len(customer_id) > 600:
            raise InvalidCustomerId("not a c360 customer id")
        raw = customer_id.removeprefix(_ID_PREFIX)
        try:
            token = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            anchor = self._siv.decrypt(token, None).decode()
        except (ValueError, InvalidTag) as exc:
            raise InvalidCustomerId("not a c360 customer id") from exc
        if not anchor.startswith(("e:", "r:")):
            raise InvalidCustomerId("not a c360 customer id")
        return anchor


@dataclass(frozen=True, slots=True)
class Linked:
    """One record of the customer in one system, and the key that found it."""

    connector: Connector
    record: Person | MarketingMember
    matched_by: str  # "ref" | "email" | "phone" | "link"


@dataclass
class Profile:
    """Everything resolution found for one customer."""

    linked: dict[Domain, list[Linked]] = field(default_factory=dict)
    # Lookups that failed: a domain with no record and a failure reports it.
    failures: dict[Domain, UpstreamError] = field(default_factory=dict)
    _seen: set[tuple[str, str, str | None]] = field(default_factory=set)

    def records(self, domain: Domain) -> list[Linked]:
        return self.linked.get(domain, [])

    def all(self) -> Iterable[Linked]:
        for domain in _DOMAINS:
            yield from self.records(domain)

    @property
    def found(self) -> bool:
        return bool(self._seen)

    def add(self, connector: Connector, records: Iterable[Any], matched_by: str) -> list[Linked]:
        added: list[Linked] = []
        for record in records:
            # A marketing member is one record per list it belongs to.
            key = (connector.name, record.source.record_id, getattr(record, "list_id", None))
            if key in self._seen:
                continue
            self._seen.add(key)
            link = Linked(connector, record, matched_by)
            self.linked.setdefault(connector.domain, []).append(link)
            added.append(link)
        return added


def _as_list(found: Any) -> Sequence[Any]:
    if found is None:
        return ()
    if isinstance(found, Sequence):
        return found
    return (found,)


def _supports(connector: Connector, method: str) -> bool:
    # Hooks left at the SDK default would answer {} for free; skip the call.
    return _overrides(type(connector), method)


@functools.cache
def _overrides(kind: type, method: str) -> bool:
    base = next(b for b in kind.__mro__ if b.__module__ == "connectors.sdk.base")
    return getattr(kind, method, None) is not getattr(base, method, None)


@dataclass
class _Frontier:
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    # "system:id" a found record points at: read it from its own system...
    targets: set[str] = field(default_factory=set)
    # ...and "system:id" of every found record: ask the others who links to it.
    backrefs: set[str] = field(default_factory=set)

    def minus(self, seen: _Frontier) -> None:
        self.emails -= seen.emails
        self.phones -= seen.phones
        self.targets -= seen.targets | seen.backrefs
        self.backrefs -= seen.backrefs


def _keys_of(links: Iterable[Linked], settings: IdentitySettings, frontier: _Frontier) -> None:
    for link in links:
        record = link.record
        if link.matched_by in ("ref", "link") and (e := settings.email_key(record.email)):
            frontier.emails.add(e)
        if isinstance(record, Person):
            if phone := settings.phone_key(record.phone):
                frontier.phones.add(phone)
            for system, target in record.links.items():
                frontier.targets.add(f"{system}:{target}")
                frontier.backrefs.add(f"{system}:{target}")
        frontier.backrefs.add(f"{link.connector.name}:{record.source.record_id}")


async def resolve(
    ctx: Context, *, email: str | None = None, ref: tuple[Connector, str] | None = None
) -> Profile | None:
    """Find the customer behind an email or a system's record id, everywhere."""
    settings: IdentitySettings = ctx.identity
    profile = Profile()
    frontier = _Frontier()
    if ref is not None:
        connector, record_id = ref
        found = _as_list(await ctx.loaders.load(connector, ID_LOOKUP[connector.domain], record_id))
        _keys_of(profile.add(connector, found, "ref"), settings, frontier)
        if not profile.found:
            return None
    elif email is not None:
        if (key := settings.email_key(email)) is None:
            return None
        frontier.emails.add(key)
    seen = _Frontier()
    for _ in range(settings.max_rounds):
        calls = _round_calls(ctx, settings, frontier, seen)
        if not calls:
            break
        results = await _round_results(ctx, calls)
        frontier = _Frontier()
        for (connector, _method, _key, how), result in zip(calls, results, strict=True):
            if isinstance(result, UpstreamError):
                profile.failures.setdefault(connector.domain, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                _keys_of(profile.add(connector, _as_list(result), how), settings, frontier)
        frontier.minus(seen)
    if not profile.found:
        if profile.failures:
            # Nothing found and something failed: we cannot say "no such
            # customer", so report the failure instead of a false null.
            raise next(iter(profile.failures.values()))
        return None
    return profile


#: Share of the request's remaining deadline one identity round may take. A
#: vendor that hangs in round 1 must not eat the budget of every later hop:
#: past its share, that system counts as timed out and resolution goes on.
_ROUND_SHARE = 0.5


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure is not an unhandled one


async def _round_results(ctx: Context, calls: list[tuple[Connector, str, str, str]]) -> list[Any]:
    tasks = [asyncio.ensure_future(ctx.loaders.load(c, method, key)) for c, method, key, _ in calls]
    deadline = ctx.loaders.scope.deadline
    budget = None
    if deadline is not None:
        budget = max(0.0, (deadline - asyncio.get_running_loop().time()) * _ROUND_SHARE)
    # Not cancelled when late: DataLoader futures are shared with other
    # customers of the request, and the resilience layer bounds the call.
    done: set[asyncio.Future[Any]]
    if all(task.done() for task in tasks):  # answered from memory: nothing to wait for
        done = set(tasks)
    else:
        done, _ = await asyncio.wait(tasks, timeout=budget)
    results: list[Any] = []
    for task, (connector, *_) in zip(tasks, calls, strict=True):
        if task in done:
            results.append(task.exception() or task.result())
        else:
            task.add_done_callback(_consume)
            results.append(
                UpstreamTimeout(f"{connector.name} did not answer in time", source=connector.name)
            )
    return results


def _round_calls(
    ctx: Context, settings: IdentitySettings, frontier: _Frontier, seen: _Frontier
) -> list[tuple[Connector, str, str, str]]:
    """This round's lookups, strongest key first: a record reached by several
    keys in one round is linked under the first (see ``Profile.add``)."""
    connectors = list(ctx.connectors.by_name.values())
    by_key: dict[str, list[tuple[Connector, str, str, str]]] = {
        "link": [],
        "email": [],
        "phone": [],
    }
    if "email" in settings.match_keys:
        for key in sorted(frontier.emails - seen.emails):
            by_key["email"] += [(c, EMAIL_LOOKUP[c.domain], key, "email") for c in connectors]
        seen.emails |= frontier.emails
    if "phone" in settings.match_keys:
        for key in sorted(frontier.phones - seen.phones):
            by_key["phone"] += [
                (c, PHONE_LOOKUP[c.domain], key, "phone")
                for c in connectors
                if c.domain in PHONE_LOOKUP and _supports(c, PHONE_LOOKUP[c.domain])
            ]
        seen.phones |= frontier.phones
    if "link" in settings.match_keys:
        # A target that is itself a found record (in backrefs) needs no read.
        for key in sorted(frontier.targets - seen.targets - seen.backrefs - frontier.backrefs):
            system, _, target = key.partition(":")
            owner = ctx.connectors.by_name.get(system)
            if owner is not None:
                by_key["link"].append((owner, ID_LOOKUP[owner.domain], target, "link"))
        for key in sorted(frontier.backrefs - seen.backrefs):
            system = key.partition(":")[0]
            by_key["link"] += [
                (c, _LINKED, key, "link")
                for c in connectors
                if c.name != system and _supports(c, _LINKED)
            ]
        seen.targets |= frontier.targets
        seen.backrefs |= frontier.backrefs
    return [call for name in settings.match_keys for call in by_key[name]]
