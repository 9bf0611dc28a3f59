"""The file sink: one event per line, and a signed checkpoint file beside it.

Each append, under an exclusive ``flock`` of the trail (so threads and
processes sharing the file keep one chain):

1. reads the checkpoint and checks its signature (none yet: only for an
   empty trail, and one naming nothing is written first);
2. checks the trail still holds what the checkpoint names -- at least
   ``size`` bytes, the event ending there is the checkpoint's -- and that
   it ends in a whole event whose MAC verifies: a cut, emptied or rewritten
   trail stops every append instead of growing a new chain;
3. appends the batch and fsyncs it (a failed write is cut off again);
4. writes the new checkpoint to a temporary file, fsyncs it and renames it
   over the old one -- at most every :data:`CHECKPOINT_EVERY` seconds: a
   batch that comes sooner leaves it to a timer that writes it that long
   after the last batch at the latest. A checkpoint written with a batch
   that fails cuts the batch off again: the caller is told it was not stored.

Steps 1-2 are skipped when the trail and its checkpoint are exactly as this
process left them (same file, size and checkpoint file): one ``fstat`` and
one ``stat`` instead of reading and verifying both. Whatever happens to the
file, this process remembers the last event it wrote: a trail that ends
before it (cut, or swapped for an older copy) stops every append, so a
checkpoint that is not yet written leaves no gap an attacker can use while
the writer runs. Under load this makes one fsync per batch, not two.

A crash after 3 leaves events after the checkpoint; they still carry valid
MACs, and the next append moves the checkpoint past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway._audit_event import (
    GENESIS,
    MAX_CHECKPOINT,
    AuditEvent,
    AuditFormatError,
    AuditKey,
    AuditSinkError,
    Checkpoint,
    chain,
)

__all__ = ["CHECKPOINT_EVERY", "CHECKPOINT_PURPOSE", "JsonlSink", "read_checkpoint"]

CHECKPOINT_PURPOSE = b"c360 audit file checkpoint\n"
#: Seconds between checkpoint writes under load (each costs an fsync).
CHECKPOINT_EVERY = 0.2
_MAX_LINE = 1 << 20
logger = logging.getLogger("c360.audit")


@dataclass(frozen=True, slots=True)
class _Left:
    """The trail as this process last left it: the file, its end, the head there."""

    file: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
    checkpoint: tuple[int, int, int] | None  # st_ino, st_size, st_mtime_ns of its file
    seq: int
    hash: str


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint stored at ``path``; None when there is none (unsigned: check it)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CHECKPOINT + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditSinkError(f"cannot read the audit checkpoint {path}: {exc}") from exc
    try:
        return Checkpoint.from_json(raw)
    except AuditFormatError as exc:
        raise AuditSinkError(f"{path}: {exc}") from exc


def _line_ending_at(fd: int, end: int, path: Path) -> bytes:
    """The line whose newline is the byte before ``end``, without it."""
    if os.pread(fd, 1, end - 1) != b"\n":
        raise AuditSinkError(f"{path} does not end in a whole event; run `c360 audit verify`")
    start = end - 1
    chunk = b""
    while start > 0 and b"\n" not in chunk:
        if end - start > _MAX_LINE:
            raise AuditSinkError(f"{path}: an event longer than {_MAX_LINE} bytes")
        step = min(4096, start)
        start -= step
        chunk = os.pread(fd, step, start)
    data = os.pread(fd, end - 1 - start, start)
    return data.rpartition(b"\n")[2]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _NotRenamed(AuditSinkError):
    """The new checkpoint was not put in place: the old one stands."""


class JsonlSink:
    """Appends to a JSON-lines file; safe for several processes on one file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: AuditKey,
        checkpoint: str | os.PathLike[str] | None = None,
        probe_timeout: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.probe_timeout = probe_timeout
        self.checkpoint = Path(checkpoint) if checkpoint else Path(f"{self.path}.checkpoint")
        self.key = key
        self._lock = threading.Lock()  # this object's state, across the threads appending
        self._left: _Left | None = None
        self._wrote = (0, GENESIS)  # the last event this process wrote: seq, hash
        self._due: Checkpoint | None = None  # written by the timer unless a batch comes first
        self._put_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    async def append(self, drafts: Sequence[AuditEvent]) -> list[AuditEvent]:
        events = await asyncio.to_thread(self._append, list(drafts))
        if self._due is not None and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(CHECKPOINT_EVERY, self._checkpoint_later, loop)
        return events

    def _checkpoint_later(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        task = loop.create_task(asyncio.to_thread(self._put_due))
        task.add_done_callback(_retrieved)

    async def probe(self, *, write: bool = False) -> str | None:
        """Why an append would fail now, or None; ``write`` also rewrites the checkpoint."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._probe, write), self.probe_timeout)
        except TimeoutError:
            return (
                f"{self.path} did not answer within {self.probe_timeout:g} s (locked? slow disk?)"
            )

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.to_thread(self._put_due)

    def _put_due(self) -> None:
        """Write the checkpoint a batch left to the timer, if the trail still ends there."""
        with self._lock:
            due = self._due
            if due is None:
                return
            try:
                fd = self._open(0)
            except AuditSinkError as exc:
                logger.error("audit checkpoint not written: %s", exc)
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_size == due.size:
                    self._put(due)
                    self._put_at = time.monotonic()
                    self._remember(fd, due.seq, due.hash)
                # Else another process appended since: its checkpoint covers ours.
                self._due = None
            except AuditSinkError as exc:
                logger.error("audit checkpoint not written: %s", exc)
            finally:
                os.close(fd)

    def _remember(self, fd: int, seq: int, hash: str) -> None:
        info = os.fstat(fd)
        self._left = _Left(_file(info), _stat(self.checkpoint),
                           seq, hash)  # fmt: skip

    def _open(self, flags: int) -> int:
        try:
            return os.open(self.path, flags | os.O_RDWR | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditSinkError(f"cannot open audit file {self.path}: {exc}") from exc

    def _append(self, drafts: list[AuditEvent]) -> list[AuditEvent]:
        try:
            fd = self._open(0)
        except AuditSinkError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise
            # Never create a file in place of one that its checkpoint says held events.
            reason = self._missing()
            try:
                fd = self._open(0)  # another process may have just created it
            except AuditSinkError:
                if reason is not None:
                    raise AuditSinkError(reason) from exc
                fd = self._open(os.O_CREAT)
        with self._lock:
            try:
                return self._append_locked(fd, drafts)
            finally:
                os.close(fd)  # also releases the flock

    def _append_locked(self, fd: int, drafts: list[AuditEvent]) -> list[AuditEvent]:
        # flock (not lockf): threads of one process exclude each other too.
        fcntl.flock(fd, fcntl.LOCK_EX)
        info = os.fstat(fd)
        size = info.st_size
        left = self._left
        if (
            left is not None
            and left.file == _file(info)
            and (left.checkpoint == _stat(self.checkpoint))
        ):
            seq, head = left.seq, left.hash  # as this process left it: nothing to re-read
        else:
            seq, head, checkpoint = self._head(fd, size)
            if checkpoint is None:
                # Before the first event, so a trail with events always has one.
                self._put(Checkpoint.signed(self.key, CHECKPOINT_PURPOSE, seq=0, hash=GENESIS,
                                            size=0))  # fmt: skip
            if seq < self._wrote[0]:
                raise AuditSinkError(
                    f"{self.path} ends at event {seq}, before event {self._wrote[0]} this "
                    "gateway wrote: events were deleted; run `c360 audit verify`"
                )
        events = chain(drafts, self.key, seq, head)
        data = b"".join(event.to_json() + b"\n" for event in events)
        try:
            _write_all(fd, data)
            os.fsync(fd)
            if size == 0:
                _fsync_directory(self.path.parent)
        except OSError as exc:
            raise AuditSinkError(
                f"cannot append to audit file {self.path}: {exc}{_cut(fd, size)}"
            ) from exc
        last = events[-1]
        signed = Checkpoint.signed(
            self.key, CHECKPOINT_PURPOSE, seq=last.seq, hash=last.hash, size=size + len(data)
        )
        now = time.monotonic()
        if now - self._put_at >= CHECKPOINT_EVERY:
            try:
                self._put(signed)
            except _NotRenamed as exc:
                raise AuditSinkError(f"{exc}{_cut(fd, size)}") from exc
            self._put_at, self._due = now, None
        else:
            self._due = signed  # the timer writes it, unless the next batch does
        self._wrote = (last.seq, last.hash)
        self._remember(fd, last.seq, last.hash)
        return events

    def _probe(self, write: bool) -> str | None:
        try:
            fd = self._open(0)
        except AuditSinkError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                return str(exc)
            return self._probe_missing(write)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            _, _, checkpoint = self._head(fd, os.fstat(fd).st_size)
            if write and checkpoint is not None:
                self._put(checkpoint)
        except AuditSinkError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot read audit file {self.path}: {exc}"
        finally:
            os.close(fd)
        return None

    def _probe_missing(self, write: bool) -> str | None:
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            return f"cannot create audit file {self.path}: its directory is not writable"
        reason = self._missing()
        if reason is None and write:
            try:
                checkpoint = self._checkpoint()
                if checkpoint is not None:
                    self._put(checkpoint)
            except AuditSinkError as exc:
                return str(exc)
        return reason

    def _missing(self) -> str | None:
        """Why the trail's file may not be created afresh, if it may not."""
        try:
            checkpoint = self._checkpoint()
        except AuditSinkError as exc:
            return str(exc)
        due = self._due
        if due is not None and (checkpoint is None or due.seq > checkpoint.seq):
            checkpoint = due
        if checkpoint is not None and checkpoint.seq > 0:
            return f"{self.path} is gone but its checkpoint names event {checkpoint.seq}"
        return None

    def _checkpoint(self) -> Checkpoint | None:
        checkpoint = read_checkpoint(self.checkpoint)
        if checkpoint is not None and not checkpoint.verifies(self.key, CHECKPOINT_PURPOSE):
            raise AuditSinkError(
                f"the audit checkpoint {self.checkpoint} does not verify under audit.key "
                f"(id {self.key.id}; it names key id {checkpoint.key_id}): edited, or another key"
            )
        return checkpoint

    def _head(self, fd: int, size: int) -> tuple[int, str, Checkpoint | None]:
        """The seq and hash to chain after, checked against the checkpoint (or the
        newer one this process has yet to write: it holds while the process runs)."""
        checkpoint = self._checkpoint()
        due = self._due
        if due is not None and (checkpoint is None or due.seq > checkpoint.seq):
            checkpoint = due
        if checkpoint is None:
            if size:
                raise AuditSinkError(
                    f"{self.path} has events but no checkpoint at {self.checkpoint}: "
                    "run `c360 audit verify`"
                )
            return 0, GENESIS, None
        if size < checkpoint.size:
            raise AuditSinkError(
                f"{self.path} is shorter than its checkpoint (event {checkpoint.seq} at byte "
                f"{checkpoint.size}): events were deleted; run `c360 audit verify`"
            )
        if size == 0:
            return 0, GENESIS, checkpoint
        last = self._event(fd, size, "the last event")
        if checkpoint.seq:
            named = (
                last
                if checkpoint.size == size
                else self._event(fd, checkpoint.size, "the event its checkpoint names")
            )
            if (named.seq, named.hash) != (checkpoint.seq, checkpoint.hash):
                raise AuditSinkError(
                    f"{self.path} no longer holds event {checkpoint.seq} where its checkpoint "
                    "says: the trail was rewritten; run `c360 audit verify`"
                )
        return last.seq, last.hash, checkpoint

    def _event(self, fd: int, end: int, what: str) -> AuditEvent:
        raw = _line_ending_at(fd, end, self.path)
        try:
            event = AuditEvent.from_json(raw)
        except AuditFormatError as exc:
            raise AuditSinkError(f"{self.path}: {what} is broken ({exc})") from exc
        if not event.verifies(self.key):
            raise AuditSinkError(
                f"{self.path}: {what} does not verify under audit.key (id {self.key.id}; "
                f"it names key id {event.key_id}): edited, or another key"
            )
        return event

    def _put(self, checkpoint: Checkpoint) -> None:
        target = self.checkpoint
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                _write_all(fd, checkpoint.to_json() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
        except OSError as exc:
            _remove_quietly(temporary)
            raise _NotRenamed(f"cannot write the audit checkpoint {target}: {exc}") from exc
        # No fsync of the directory: a rename lost in a crash leaves the older
        # checkpoint, behind a file whose newer events still verify -- the
        # state a crash between append and checkpoint leaves anyway.


def _cut(fd: int, size: int) -> str:
    """Cut off a batch that was not stored in full; say so if even that fails."""
    # Never leave half a line, or events no checkpoint announced, behind.
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as exc:
        return f" (and cutting the file back to {size} bytes failed: {exc})"
    return ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _file(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("audit checkpoint not written: %s", exc)


def _remove_quietly(path: Path) -> None:
    # A temporary file left behind is harmless: the next checkpoint truncates it.
    with contextlib.suppress(OSError):
        os.unlink(path)
