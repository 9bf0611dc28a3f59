"""Gateway settings for the built-in vendor sandboxes (demo, tests, benchmarks)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path

from connectors.sdk import ConnectorSettings
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS
from connectors.sdk.world import World, WorldPerson
from gateway.audit import AuditKey
from gateway.config import ConnectorConfig, Settings, TransportName

__all__ = ["DEMO_AUDIT_KEY_TEXT", "SANDBOX_VENDORS", "example_customer", "sandbox_settings"]

SANDBOX_VENDORS = ("salesforce", "zendesk", "stripe", "mailchimp")
# A fixed, public key: demo customer ids stay the same across restarts. Never
# use it outside the sandboxes -- `c360 serve` reads C360_ID_KEY instead.
_DEMO_ID_KEY = hashlib.sha256(b"c360 demo customer ids").digest()
# Likewise public: it signs the demo's audit trail, so `c360 audit verify
# --key env:C360_AUDIT_KEY` works on it with C360_AUDIT_KEY=DEMO_AUDIT_KEY_TEXT.
# Never use it outside the sandboxes -- `c360 serve` requires audit.key.
DEMO_AUDIT_KEY_TEXT = "YzM2MC1kZW1vLWF1ZGl0LWtleS1wdWJsaWMtbm90LXNlY3JldA"
_DEMO_AUDIT_KEY = AuditKey.from_text(DEMO_AUDIT_KEY_TEXT, where="demo")


def sandbox_settings(
    sandbox_url: str,
    *,
    webhook_secrets: Mapping[str, str] | None = None,
    transport: TransportName = "aiohttp",
    graphiql: bool = True,
    timeout: float = 10.0,
    max_customers: int = 200,
    audit_path: Path | None = None,
) -> Settings:
    """Settings for the sandboxes at ``sandbox_url``; the audit trail goes to
    ``audit_path``, by default a file in a new temporary directory (a trail of
    another run, or of an older c360, is never extended)."""
    base = sandbox_url.rstrip("/")
    if audit_path is None:
        audit_path = Path(tempfile.mkdtemp(prefix="c360-demo-")) / "audit.jsonl"
    return Settings(
        connectors=tuple(
            ConnectorConfig(
                name=vendor,
                kind=vendor,
                # The sandboxes publish no rate limits; the vendors' own
                # client-side limits would only slow the demo and benchmarks.
                raw={
                    "resilience": {"rate_limit": False},
                    **(
                        {"webhook_secret": webhook_secrets[vendor]}
                        if webhook_secrets and vendor in webhook_secrets
                        else {}
                    ),
                },
                settings=ConnectorSettings(
                    base_url=f"{base}/{vendor}",
                    credentials=SANDBOX_CREDENTIALS[vendor],
                    timeout=timeout,
                ),
            )
            for vendor in SANDBOX_VENDORS
        ),
        id_key=_DEMO_ID_KEY,
        raw={
            "audit": {
                "sink": "file",
                "path": str(audit_path),
                "key": _DEMO_AUDIT_KEY,
            }
        },
        transport=transport,
        graphiql=graphiql,
        max_customers=max_customers,
    )


def example_customer(world: World) -> WorldPerson:
    """The customer the demo shows first: the first person with the fullest
    clean profile -- in all four systems with no seeded anomaly, an account,
    tickets, an active subscription with paid invoices, marketing lists -- so
    the same world always shows the same person, and every field has data."""

    def fullness(p: WorldPerson) -> tuple[bool, ...]:
        subscriptions = [s for b in p.billing for s in b.subscriptions]
        return (
            p.in_all,
            not p.anomalies,
            p.org is not None,
            bool(p.tickets),
            any(s.status == "active" for s in subscriptions),
            any(i.status == "paid" for b in p.billing for i in b.invoices),
            len(p.memberships) > 1,
        )

    return max(world.people, key=fullness)  # max keeps the first of equals
