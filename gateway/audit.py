"""Append-only, tamper-evident audit trail of PII reads.

Every response that carries PII fields leaves one :class:`AuditEvent` per
customer: who (subject, client id), which customer, which fields (names only,
never values), when, from where, in which operation and request. Events form
a hash chain: each one carries the SHA-256 of the previous one (the first
carries 64 zeros), over canonical JSON (sorted keys, no whitespace), so
``c360 audit verify`` finds the first edited, deleted, inserted or reordered
event. Deleting events from the end of a file leaves a shorter valid chain;
the Redis sink also keeps the head in a separate key, and the verdict prints
the head hash so operators can anchor it elsewhere.

Config (``audit:`` section; the sink defaults to ``redis`` when a Redis URL
is configured here or in ``cache.redis_url``, else to ``file``)::

    audit:
      sink: file              # or redis
      path: /var/log/c360/audit.jsonl
      redis_url: env:AUDIT_REDIS_URL
      stream: c360:audit
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gateway.config import ConfigError, resolve_secret

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_STREAM",
    "GENESIS",
    "AuditError",
    "AuditEvent",
    "AuditFormatError",
    "AuditSink",
    "AuditSinkError",
    "AuditTrail",
    "JsonlSink",
    "RedisStreamSink",
    "VerifyResult",
    "audit_from_settings",
    "audit_main",
    "verify_file",
    "verify_stream",
]

GENESIS = "0" * 64
DEFAULT_STREAM = "c360:audit"
DEFAULT_PATH = "c360-audit.jsonl"
_OPTIONAL = ("client_id", "operation", "request_id", "source_ip")
_KEYS = frozenset(
    ("time", "subject", "customer_id", "fields", "seq", "prev_hash", "hash", *_OPTIONAL)
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Field names, optionally dotted paths (`Customer.email`, `marketing.consents`):
# anything else is likely a value that must never reach the trail.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class AuditError(Exception):
    """The audit trail cannot record or be read."""


class AuditSinkError(AuditError):
    """A sink could not append: the events were not recorded."""


class AuditFormatError(AuditError):
    """A stored event is malformed or does not match its own hash."""


def _canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    time: str
    subject: str
    client_id: str | None
    customer_id: str
    fields: tuple[str, ...]
    operation: str | None
    request_id: str | None
    source_ip: str | None
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""

    def digest(self) -> str:
        """SHA-256 over the canonical JSON of every attribute but ``hash``."""
        body = asdict(self)
        del body["hash"]
        return hashlib.sha256(_canonical(body)).hexdigest()

    def chained(self, seq: int, prev_hash: str) -> AuditEvent:
        linked = replace(self, seq=seq, prev_hash=prev_hash, hash="")
        return replace(linked, hash=linked.digest())

    def to_json(self) -> bytes:
        return _canonical(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> AuditEvent:
        """Parse one stored event, checking its shape, canonical form and hash."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise AuditFormatError("not valid JSON (a truncated or edited line)") from exc
        if not isinstance(data, dict) or set(data) != _KEYS:
            raise AuditFormatError("not an audit event (wrong keys)")
        fields = data["fields"]
        wrong = [k for k in ("time", "subject", "customer_id") if not isinstance(data[k], str)]
        wrong += [k for k in _OPTIONAL if data[k] is not None and not isinstance(data[k], str)]
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            wrong.append("fields")
        if type(data["seq"]) is not int or data["seq"] < 1:
            wrong.append("seq")
        wrong += [k for k in ("prev_hash", "hash") if not _HEX64.fullmatch(str(data[k]))]
        if wrong:
            raise AuditFormatError(f"malformed {', '.join(wrong)}")
        event = cls(**{**data, "fields": tuple(fields)})
        if event.digest() != event.hash:
            raise AuditFormatError("hash does not match the event's content: it was edited")
        if event.to_json() != raw:
            raise AuditFormatError("not in canonical form: the line was edited")
        return event


def _chain(drafts: Sequence[AuditEvent], seq: int, prev_hash: str) -> list[AuditEvent]:
    events = []
    for draft in drafts:
        seq += 1
        event = draft.chained(seq, prev_hash)
        prev_hash = event.hash
        events.append(event)
    return events


