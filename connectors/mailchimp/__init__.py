"""Mailchimp Marketing API v3: audience members, consent and engagement activity."""

from __future__ import annotations

from connectors.mailchimp.connector import MailchimpConnector, base_url_for_key

__all__ = ["MailchimpConnector", "base_url_for_key"]
