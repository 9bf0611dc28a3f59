"""The connector contract suite against the stripe sandbox."""

from __future__ import annotations

from connectors.sdk.testing.contract import contract_for

TestStripeContract = contract_for("stripe")
