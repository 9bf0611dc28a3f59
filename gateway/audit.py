"""Append-only, tamper-evident audit trail of PII reads: no event, no PII.

Every response that carries PII leaves one :class:`AuditEvent` per customer:
who (subject, client id), which customer, which fields and how each was shown
(``{"Customer.email": "full", "Customer.phone": "masked"}``: names, never
values), when, from where, in which operation and request. The response waits
until its events are stored durably; concurrent records share one append and
one fsync. If they cannot be stored, :meth:`AuditTrail.record` raises
:class:`AuditSinkError` and the caller withholds the PII (``on_failure:
deny``, the default) or, only when the operator chose so, serves it anyway
(``allow``). :meth:`AuditTrail.probe` says whether the sink can take events
now, for readiness.

The events form a keyed chain (HMAC-SHA256 under ``audit.key``, see
:mod:`gateway._audit_event`) whose head is also kept, signed, apart from the
trail: a checkpoint file for the file sink (:mod:`gateway._audit_file`), the
head key for the Redis sink (:mod:`gateway._audit_redis`). ``c360 audit
verify`` (:mod:`gateway._audit_cli`) names edits, deletions, insertions,
reordering, a cut tail, an emptied trail and a recomputed chain.

Config (the sink defaults to ``redis`` when a Redis URL is configured here or
in ``cache.redis_url``, else to ``file``)::

    audit:
      key: env:C360_AUDIT_KEY      # required: urlsafe base64 of >= 32 random bytes
      on_failure: deny             # or allow: serve PII unaudited (logged loudly)
      sink: file                   # or redis
      path: /var/log/c360/audit.jsonl
      checkpoint: /var/lib/c360/audit.checkpoint   # default: <path>.checkpoint
      redis_url: env:AUDIT_REDIS_URL
      stream: c360:audit

    AuditError                 the trail cannot record or be read
    ├── AuditSinkError         an append failed: the events were not stored
    └── AuditFormatError       a stored event or checkpoint is malformed
    ConfigError                (gateway.config) the audit section is unusable
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from gateway._audit_cli import audit_main, verify_file, verify_stream
from gateway._audit_event import (
    GENESIS,
    AuditError,
    AuditEvent,
    AuditFormatError,
    AuditKey,
    AuditSinkError,
    new_event,
)
from gateway._audit_file import JsonlSink
from gateway._audit_redis import DEFAULT_STREAM, RedisStreamSink
from gateway._audit_settings import DEFAULT_PATH, AuditSettings, audit_settings
from gateway._audit_verify import PROBLEMS, VerifyResult
from gateway.config import ConfigError

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_STREAM",
    "GENESIS",
    "PROBLEMS",
    "AuditError",
    "AuditEvent",
    "AuditFormatError",
    "AuditKey",
    "AuditSink",
    "AuditSinkError",
    "AuditTrail",
    "JsonlSink",
    "OnFailure",
    "RedisStreamSink",
    "VerifyResult",
    "audit_from_settings",
    "audit_main",
    "verify_file",
    "verify_stream",
]

OnFailure = Literal["deny", "allow"]
logger = logging.getLogger("c360.audit")


class AuditSink(Protocol):
    async def append(self, drafts: Sequence[AuditEvent]) -> list[AuditEvent]:
        """Chain ``drafts`` after the stored head, store them durably, return them."""
        ...

    async def probe(self, *, write: bool = False) -> str | None:
        """Why an append would fail now, or None; ``write`` tests a write too."""
        ...

    async def aclose(self) -> None: ...


def _now_iso(clock: Callable[[], float]) -> str:
    moment = datetime.fromtimestamp(clock(), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditTrail:
    """Records audit events; concurrent records share one append (and one fsync)."""

    def __init__(
        self,
        sink: AuditSink,
        *,
        clock: Callable[[], float] = time.time,
        max_batch: int = 256,
        on_failure: OnFailure = "deny",
    ) -> None:
        if on_failure not in ("deny", "allow"):
            raise ValueError("on_failure must be 'deny' or 'allow'")
        self.sink = sink
        self.on_failure: OnFailure = on_failure
        self._clock = clock
        self._max_batch = max_batch
        self._pending: list[tuple[AuditEvent, asyncio.Future[AuditEvent]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        # Why the last append failed, until one succeeds or a write probe passes.
        self._failure: str | None = None

    async def record(
        self,
        *,
        subject: str,
        customer_id: str,
        fields: Mapping[str, str],
        client_id: str | None = None,
        operation: str | None = None,
        request_id: str | None = None,
        source_ip: str | None = None,
    ) -> AuditEvent:
        """Append one event and return it once it is stored durably.

        ``fields`` maps ``Type.field`` names to how each was shown, ``"full"``
        or ``"masked"``. Raises ValueError for arguments that could carry a PII
        value, AuditSinkError when the event could not be stored.
        """
        if self._closed:
            raise AuditError("the audit trail is closed")
        draft = new_event(
            time=_now_iso(self._clock),
            subject=subject,
            customer_id=customer_id,
            fields=fields,
            client_id=client_id,
            operation=operation,
            request_id=request_id,
            source_ip=source_ip,
        )
        future: asyncio.Future[AuditEvent] = asyncio.get_running_loop().create_future()
        self._pending.append((draft, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                events = await self.sink.append([draft for draft, _ in batch])
            except BaseException as exc:
                stopping = not isinstance(exc, Exception)  # cancelled, interrupted
                if stopping:
                    # This task ends here: nobody may wait forever, nor take it as stored.
                    batch += self._pending
                    self._pending.clear()
                self._fail(batch, str(exc) or type(exc).__name__, exc)
                if stopping:
                    raise
                continue
            if len(events) != len(batch):
                self._fail(batch, f"the sink stored {len(events)} of {len(batch)} events")
                continue
            self._failure = None
            for (_, future), event in zip(batch, events, strict=True):
                if not future.done():  # the caller may have been cancelled
                    future.set_result(event)

    def _fail(
        self,
        batch: list[tuple[AuditEvent, asyncio.Future[AuditEvent]]],
        reason: str,
        cause: BaseException | None = None,
    ) -> None:
        self._failure = reason
        for _, future in batch:
            if not future.done():
                error = AuditSinkError(reason)
                error.__cause__ = cause
                future.set_exception(error)

    async def probe(self) -> str | None:
        """None when the sink can take events now, else a short reason (readiness)."""
        if self._closed:
            return "the audit trail is closed"
        failed = self._failure
        # After a failed append, a probe also tries a write: traffic may never
        # come back to a sink reported down, so the probe must see it recover.
        try:
            reason = await self.sink.probe(write=failed is not None)
        except Exception as exc:  # a sink's bug must not take readiness down with a 500
            return f"the audit probe failed: {exc!r}"
        if reason is not None:
            return reason
        if failed is not None and self._failure == failed:
            self._failure = None
        return None

    async def aclose(self) -> None:
        """Finish pending appends, then close the sink."""
        self._closed = True
        if self._flusher is not None:
            # Its callers have heard how it ended; closing goes on regardless.
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.sink.aclose()


def _build(settings: AuditSettings) -> AuditTrail:
    sink: AuditSink
    if settings.sink == "file":
        sink = JsonlSink(settings.path, key=settings.key, checkpoint=settings.checkpoint)
    else:
        assert settings.redis_url is not None
        try:
            sink = RedisStreamSink(settings.redis_url, settings.stream, key=settings.key)
        except ConfigError as exc:
            raise ConfigError(f"{settings.redis_where}: {exc} (or set audit.sink: file)") from exc
    if settings.on_failure == "allow":
        logger.warning(
            "audit.on_failure is 'allow': PII WILL BE SERVED WITHOUT AN AUDIT EVENT whenever "
            "the audit trail cannot store one"
        )
    return AuditTrail(sink, on_failure=settings.on_failure)


def audit_from_settings(raw: Mapping[str, Any]) -> AuditTrail:
    """Build the trail from the whole config document (its ``audit:`` section)."""
    return _build(audit_settings(raw))
