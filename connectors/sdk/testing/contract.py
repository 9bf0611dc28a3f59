"""The connector contract: what every connector must do, checked against its sandbox.

The suite runs the vendor's sandbox as a real HTTP server on 127.0.0.1, builds
the connector with the sandbox credentials, and checks the behaviour the
gateway relies on: batch-first lookups keyed by normalized email whatever the
vendor stored, absent keys for unknown people, by-id reads that agree with the
email lookups, source references on every record, a bounded number of
upstream calls per batch, every call made through the SDK's client, and the
SDK error tree for bad credentials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
import pytest

from connectors.sdk.base import Connector, ConnectorSettings
from connectors.sdk.errors import UpstreamAuthError
from connectors.sdk.http import call_gate
from connectors.sdk.models import Domain
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState

__all__ = ["ConnectorContract", "connector_class", "contract_for"]

_EMAIL_METHOD = {
    Domain.CRM: "people_by_email",
    Domain.TICKETING: "requesters_by_email",
    Domain.BILLING: "customers_by_email",
    Domain.MARKETING: "members_by_email",
}
_ID_METHOD = {
    Domain.CRM: "people_by_id",
    Domain.TICKETING: "requesters_by_id",
    Domain.BILLING: "customers_by_id",
    Domain.MARKETING: "members_by_id",
}


def connector_class(vendor: str) -> type[Connector]:
    from importlib.metadata import entry_points

    for ep in entry_points(group="c360.connectors", name=vendor):
        cls: type[Connector] = ep.load()
        return cls
    raise LookupError(f"no connector {vendor!r} in the c360.connectors entry points")


@pytest.mark.contract
class ConnectorContract:
    """The suite; fixtures ``contract_state``, ``contract_base_url`` and
    ``contract_connector`` come from
    the kit's pytest plugin (:mod:`connectors.sdk.testing.plugin`)."""

    vendor: ClassVar[str]
    customers: ClassVar[int] = 150
    seed: ClassVar[int] = 5

    def _present(self, state: SandboxState) -> list[dict[str, Any]]:
        keys = [state.world.answer_key(p) for p in state.world.people]
        # A record stored under another address (a placeholder, a team inbox)
        # is reachable only through links, never by the person's email.
        return [
            k
            for k in keys
            if k["systems"][self.vendor]
            and all(r["email"] == k["email"] for r in k["records"] if r["system"] == self.vendor)
        ]

    async def _by_email(self, connector: Connector, emails: Sequence[str]) -> Any:
        return await getattr(connector, _EMAIL_METHOD[connector.domain])(list(emails))

    def test_declares_name_and_domain(self) -> None:
        cls = connector_class(self.vendor)
        assert cls.name == self.vendor
        assert isinstance(cls.domain, Domain)
        assert cls.email_batch_size >= 1

    async def test_email_lookup_finds_every_present_person(
        self, contract_connector: Connector, contract_state: SandboxState
    ) -> None:
        present = self._present(contract_state)[:40]
        found = await self._by_email(contract_connector, [p["email"] for p in present])
        for person in present:
            records = found.get(person["email"])
            assert records, f"{person['email']} not found"
            assert {r.source.record_id for r in records} <= set(person["systems"][self.vendor])
            for record in records:
                assert record.source.system == self.vendor
                assert record.source.record_id

    async def test_messy_stored_emails_are_keyed_normalized(
        self, contract_connector: Connector, contract_state: SandboxState
    ) -> None:
        messy = [
            p
            for p in self._present(contract_state)
            if any(a.startswith("email_") and a.endswith(f":{self.vendor}") for a in p["anomalies"])
        ]
        if not messy:
            pytest.skip(f"{self.vendor} stores every email clean in this world")
        found = await self._by_email(contract_connector, [p["email"] for p in messy])
        assert set(found) == {p["email"] for p in messy}

    async def test_unknown_and_missing_are_absent(
        self, contract_connector: Connector, contract_state: SandboxState
    ) -> None:
        world = contract_state.world
        missing = [p.email for p in world.people if f"missing:{self.vendor}" in p.anomalies][:5]
        unknown = ["nobody@nowhere.example", "o'brien@quote.example"]
        found = await self._by_email(contract_connector, [*missing, *unknown])
        assert not any(found.get(e) for e in [*missing, *unknown])
        assert await self._by_email(contract_connector, []) == {}

    async def test_by_id_agrees_with_email(
        self, contract_connector: Connector, contract_state: SandboxState
    ) -> None:
        by_id = getattr(contract_connector, _ID_METHOD[contract_connector.domain])
        present = self._present(contract_state)[:10]
        ids = [p["systems"][self.vendor][0] for p in present]
        found = await by_id(ids)
        for person, record_id in zip(present, ids, strict=True):
            got = found.get(record_id)
            assert got, f"{record_id} not found by id"
            records = got if isinstance(got, Sequence) else [got]
            assert all((r.email or "").strip().lower() == person["email"] for r in records)
        assert not (await by_id(["does-not-exist-0"])).get("does-not-exist-0")

    async def test_batch_of_50_is_bounded(
        self, contract_connector: Connector, contract_state: SandboxState
    ) -> None:
        emails = [p["email"] for p in self._present(contract_state)[:50]]
        contract_state.stats.clear()
        await self._by_email(contract_connector, emails)
        bound = math.ceil(50 / contract_connector.email_batch_size)
        for route, calls in contract_state.stats.items():
            assert calls <= bound, f"{route}: {calls} calls for 50 emails (bound {bound})"

    async def test_every_vendor_call_passes_the_call_gate(
        self, contract_connector: Connector, contract_state: SandboxState
    ) -> None:
        """The gateway meters vendor calls (its rate limits) at the VendorClient's
        call gate: a call made around the client would escape the limit."""
        emails = [p["email"] for p in self._present(contract_state)[:50]]
        gated = 0

        async def gate() -> None:
            nonlocal gated
            gated += 1

        contract_state.stats.clear()
        token = call_gate.set(gate)
        try:
            await self._by_email(contract_connector, emails)
        finally:
            call_gate.reset(token)
        served = sum(contract_state.stats.values())
        assert served > 0
        assert gated == served, f"{gated} gated, {served} served"

    async def test_bad_credentials_raise_auth_error(self, contract_base_url: str) -> None:
        cls = connector_class(self.vendor)
        wrong = {k: "wrong" for k in SANDBOX_CREDENTIALS[self.vendor]}
        if "email" in wrong:
            wrong["email"] = "intruder@evil.example"
        connector = cls(ConnectorSettings(base_url=contract_base_url, credentials=wrong))
        try:
            with pytest.raises(UpstreamAuthError) as info:
                await self._by_email(connector, ["someone@example.com"])
            assert "wrong" not in str(info.value)
        finally:
            await connector.close()

    def test_sandbox_answers_unknown_paths_with_4xx(self, contract_base_url: str) -> None:
        response = httpx.get(f"{contract_base_url}/definitely/not/an/api/path")
        assert 400 <= response.status_code < 500


def contract_for(vendor: str) -> type[ConnectorContract]:
    """``TestAcmeContract = contract_for("acme")`` -- the one line a connector needs."""
    return type(f"Test{vendor.title()}Contract", (ConnectorContract,), {"vendor": vendor})
