"""Mutants of module-level tables, which mutmut 3 leaves alone (it mutates
function bodies only): a masker table that masks names as emails, a rank that
puts masked above full. ``bench/mutation.py`` runs the tests once per mutant
with this module as a pytest plugin (``-p _mutation_tables``) and
``C360_TABLE_MUTANT=<module>::<name>``; the plugin patches the table before
any test runs. A mutant is killed when a test fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

ENV = "C360_TABLE_MUTANT"


def _masker(kind: str, masker: str) -> Callable[[], None]:
    def apply() -> None:
        from connectors.sdk import PiiKind
        from gateway import _masks

        _masks._MASKERS[PiiKind[kind]] = getattr(_masks, masker)

    return apply


def _set(module: str, name: str, value: Any) -> Callable[[], None]:
    def apply() -> None:
        import importlib

        setattr(importlib.import_module(module), name, value)

    return apply


def _rank(treatment: str, rank: float) -> Callable[[], None]:
    def apply() -> None:
        from gateway import policy

        policy._RANK[policy.Treatment[treatment]] = rank  # type: ignore[index]

    return apply


def _access(treatment: str, access: str) -> Callable[[], None]:
    def apply() -> None:
        from gateway import policy

        policy._ACCESS[policy.Treatment[treatment]] = policy.Access[access]  # type: ignore[index]

    return apply


def _builtin(role: str, treatment: str) -> Callable[[], None]:
    def apply() -> None:
        from gateway import policy

        table = dict(policy.BUILTIN_PII)
        table[role] = policy.Treatment[treatment]
        policy.BUILTIN_PII = MappingProxyType(table)
        object.__setattr__(policy.DEFAULT_POLICY, "roles", policy._builtin_roles())

    return apply


def _shown(access: str, how: str) -> Callable[[], None]:
    def apply() -> None:
        from gateway.policy import Access
        from schema import permissions

        permissions._SHOWN[Access[access]] = how

    return apply


EGRESS = "schema.extensions.pii_egress"

MUTANTS: dict[str, dict[str, Callable[[], None]]] = {
    "gateway/_masks.py": {
        "NAME masked as an email": _masker("NAME", "mask_email"),
        "EMAIL masked as a name": _masker("EMAIL", "mask_name"),
        "PHONE masked as an id": _masker("PHONE", "mask_last4"),
        "ID masked as a name": _masker("ID", "mask_name"),
        "OTHER masked as a name": _masker("OTHER", "mask_name"),
        "the mask '***' is '*'": _set("gateway._masks", "_MASK", "*"),
    },
    "gateway/policy.py": {
        "masked ranks above full": _rank("MASKED", 3),
        "hidden ranks above masked": _rank("HIDDEN", 1.5),
        "full is shown masked": _access("FULL", "MASKED"),
        "hidden is shown masked": _access("HIDDEN", "MASKED"),
        "built-in marketing gets full": _builtin("marketing", "FULL"),
        "built-in integration gets masked": _builtin("integration", "MASKED"),
    },
    "schema/permissions.py": {
        "a masked read is audited as full": _shown("MASKED", "full"),
        "a full read is audited as masked": _shown("ALLOWED", "masked"),
    },
    "schema/extensions/pii_egress.py": {
        "phones compare by their last 4 digits": _set(EGRESS, "_PHONE_KEY", 4),
        "phones compare by their last 12 digits": _set(EGRESS, "_PHONE_KEY", 12),
        "a value hidden inside text leaves nothing": _set(EGRESS, "_HIDDEN_INSIDE", ""),
        # The pattern as it is, less one thing it accepts.
        "an email with a + is not an email": _set(
            EGRESS, "_EMAIL", re.compile(r"[\w.%'\-]+@[\w\-]+(?:\.[\w\-]+)+")
        ),
        "an email's domain ends at its first dot": _set(
            EGRESS, "_EMAIL", re.compile(r"[\w.%+'\-]+@[\w\-]+(?:\.[\w\-]+)")
        ),
        "a phone needs 10 characters": _set(
            EGRESS, "_PHONEISH", re.compile(r"\+?\d[\d\s().\-]{8,}\d")
        ),
    },
}


def pytest_configure(config: Any) -> None:
    module, _, name = os.environ[ENV].partition("::")
    MUTANTS[module][name]()
