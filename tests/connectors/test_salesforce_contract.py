"""The connector contract suite against the salesforce sandbox."""

from __future__ import annotations

from connectors.sdk.testing.contract import contract_for

TestSalesforceContract = contract_for("salesforce")
