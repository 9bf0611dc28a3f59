"""Stripe (billing): customers with their subscriptions, and invoices.

See :mod:`connectors.stripe.connector` for settings and the endpoints used,
and :mod:`connectors.stripe.sandbox` for the local stand-in of the API.
"""

from __future__ import annotations

from connectors.stripe.connector import StripeConnector

__all__ = ["StripeConnector"]
