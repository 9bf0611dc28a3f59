"""The connector contract suite against the mailchimp sandbox."""

from __future__ import annotations

from connectors.sdk.testing.contract import contract_for

TestMailchimpContract = contract_for("mailchimp")
