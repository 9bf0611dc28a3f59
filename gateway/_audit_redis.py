"""The Redis sink: events in a stream, the signed head in a key beside it.

One Lua script appends a batch: it compares the head key with the head the
writer chained after and only then ``XADD``\\s the events and sets the head
(compare-and-set, so writers in many processes keep one chain; hashing stays
client-side because Redis Lua has no HMAC-SHA256). The head is a
:class:`~gateway._audit_event.Checkpoint` signed for this stream: a writer
refuses a head that does not verify, a stream with entries but no head, a
head whose stream is empty and a stream that does not end in the event its
head names, instead of starting a new chain or chaining over a cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from gateway._audit_event import (
    GENESIS,
    AuditEvent,
    AuditFormatError,
    AuditKey,
    AuditSinkError,
    Checkpoint,
    chain,
)
from gateway.config import ConfigError

__all__ = [
    "DEFAULT_STREAM",
    "RedisStreamSink",
    "head_key",
    "head_purpose",
    "parse_head",
    "redis_client",
    "text_of",
]

DEFAULT_STREAM = "c360:audit"
_APPEND_SCRIPT = """
local head = redis.call('GET', KEYS[2])
local length = redis.call('XLEN', KEYS[1])
if not head then
  if length > 0 then
    return redis.error_reply('c360 audit: the stream has entries but no head key')
  end
  head = ''
elseif length == 0 then
  return redis.error_reply('c360 audit: the stream is empty but its head key names an event')
end
if head ~= ARGV[1] then return {0, head} end
if head ~= '' then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][2]
  local ok, event = pcall(cjson.decode, last[2] or '')
  if not ok or type(event) ~= 'table' or event['hash'] ~= cjson.decode(head)['hash'] then
    return redis.error_reply('c360 audit: the stream does not end in the event its head names')
  end
end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], '*', 'event', ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[2])
return {1, ARGV[2]}
"""
_MAX_ATTEMPTS = 64
_PROBE_TTL_MS = 10_000


def head_key(stream: str) -> str:
    # Same cluster slot as the stream, which the script needs.
    return f"{stream}:head" if "{" in stream else f"{{{stream}}}:head"


def head_purpose(stream: str) -> bytes:
    return b"c360 audit stream head\n" + stream.encode() + b"\n"


def redis_client(url: str, timeout: float) -> Redis:
    scheme, found, _ = url.partition("://")
    if not found:  # never quote it: what is not a URL may still hold a password
        raise ConfigError("not a Redis URL: use redis://, rediss:// or unix://")
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{scheme!r} URLs are not supported: use redis://, rediss:// or unix://")
    try:
        return Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, client_name="c360-audit"
        )
    except ValueError as exc:
        raise ConfigError(f"not a usable Redis URL: {exc}") from exc


def text_of(value: bytes | str | None) -> str:
    # Only for what this module wrote itself: ASCII JSON and stream ids.
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def parse_head(head: str, key: AuditKey, stream: str) -> Checkpoint | None:
    """The stream's signed head (None: no head key), or AuditSinkError."""
    if not head:
        return None
    try:
        checkpoint = Checkpoint.from_json(head.encode())
    except AuditFormatError as exc:
        raise AuditSinkError(f"the audit head key of {stream} is malformed ({exc})") from exc
    if not checkpoint.verifies(key, head_purpose(stream)):
        raise AuditSinkError(
            f"the audit head key of {stream} does not verify under audit.key (id {key.id}; "
            f"it names key id {checkpoint.key_id}): edited, or another key"
        )
    return checkpoint


class RedisStreamSink:
    """XADD to a stream, chained through a signed head key updated atomically."""

    def __init__(
        self,
        redis_url: str,
        stream: str = DEFAULT_STREAM,
        *,
        key: AuditKey,
        timeout: float = 2.0,
    ) -> None:
        self.stream = stream
        self.head_key = head_key(stream)
        self.key = key
        self._timeout = timeout
        self._client = redis_client(redis_url, timeout)
        self._script = self._client.register_script(_APPEND_SCRIPT)
        self._head = ""  # a guess; the script corrects it

    async def append(self, drafts: Sequence[AuditEvent]) -> list[AuditEvent]:
        expected = self._head
        for _ in range(_MAX_ATTEMPTS):
            checkpoint = parse_head(expected, self.key, self.stream)
            seq, prev = (checkpoint.seq, checkpoint.hash) if checkpoint else (0, GENESIS)
            events = chain(drafts, self.key, seq, prev)
            new_head = self._signed_head(events[-1]).decode()
            args: list[str | bytes] = [expected, new_head, *(e.to_json() for e in events)]
            try:
                done, current = await self._script(keys=[self.stream, self.head_key], args=args)
            except redis_errors.RedisError as exc:
                raise AuditSinkError(f"redis: cannot append to {self.stream}: {exc}") from exc
            current = text_of(current)
            # `current == new_head`: a retried call whose first attempt had landed.
            if done or current == new_head:
                self._head = new_head
                return events
            expected = current
        raise AuditSinkError(f"redis: {self.stream} kept moving; gave up after {_MAX_ATTEMPTS}")

    def _signed_head(self, last: AuditEvent) -> bytes:
        purpose = head_purpose(self.stream)
        return Checkpoint.signed(self.key, purpose, seq=last.seq, hash=last.hash, size=0).to_json()

    async def probe(self, *, write: bool = False) -> str | None:
        """Why an append would fail now, or None; ``write`` also sets a short-lived key."""
        try:
            return await asyncio.wait_for(self._probe(write), self._timeout)
        except TimeoutError:
            return f"redis: no answer within {self._timeout:g} s"
        except redis_errors.RedisError as exc:
            return f"redis: {exc}"
        except AuditSinkError as exc:
            return str(exc)

    async def _probe(self, write: bool) -> str | None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.get(self.head_key)
            pipe.xlen(self.stream)
            if write:
                pipe.set(f"{self.head_key}:probe", "1", px=_PROBE_TTL_MS)
            head, length, *_ = await pipe.execute()
        checkpoint = parse_head(text_of(head), self.key, self.stream)
        if checkpoint is None and length:
            return f"the audit stream {self.stream} has entries but no head key"
        if checkpoint is not None and not length:
            return f"the audit stream {self.stream} is empty but its head names an event"
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