class AuditSink(Protocol):
    async def append(self, drafts: Sequence[AuditEvent]) -> list[AuditEvent]:
        """Chain ``drafts`` after the stored head, store them durably, return them."""
        ...

    async def aclose(self) -> None: ...


class JsonlSink:
    """One canonical JSON event per line; safe for several processes on one file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def append(self, drafts: Sequence[AuditEvent]) -> list[AuditEvent]:
        return await asyncio.to_thread(self._append, list(drafts))

    async def aclose(self) -> None:
        return None

    def _append(self, drafts: list[AuditEvent]) -> list[AuditEvent]:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditSinkError(f"cannot open audit file {self.path}: {exc}") from exc
        try:
            # flock (not lockf) so that threads of one process exclude each other too;
            # holding it across read-head + append + fsync keeps the chain linear.
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            seq, head = _file_head(fd, size, self.path)
            events = _chain(drafts, seq, head)
            data = b"".join(event.to_json() + b"\n" for event in events)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                # Never leave half a line behind: it would block every later append.
                os.ftruncate(fd, size)
                raise AuditSinkError(f"cannot append to audit file {self.path}: {exc}") from exc
            if size == 0:
                _fsync_directory(self.path.parent)
            return events
        finally:
            os.close(fd)  # also releases the lock


def _file_head(fd: int, size: int, path: Path) -> tuple[int, str]:
    if size == 0:
        return 0, GENESIS
    tail = b""
    offset = size
    while offset > 0 and tail.count(b"\n") < 2:
        step = min(4096, offset)
        offset -= step
        tail = os.pread(fd, step, offset) + tail
    if not tail.endswith(b"\n"):
        raise AuditSinkError(f"{path} ends in an unterminated line; run `c360 audit verify`")
    try:
        last = AuditEvent.from_json(tail[:-1].rpartition(b"\n")[2])
    except AuditFormatError as exc:
        raise AuditSinkError(f"{path}: the last event is broken ({exc})") from exc
    return last.seq, last.hash


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Compare-and-set on the head key, so writers in many processes keep one chain;
# hashing stays client-side because Redis Lua has no SHA-256.
_APPEND_SCRIPT = """
local head = redis.call('GET', KEYS[2])
if not head then
  if redis.call('XLEN', KEYS[1]) > 0 then
    return redis.error_reply('c360 audit: the stream has entries but no head key')
  end
  head = ''
