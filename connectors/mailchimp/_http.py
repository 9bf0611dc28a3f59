"""Mailchimp's auth schemes, data-center rules and error-body reading.

Mailchimp accepts HTTP Basic with any username and the API key as password,
or ``Authorization: Bearer`` with an OAuth access token. Each account lives in
one data center (``us1``, ``us21`` …): an API key ends in ``-<dc>``, the API
host is ``<dc>.api.mailchimp.com`` and the web app is ``<dc>.admin.mailchimp.com``.
Errors are problem JSON: ``{type, title, status, detail, instance, errors?}``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Generator

import httpx

from connectors.sdk import ConfigurationError, ErrorPolicy

__all__ = [
    "MailchimpBasicAuth",
    "MailchimpBearerAuth",
    "MailchimpErrorPolicy",
    "base_url_for_key",
    "data_center_of_key",
    "data_center_of_url",
]

_DC = re.compile(r"^[a-z]{2,3}\d{1,3}$")


def data_center_of_key(api_key: str) -> str | None:
    """The ``dc`` suffix of an API key (``…-us21`` -> ``us21``), if it has one."""
    _, sep, dc = api_key.strip().rpartition("-")
    return dc if sep and _DC.match(dc) else None


def data_center_of_url(url: str) -> str | None:
    """The ``dc`` of a ``https://<dc>.api.mailchimp.com`` base URL, if it is one."""
    host = httpx.URL(url).host
    dc, _, rest = host.partition(".")
    return dc if rest == "api.mailchimp.com" and _DC.match(dc) else None


def base_url_for_key(api_key: str) -> str:
    """The API base URL an API key belongs to: ``https://<dc>.api.mailchimp.com``."""
    dc = data_center_of_key(api_key)
    if dc is None:
        raise ConfigurationError("a Mailchimp API key ends in '-<data center>', e.g. '…-us21'")
    return f"https://{dc}.api.mailchimp.com"


class MailchimpBasicAuth(httpx.Auth):
    """Basic auth: Mailchimp ignores the username and reads the key as password."""

    def __init__(self, api_key: str) -> None:
        token = base64.b64encode(f"c360:{api_key}".encode()).decode("ascii")
        self._header = f"Basic {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never print the secret
        return "MailchimpBasicAuth(***)"


class MailchimpBearerAuth(httpx.Auth):
    """OAuth access token (Mailchimp's tokens do not expire and have no scopes)."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never print the secret
        return "MailchimpBearerAuth(***)"


class MailchimpErrorPolicy(ErrorPolicy):
    """Reads ``title``/``detail`` (and field ``errors``) out of problem JSON."""

    def vendor_detail(self, response: httpx.Response) -> str | None:
        try:
            body = json.loads(response.content)
        except ValueError:
            return super().vendor_detail(response)
        if not isinstance(body, dict) or not ("title" in body or "detail" in body):
            return super().vendor_detail(response)
        text = f"{body.get('title') or 'Error'}: {body.get('detail') or ''}".strip()
        errors = body.get("errors")
        if isinstance(errors, list):
            fields = [
                f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict)
            ]
            if fields:
                text += " [" + "; ".join(fields) + "]"
        if body.get("instance"):
            text += f" (instance {body['instance']})"
        return text[:500]
