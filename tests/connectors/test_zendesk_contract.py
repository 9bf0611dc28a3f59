"""The connector contract suite against the zendesk sandbox."""

from __future__ import annotations

from connectors.sdk.testing.contract import contract_for

TestZendeskContract = contract_for("zendesk")
