"""The c360 connector SDK: what an integrator builds a connector on.

Start from :mod:`connectors.sdk.base` (one domain base class, one required
method), map vendor JSON into :mod:`connectors.sdk.models`, call the vendor
through :class:`~connectors.sdk.http.VendorClient`, raise only
:mod:`connectors.sdk.errors`, and run the contract kit
(:mod:`connectors.sdk.testing`) against your sandbox.
"""

from __future__ import annotations

from connectors.sdk.auth import OAuth2ClientCredentials
from connectors.sdk.base import (
    BillingConnector,
    Connector,
    ConnectorSettings,
    CrmConnector,
    MarketingConnector,
    TicketingConnector,
    chunked,
    gather_chunks,
    group_by,
    normalize_email,
    normalize_phone,
)
from connectors.sdk.errors import (
    ConfigurationError,
    ConnectorError,
    UnsupportedOperation,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamCircuitOpen,
    UpstreamError,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from connectors.sdk.http import (
    CursorPaginator,
    ErrorPolicy,
    NextUrlPaginator,
    OffsetPaginator,
    PageRequest,
    VendorClient,
    make_transport,
)
from connectors.sdk.models import (
    Consent,
    Domain,
    EngagementEvent,
    Invoice,
    MarketingMember,
    Opportunity,
    Organization,
    Page,
    Person,
    SourceRef,
    Subscription,
    Ticket,
)
from connectors.sdk.pii import PiiKind, PiiRule, pii, pii_attributes, pii_values

__all__ = [
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
]