end
if head ~= ARGV[1] then return {0, head} end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], '*', 'event', ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[2])
return {1, ARGV[2]}
"""
_MAX_ATTEMPTS = 64


def _head_key(stream: str) -> str:
    # Same cluster slot as the stream, which the script needs.
    return f"{stream}:head" if "{" in stream else f"{{{stream}}}:head"


def _redis_client(url: str, timeout: float) -> Redis:
    scheme = url.partition("://")[0]
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{scheme!r} URLs are not supported: use redis://, rediss:// or unix://")
    try:
        return Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, client_name="c360-audit"
        )
    except ValueError as exc:
        raise ConfigError(f"not a usable Redis URL: {exc}") from exc


def _parse_head(head: str) -> tuple[int, str]:
    if not head:
        return 0, GENESIS
    seq, _, digest = head.partition(":")
    if not seq.isdigit() or not _HEX64.fullmatch(digest):
        raise AuditSinkError(f"the audit head key holds {head[:80]!r}, not 'seq:hash'")
    return int(seq), digest


class RedisStreamSink:
    """XADD to a stream, chained through a ``seq:hash`` head key updated atomically."""

    def __init__(
        self, redis_url: str, stream: str = DEFAULT_STREAM, *, timeout: float = 2.0
    ) -> None:
        self.stream = stream
        self.head_key = _head_key(stream)
        self._client = _redis_client(redis_url, timeout)
        self._script = self._client.register_script(_APPEND_SCRIPT)
        self._head = ""  # a guess; the script corrects it

    async def append(self, drafts: Sequence[AuditEvent]) -> list[AuditEvent]:
        expected = self._head
        for _ in range(_MAX_ATTEMPTS):
            events = _chain(drafts, *_parse_head(expected))
            new_head = f"{events[-1].seq}:{events[-1].hash}"
            args: list[str | bytes] = [expected, new_head, *(e.to_json() for e in events)]
            try:
                done, current = await self._script(keys=[self.stream, self.head_key], args=args)
            except redis_errors.RedisError as exc:
                raise AuditSinkError(f"redis: cannot append to {self.stream}: {exc}") from exc
            current = _text_of(current)
            # `current == new_head`: a retried call whose first attempt had landed.
            if done or current == new_head:
                self._head = new_head
                return events
            expected = current
        raise AuditSinkError(f"redis: {self.stream} kept moving; gave up after {_MAX_ATTEMPTS}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _now_iso(clock: Callable[[], float]) -> str:
    moment = datetime.fromtimestamp(clock(), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditTrail:
    """Records audit events; concurrent records share one append (and one fsync)."""

    def __init__(
        self, sink: AuditSink, *, clock: Callable[[], float] = time.time, max_batch: int = 256
    ) -> None:
        self.sink = sink
        self._clock = clock
        self._max_batch = max_batch
        self._pending: list[tuple[AuditEvent, asyncio.Future[AuditEvent]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def record(
        self,
        *,
        subject: str,
        customer_id: str,
        fields: Iterable[str],
        client_id: str | None = None,
        operation: str | None = None,
        request_id: str | None = None,
        source_ip: str | None = None,
    ) -> AuditEvent:
        """Append one event and return it once it is stored durably."""
        if self._closed:
            raise AuditError("the audit trail is closed")
        names = tuple(sorted({fields} if isinstance(fields, str) else set(fields)))
        if not names or not all(_FIELD.fullmatch(name) for name in names):
            raise ValueError(f"audit fields must be field names, got {names!r}")
        if not customer_id or "@" in customer_id:
            raise ValueError("audit customer_id must be the gateway's id, never an email")
        draft = AuditEvent(
            time=_now_iso(self._clock),
            subject=subject,
            client_id=client_id,
            customer_id=customer_id,
            fields=names,
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
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        error = AuditSinkError(str(exc))
                        error.__cause__ = exc
                        future.set_exception(error)
                continue
            for (_, future), event in zip(batch, events, strict=True):
                if not future.done():  # the caller may have been cancelled
                    future.set_result(event)

    async def aclose(self) -> None:
        """Finish pending appends, then close the sink."""
        self._closed = True
        if self._flusher is not None:
            await self._flusher
        await self.sink.aclose()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int  # events verified before the first broken one (all of them if ok)
    first_broken_line: int | None  # 1-based line (file) or entry position (stream)
    reason: str
    head_hash: str = GENESIS  # hash of the last verified event


class _Checker:
    def __init__(self, watch_seq: int = 0) -> None:
        self.seq = 0
        self.head = GENESIS
        self.watch_seq = watch_seq
        self.watched: str | None = None

    def feed(self, raw: bytes) -> str | None:
        """Return why ``raw`` breaks the chain, or None and advance."""
        try:
            event = AuditEvent.from_json(raw)
        except AuditFormatError as exc:
            return str(exc)
        if event.prev_hash != self.head:
            before = "the genesis hash" if self.seq == 0 else f"event {self.seq}'s hash"
            return f"prev_hash does not match {before}: an event was deleted, inserted or moved"
        if event.seq != self.seq + 1:
            return f"seq {event.seq} does not follow seq {self.seq}"
        self.seq, self.head = event.seq, event.hash
        if event.seq == self.watch_seq:
            self.watched = event.hash
        return None

    def broken(self, position: int, reason: str) -> VerifyResult:
        return VerifyResult(False, self.seq, position, reason, self.head)

    def intact(self) -> VerifyResult:
        return VerifyResult(True, self.seq, None, "chain intact", self.head)


def verify_file(path: str | os.PathLike[str]) -> VerifyResult:
    """Check a JSON-lines trail and report its first broken line."""
    checker = _Checker()
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.endswith(b"\n"):
                    return checker.broken(number, "unterminated line (a truncated write)")
                reason = checker.feed(line[:-1])
                if reason is not None:
                    return checker.broken(number, reason)
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc
    return checker.intact()


def _text_of(value: bytes | str | None) -> str:
    # Only for what this module wrote itself: ASCII JSON, stream ids, `seq:hash`.
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


async def verify_stream(
    redis_url: str, stream: str = DEFAULT_STREAM, *, page: int = 500
) -> VerifyResult:
    """Check a Redis stream trail, including that its tail matches the head key."""
    client = _redis_client(redis_url, 5.0)
    try:
        # The head is read first: writers move stream and head together, so the
        # stream read afterwards must contain the event the head names.
        raw_head = await client.get(_head_key(stream))
        head_seq, head_hash = _parse_head(_text_of(raw_head))
        checker = _Checker(head_seq)
        position, start = 0, "-"
        while True:
            entries = await client.xrange(stream, min=start, max="+", count=page) or []
            for entry_id, values in entries:
                position += 1
                reason = checker.feed(_text_of((values or {}).get(b"event")).encode())
                if reason is not None:
                    return checker.broken(position, f"entry {_text_of(entry_id)}: {reason}")
            if len(entries) < page:
                break
            start = f"({_text_of(entries[-1][0])}"
    except (redis_errors.RedisError, AuditSinkError) as exc:
        raise AuditError(f"cannot read {stream}: {exc}") from exc
    finally:
        await client.aclose()
    if head_seq == 0 and checker.seq > 0:
        return checker.broken(position + 1, "the stream has events but its head key is gone")
    if head_seq and checker.watched != head_hash:
        return checker.broken(
            position + 1, f"event {head_seq}, named by the head key, is gone: events were deleted"
        )
    return checker.intact()


def _usage() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c360 audit", description="check the PII audit trail")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify the hash chain; exit 0 ok, 1 broken")
    verify.add_argument("file", nargs="?", help="a JSON-lines audit file")
    verify.add_argument("--redis", metavar="URL", help="verify a Redis stream instead")
    verify.add_argument("--stream", default=DEFAULT_STREAM)
    return parser


def audit_main(argv: Sequence[str]) -> int:
    """``c360 audit verify FILE | --redis URL [--stream S]``: 0 ok, 1 broken, 2 usage."""
    parser = _usage()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 on --help
        return exc.code if isinstance(exc.code, int) else 2
    if (args.file is None) == (args.redis is None):
        parser.print_usage(sys.stderr)
        print("c360 audit verify: give either FILE or --redis URL", file=sys.stderr)
        return 2
    try:
        if args.file is not None:
            where, result = args.file, verify_file(args.file)
        else:
            where, result = args.stream, asyncio.run(verify_stream(args.redis, args.stream))
    except (AuditError, ConfigError) as exc:
        print(f"c360 audit verify: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        print(f"OK {where}: {result.events} events, chain intact, head {result.head_hash}")
        return 0
    print(
        f"BROKEN {where}: at {'line' if args.file else 'entry'} {result.first_broken_line}: "
        f"{result.reason} ({result.events} events verified before it)"
    )
    return 1


def _text(section: Mapping[str, Any], name: str, where: str = "audit") -> str | None:
    value = section.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{name} must be a string")
    return value


def audit_from_settings(raw: Mapping[str, Any]) -> AuditTrail:
    """Build the trail from the whole config document (its ``audit:`` section)."""
    section = raw.get("audit") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("audit must be a mapping")
    unknown = sorted(set(section) - {"sink", "path", "redis_url", "stream"})
    if unknown:
        raise ConfigError(f"audit: unknown setting(s) {', '.join(unknown)}")
    url, where = _text(section, "redis_url"), "audit.redis_url"
    cache = raw.get("cache")
    if url is None and "sink" not in section and isinstance(cache, Mapping):
        url, where = _text(cache, "redis_url", "cache"), "cache.redis_url"
    if url is not None and url.startswith(("env:", "file:")):
        url = resolve_secret(url, where=where)
    sink = section.get("sink") or ("redis" if url else "file")
    if sink == "file":
        path = Path(_text(section, "path") or DEFAULT_PATH)
        if not path.parent.is_dir():
            raise ConfigError(f"audit.path: directory {path.parent} does not exist")
        return AuditTrail(JsonlSink(path))
    if sink != "redis":
        raise ConfigError("audit.sink must be 'file' or 'redis'")
    if url is None:
        raise ConfigError("audit.redis_url is required when audit.sink is 'redis'")
    if "path" in section:
        raise ConfigError("audit.path applies to the file sink only")
    try:
        sink_r = RedisStreamSink(url, _text(section, "stream") or DEFAULT_STREAM)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc} (or set audit.sink: file)") from exc
    return AuditTrail(sink_r)
