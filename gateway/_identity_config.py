"""The ``identity:`` section of the gateway config, typed.

::

    identity:
      match_keys: [link, email, phone]   # which keys resolution follows, strongest first
      max_rounds: 3                      # lookup rounds after the anchor (1-5)
      blocked: {emails: [...], phones: [...]}   # placeholders that never link anyone
      conflict_fields: [name, phone, title]     # attributes reported when systems disagree
      survivorship: {phone: {rule: most_recent, sources: [crm]}}

Unknown keys are a :class:`~gateway.config.ConfigError`, as everywhere in the config.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.sdk import normalize_email, normalize_phone
from gateway.config import ConfigError
from gateway.survivorship import DEFAULT_RULES, Rule, rules_from_mapping

__all__ = ["MATCH_KEYS", "IdentitySettings", "identity_settings_from_mapping"]

MATCH_KEYS = ("link", "email", "phone")
_SECTION_KEYS = frozenset(
    {"match_keys", "max_rounds", "blocked", "conflict_fields", "survivorship"}
)
_BLOCKED_KEYS = frozenset({"emails", "phones"})


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    match_keys: tuple[str, ...] = MATCH_KEYS
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


def _known_keys(raw: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def identity_settings_from_mapping(raw: Any) -> IdentitySettings:
    """Read the ``identity:`` section of the gateway config."""
    if raw is None:
        return IdentitySettings()
    if not isinstance(raw, Mapping):
        raise ConfigError("identity must be a mapping")
    _known_keys(raw, _SECTION_KEYS, "identity")
    defaults = IdentitySettings()
    keys = raw.get("match_keys", defaults.match_keys)
    if not isinstance(keys, list | tuple) or not keys or any(k not in MATCH_KEYS for k in keys):
        raise ConfigError(f"identity.match_keys must name some of {', '.join(MATCH_KEYS)}")
    rounds = raw.get("max_rounds", defaults.max_rounds)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 5:
        raise ConfigError("identity.max_rounds must be an integer from 1 to 5")
    blocked = raw.get("blocked") or {}
    if not isinstance(blocked, Mapping):
        raise ConfigError("identity.blocked must map 'emails' and/or 'phones' to lists")
    _known_keys(blocked, _BLOCKED_KEYS, "identity.blocked")
    emails = _strings(blocked.get("emails", defaults.blocked_emails), "identity.blocked.emails")
    phones = _strings(blocked.get("phones", defaults.blocked_phones), "identity.blocked.phones")
    fields = _strings(raw.get("conflict_fields", defaults.conflict_fields),
                      "identity.conflict_fields")  # fmt: skip
    if unknown := sorted(set(fields) - set(DEFAULT_RULES)):
        raise ConfigError(
            f"identity.conflict_fields: unknown attribute(s) {unknown}; "
            f"expected some of {sorted(DEFAULT_RULES)}"
        )
    return IdentitySettings(
        match_keys=tuple(dict.fromkeys(keys)),
        max_rounds=rounds,
        blocked_emails=tuple(e.strip().lower() for e in emails),
        blocked_phones=tuple(p for v in phones if (p := normalize_phone(v) or v)),
        rules=rules_from_mapping(raw.get("survivorship")),
        conflict_fields=fields,
    )
