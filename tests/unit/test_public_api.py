"""Pins each package's public names: changing them is a deliberate API change."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = {
    "gateway": [],
    "schema": ["Customer", "Query", "SystemRefInput", "build_schema"],
    "connectors": [],
    "connectors.sdk": [
        "BillingConnector",
        "ConfigurationError",
        "Connector",
        "ConnectorError",
        "ConnectorSettings",
        "Consent",
        "CrmConnector",
        "CursorPaginator",
        "Domain",
        "EngagementEvent",
        "ErrorPolicy",
        "Invoice",
        "MarketingConnector",
        "MarketingMember",
        "NextUrlPaginator",
        "OAuth2ClientCredentials",
        "OffsetPaginator",
        "Opportunity",
        "Organization",
        "Page",
        "PageRequest",
        "Person",
        "PiiKind",
        "PiiRule",
        "SourceRef",
        "Subscription",
        "Ticket",
        "TicketingConnector",
        "UnsupportedOperation",
        "UpstreamAuthError",
        "UpstreamBadRequest",
        "UpstreamCircuitOpen",
        "UpstreamError",
        "UpstreamNotFound",
        "UpstreamProtocolError",
        "UpstreamRateLimited",
        "UpstreamTimeout",
        "UpstreamUnavailable",
        "VendorClient",
        "chunked",
        "gather_chunks",
        "group_by",
        "make_transport",
        "normalize_email",
        "normalize_phone",
        "pii",
        "pii_attributes",
        "pii_values",
    ],
    "connectors.sdk.testing": [],
    "schema.extensions": ["HardeningLimits", "hardening_extensions", "limits_from_mapping"],
    "connectors.sdk.testing.contract": ["ConnectorContract", "connector_class", "contract_for"],
    "connectors.salesforce": ["SalesforceConnector"],
    "connectors.zendesk": ["ZendeskConnector"],
    "connectors.stripe": ["StripeConnector"],
    "connectors.mailchimp": ["MailchimpConnector", "base_url_for_key"],
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_public_names_are_pinned(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PACKAGES[package])


def _public_modules():
    for package in PACKAGES:
        module = importlib.import_module(package)
        yield package
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if not info.name.startswith("_"):
                yield f"{package}.{info.name}"


@pytest.mark.parametrize("name", sorted(set(_public_modules())))
def test_every_public_module_declares_what_it_exports(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported}"


def test_connectors_never_import_strawberry():
    import sys

    for name in sorted(set(_public_modules())):
        if name.startswith("connectors"):
            importlib.import_module(name)
    source_of = {m: getattr(sys.modules[m], "__file__", "") or "" for m in sys.modules}
    for module, path in source_of.items():
        if module.startswith("connectors") and path:
            with open(path, encoding="utf-8") as handle:
                assert "strawberry" not in handle.read(), module
