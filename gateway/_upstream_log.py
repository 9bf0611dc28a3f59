"""One structured log line per upstream failure a caller sees.

Logger ``c360.upstream``, level WARNING, a logfmt message with the same fields
as ``extra`` attributes on the record, for handlers that ship them as JSON::

    upstream_failure connector=stripe operation=customers_by_email
        code=UPSTREAM_RATE_LIMITED request_id=3f2a… retry_after=2.0

``request_id`` is ``-`` for work no request asked for (a background cache
refresh); ``retry_after`` is there only when the error carries one. Nothing
else: never the keys (emails, phones), URLs, credentials, the error message
or the vendor's error body, so a log line cannot carry a customer's data.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from connectors.sdk import UpstreamError

__all__ = ["log_failure", "logfmt"]

log = logging.getLogger("c360.upstream")

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@+")


def logfmt(fields: dict[str, Any]) -> str:
    """``key=value`` pairs; values with anything but plain characters are quoted."""
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if text and all(c in _PLAIN for c in text):
        return text
    # JSON string escapes: quotes, backslashes and every control character
    # (a newline would split the record in two; an escape code could forge one).
    return json.dumps(text)


def log_failure(
    exc: UpstreamError, *, connector: str, operation: str, request_id: str | None
) -> None:
    """Log that ``operation`` of ``connector`` failed with ``exc`` for one caller."""
    if not log.isEnabledFor(logging.WARNING):
        return
    fields: dict[str, Any] = {
        "connector": connector,
        "operation": operation,
        "code": exc.code,
        "request_id": request_id,
    }
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        fields["retry_after"] = round(float(retry_after), 3)
    log.warning("upstream_failure %s", logfmt(fields), extra=fields)
