"""The one error tree of the connector SDK.

Everything a connector raises is a :class:`ConnectorError`; library exceptions
(httpx, json) are converted at the boundary with ``raise ... from exc`` so the
gateway never has to know which HTTP stack or vendor produced them::

    ConnectorError                      base of everything below
    ├── ConfigurationError              bad or missing settings / credentials
    ├── UnsupportedOperation            the connector does not offer this read
    └── UpstreamError                   the vendor call failed  (source, retryable)
        ├── UpstreamTimeout             no answer in time                 retryable
        ├── UpstreamUnavailable         5xx, connection refused or reset  retryable
        ├── UpstreamRateLimited         429 (carries retry_after)         retryable
        ├── UpstreamCircuitOpen         gateway breaker open: no call     retryable
        ├── UpstreamAuthError           401 / 403 from the vendor
        ├── UpstreamBadRequest          any other 4xx
        │   └── UpstreamNotFound        404: often just "no such record"
        └── UpstreamProtocolError       2xx with a body we cannot read

Each ``UpstreamError`` carries ``code``, the GraphQL ``extensions.code`` the
gateway reports. Vendor error bodies are kept on ``vendor_detail`` for logs
only; ``str(error)`` never contains them, so they cannot reach a client.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectorError",
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
]


class ConnectorError(Exception):
    """Base of every error a connector raises."""


class ConfigurationError(ConnectorError):
    """Settings or credentials are missing or invalid."""


class UnsupportedOperation(ConnectorError):
    """The connector does not implement the requested read."""


class UpstreamError(ConnectorError):
    """A call to the vendor failed.

    ``source`` names the connector; ``status`` is the HTTP status when there was
    one; ``vendor_detail`` is the vendor's own error text, for server-side logs.
    """

    code = "UPSTREAM_ERROR"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = None,
        vendor_detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.status = status
        self.vendor_detail = vendor_detail


class UpstreamTimeout(UpstreamError):
    code = "UPSTREAM_TIMEOUT"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    code = "UPSTREAM_UNAVAILABLE"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    code = "UPSTREAM_RATE_LIMITED"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = 429,
        vendor_detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, source=source, status=status, vendor_detail=vendor_detail)
        self.retry_after = retry_after


class UpstreamCircuitOpen(UpstreamError):
    """The gateway's circuit breaker for this source is open: no call was made.

    Raised by the gateway, not by connectors. ``retry_after`` is how long until
    the breaker lets a probe call through, when known.
    """

    code = "CIRCUIT_OPEN"
    retryable = True

    def __init__(self, message: str, *, source: str, retry_after: float | None = None) -> None:
        super().__init__(message, source=source)
        self.retry_after = retry_after


class UpstreamAuthError(UpstreamError):
    code = "UPSTREAM_ERROR"


class UpstreamBadRequest(UpstreamError):
    code = "UPSTREAM_ERROR"


class UpstreamNotFound(UpstreamBadRequest):
    """404: connectors that read by id usually turn this into "absent"."""


class UpstreamProtocolError(UpstreamError):
    code = "UPSTREAM_ERROR"
