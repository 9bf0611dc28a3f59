"""The Salesforce connector's plumbing: options, the error policy, query paging."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.salesforce import mapping
from connectors.sdk import (
    ConfigurationError,
    ConnectorSettings,
    ErrorPolicy,
    OAuth2ClientCredentials,
    PageRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
)

__all__ = ["NextRecords", "Options", "SalesforceErrorPolicy", "client_credentials", "read_options"]

_VERSION = re.compile(r"v?(\d{2,3}\.\d)")


@dataclass(frozen=True, slots=True)
class Options:
    api_version: str
    query_batch_size: int | None
    emails_per_query: int
    phones_per_search: int
    token_lifetime: int | None


def _int_option(options: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdecimal():
        raise ConfigurationError(f"salesforce option {name!r} must be an integer")
    number = int(value)
    if not low <= number <= high:
        raise ConfigurationError(f"salesforce option {name!r} must be between {low} and {high}")
    return number


def read_options(options: Mapping[str, Any], *, emails: int, phones: int) -> Options:
    """Validated options; ``emails``/``phones`` are the per-call defaults."""
    version = _VERSION.fullmatch(str(options.get("api_version", "61.0")))
    if version is None:
        raise ConfigurationError("salesforce option 'api_version' must look like '61.0'")
    return Options(
        api_version=version.group(1),
        query_batch_size=_int_option(options, "query_batch_size", 200, 2000),
        emails_per_query=_int_option(options, "emails_per_query", 1, 500) or emails,
        phones_per_search=_int_option(options, "phones_per_search", 1, 200) or phones,
        token_lifetime=_int_option(options, "token_lifetime", 60, 86_400),
    )


def client_credentials(
    settings: ConnectorSettings, options: Options
) -> OAuth2ClientCredentials | None:
    """The connected app's client credentials flow, when ``client_id`` and
    ``client_secret`` are configured and no static ``token`` is; ``None`` means
    "use the static token"."""
    credentials = settings.credentials
    client_id, secret = credentials.get("client_id"), credentials.get("client_secret")
    # An explicit token wins: configs that carry every sandbox credential (the
    # demo, the contract kit, the benchmarks) keep their exact call counts.
    if credentials.get("token") or (not client_id and not secret):
        return None
    if not client_id or not secret:
        raise ConfigurationError("salesforce needs both 'client_id' and 'client_secret'")
    token_url = (
        credentials.get("token_url")
        or settings.options.get("token_url")
        or f"{settings.base_url.rstrip('/')}/services/oauth2/token"
    )
    # Salesforce's token answer has no expires_in (the session timeout is an
    # org setting): keep a token this long, and refresh early on a 401.
    lifetime = options.token_lifetime or 3600
    return OAuth2ClientCredentials(
        str(token_url),
        client_id,
        secret,
        auth_method="post",
        source=mapping.SOURCE,
        default_lifetime=float(lifetime),
    )


def _vendor_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """``(errorCode, message)`` pairs from ``[{"message", "errorCode", "fields"}]``
    or from an OAuth ``{"error", "error_description"}`` body."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return []
    if isinstance(body, Mapping) and "error" in body:
        return [(str(body.get("error")), str(body.get("error_description", "")))]
    if not isinstance(body, list):
        return []
    return [
        (str(item.get("errorCode", "")), str(item.get("message", "")).strip())
        for item in body
        if isinstance(item, Mapping)
    ]


class SalesforceErrorPolicy(ErrorPolicy):
    """Salesforce's error arrays; the daily API limit (403) counts as a rate limit."""

    def vendor_detail(self, response: httpx.Response) -> str | None:
        errors = _vendor_errors(response)
        if not errors:
            return super().vendor_detail(response)
        return "; ".join(f"{code}: {message}" for code, message in errors)[:500]

    def error_for(self, response: httpx.Response) -> UpstreamError | None:
        if response.status_code == 403 and any(
            code == "REQUEST_LIMIT_EXCEEDED" for code, _ in _vendor_errors(response)
        ):
            return UpstreamRateLimited(
                f"{self.source} API request limit reached",
                source=self.source,
                status=403,
                vendor_detail=self.vendor_detail(response),
            )
        return super().error_for(response)


@dataclass(frozen=True, slots=True)
class NextRecords:
    """Follows ``nextRecordsUrl`` while ``done`` is false.

    Only a path on this instance is followed: an absolute URL in a body
    would otherwise receive the bearer token.
    """

    def next(self, body: Any, current: PageRequest) -> PageRequest | None:
        if not isinstance(body, Mapping) or body.get("done") is not False:
            return None
        link = body.get("nextRecordsUrl")
        if not isinstance(link, str) or not link.startswith("/services/data/"):
            raise UpstreamProtocolError(
                "salesforce said the query is not done but sent no usable nextRecordsUrl",
                source=mapping.SOURCE,
            )
        return PageRequest(link, None)
