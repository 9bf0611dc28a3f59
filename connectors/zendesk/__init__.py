"""Zendesk Support: requesters and their tickets (domain: ticketing)."""

from __future__ import annotations

from connectors.zendesk.connector import ZendeskConnector

__all__ = ["ZendeskConnector"]
