"""Salesforce CRM connector: Contacts, Accounts and Opportunities over the REST API."""

from __future__ import annotations

from connectors.salesforce.connector import SalesforceConnector

__all__ = ["SalesforceConnector"]
