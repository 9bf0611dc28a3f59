"""``c360 audit verify``'s judge: walks a trail and names what is wrong with it.

A trail is read once, front to back, and compared with its checkpoint. The
first problem is reported with its position (1-based line of a file, entry of
a stream) and one of these names:

=====================  ===============================================================
``partial_line``       the trail ends in part of an event (an interrupted write, a cut)
``malformed``          a line is not an event (bad JSON, wrong keys, not canonical)
``edited``             an event's MAC does not match its content
``recomputed``         events from here on link up but none verifies: re-hashed without the key
``wrong_key``          nothing verifies under the key given, and the trail names another key id
``inserted``           an event that is not part of the chain (a copy, a forgery, another chain's)
``deleted``            events missing from the middle or the start
``reordered``          events out of order (the missing ones come later)
``truncated``          the trail ends before the event its checkpoint names
``emptied``            the trail is empty (or gone) but its checkpoint names an event
``missing_checkpoint`` no checkpoint (every trail c360 writes has one)
``checkpoint_edited``  the checkpoint is malformed or does not verify under the key
``forked``             the event at the checkpoint's position is not the one it names
=====================  ===============================================================

Without the key nobody can write an event or checkpoint that verifies, so an
event that verifies is genuine and only its place can be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway._audit_event import GENESIS, AuditEvent, AuditFormatError, AuditKey, Checkpoint

__all__ = ["PROBLEMS", "Scanner", "VerifyResult"]

PROBLEMS = (
    "partial_line",
    "malformed",
    "edited",
    "recomputed",
    "wrong_key",
    "inserted",
    "deleted",
    "reordered",
    "truncated",
    "emptied",
    "missing_checkpoint",
    "checkpoint_edited",
    "forked",
)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    events: int  # events verified before the first problem (all of them if ok)
    first_broken_line: int | None  # 1-based line (file) or entry (stream); None: the checkpoint
    reason: str
    head_hash: str = GENESIS  # hash of the last verified event
    problem: str | None = None  # one of PROBLEMS
    checkpoint_seq: int | None = None  # the event the checkpoint names, if it verified


def _parse(raw: bytes) -> AuditEvent | None:
    try:
        return AuditEvent.from_json(raw)
    except AuditFormatError:
        return None


def _span(first: int, last: int) -> str:
    return f"event {first} is" if first == last else f"events {first}-{last} are"


class Scanner:
    """Fed a trail's events in order, then asked for the verdict."""

    def __init__(
        self,
        key: AuditKey,
        checkpoint: Checkpoint | None,
        checkpoint_problem: str | None = None,
        *,
        where: str = "",
    ) -> None:
        self.key = key
        self.checkpoint = checkpoint
        # Why the checkpoint does not count (malformed, wrong signature), if so.
        self.checkpoint_problem = checkpoint_problem
        self.where = where
        self.seq = 0
        self.head = GENESIS
        self.count = 0
        self.position = 0
        self.named: str | None = None  # hash of the event the checkpoint names
        self.verdict: VerifyResult | None = None
        # A problem whose name depends on what follows it.
        self._pending: tuple[str, int, str] | None = None
        self._last: AuditEvent | None = None  # of a run of events that link but do not verify
        self._missing = range(0)

    @property
    def decided(self) -> bool:
        return self.verdict is not None

    def _broken(self, problem: str, position: int | None, reason: str) -> None:
        self.verdict = VerifyResult(
            False, self.count, position, reason, self.head, problem, self._checkpoint_seq()
        )

    def _checkpoint_seq(self) -> int | None:
        if self.checkpoint is None or self.checkpoint_problem is not None:
            return None
        return self.checkpoint.seq

    def feed(self, raw: bytes, *, whole: bool = True) -> None:
        """One line or entry; ``whole`` is False for a file's unterminated last line."""
        self.position += 1
        if self.verdict is not None:
            return
        if self._pending is not None:
            self._follow(raw if whole else b"")
            return
        if not whole:
            self._broken(
                "partial_line", self.position,
                "part of an event, no newline: an interrupted write, or the trail was cut",
            )  # fmt: skip
            return
        try:
            event = AuditEvent.from_json(raw)
        except AuditFormatError as exc:
            self._broken("malformed", self.position, f"not an audit event: {exc}")
            return
        if not event.verifies(self.key):
            self._mac_failure(event)
        elif event.prev_hash != self.head or event.seq != self.seq + 1:
            self._link_failure(event)
        else:
            self.seq, self.head, self.count = event.seq, event.hash, self.count + 1
            if self.checkpoint is not None and event.seq == self.checkpoint.seq:
                self.named = event.hash

    def _mac_failure(self, event: AuditEvent) -> None:
        if self.count == 0 and event.key_id != self.key.id and self._checkpoint_seq() is None:
            self._broken(
                "wrong_key", self.position,
                f"nothing verifies under this key (id {self.key.id}); the trail names key id "
                f"{event.key_id}: the wrong key, or a trail re-signed with another",
            )  # fmt: skip
            return
        self._pending = ("mac", self.position, "")
        self._last = event
        self._missing = range(0)

    def _link_failure(self, event: AuditEvent) -> None:
        after = f"event {self.seq}" if self.seq else "the start"
        if event.seq > self.seq + 1:
            self._missing = range(self.seq + 1, event.seq)
            self._pending = ("gap", self.position, f"event {event.seq} follows {after}")
        elif event.seq <= self.seq:
            self._broken(
                "inserted", self.position,
                f"event {event.seq} again after event {self.seq}: an inserted copy",
            )  # fmt: skip
        else:
            self._broken(
                "inserted", self.position,
                f"event {event.seq} does not link to {after}: it is from another chain",
            )  # fmt: skip

    def _follow(self, raw: bytes) -> None:
        """An event after a problem whose name it decides."""
        assert self._pending is not None
        kind, position, detail = self._pending
        event = _parse(raw)
        if kind == "gap":
            if event is not None and event.seq in self._missing:
                first = self._missing[0]
                self._broken(
                    "reordered", position,
                    f"{detail}, and event {first} comes later: events were reordered",
                )  # fmt: skip
            return
        last = self._last
        assert last is not None
        if event is None:
            self._edited(position)
        elif (
            position == self.position - 1
            and event.verifies(self.key)
            and (event.prev_hash == self.head and event.seq == self.seq + 1)
        ):
            self._broken(
                "inserted", position,
                f"an event whose MAC does not verify sits between events {self.seq} and "
                f"{event.seq}: it was inserted",
            )  # fmt: skip
        elif event.verifies(self.key) or event.prev_hash != last.hash or event.seq != last.seq + 1:
            self._edited(position)
        else:
            self._last = event

    def _edited(self, position: int) -> None:
        self._broken(
            "edited", position,
            "the event's MAC does not match its content: it was edited",
        )  # fmt: skip

    def finish(self) -> VerifyResult:
        if self.verdict is None and self._pending is not None:
            kind, position, detail = self._pending
            if kind == "gap":
                first, last = self._missing[0], self._missing[-1]
                self._broken(
                    "deleted", position, f"{detail}: {_span(first, last)} missing: deleted"
                )
            elif self.position > position:
                self._broken(
                    "recomputed", position,
                    f"events from here on link up but none verifies under the key (id "
                    f"{self.key.id}): the chain was recomputed without the key, after an edit",
                )  # fmt: skip
            else:
                self._edited(position)
        if self.verdict is None:
            self._against_checkpoint()
        assert self.verdict is not None
        return self.verdict

    def _against_checkpoint(self) -> None:
        checkpoint, after = self.checkpoint, self.position + 1
        if self.checkpoint_problem is not None:
            wrong_key = checkpoint is not None and checkpoint.key_id != self.key.id
            problem = "wrong_key" if wrong_key and self.count == 0 else "checkpoint_edited"
            self._broken(problem, None, self.checkpoint_problem)
            return
        if checkpoint is None:
            what = f"a trail of {self.count} events" if self.count else "an empty trail"
            self._broken(
                "missing_checkpoint", None,
                f"no checkpoint for {what}{self.where}: it was deleted (an empty trail without "
                "one was emptied along with it, or never written by c360)",
            )  # fmt: skip
            return
        if checkpoint.seq > self.seq:
            if self.count == 0:
                self._broken(
                    "emptied", after,
                    f"the trail is empty but its checkpoint names event {checkpoint.seq}: "
                    "it was emptied",
                )  # fmt: skip
            else:
                self._broken(
                    "truncated", after,
                    f"the trail ends at event {self.seq} but its checkpoint names event "
                    f"{checkpoint.seq}: {_span(self.seq + 1, checkpoint.seq)} missing from "
                    "the end (deleted)",
                )  # fmt: skip
            return
        if checkpoint.seq and self.named != checkpoint.hash:
            self._broken(
                "forked", None,
                f"event {checkpoint.seq} is not the one the checkpoint names: the trail was "
                "replaced by another chain",
            )  # fmt: skip
            return
        beyond = self.seq - checkpoint.seq
        note = f"; {beyond} after the checkpoint (a write cut short)" if beyond else ""
        self.verdict = VerifyResult(
            True, self.count, None, f"chain intact{note}", self.head, None, checkpoint.seq
        )


def checkpoint_problem(checkpoint: Checkpoint, key: AuditKey, purpose: bytes) -> str | None:
    if checkpoint.verifies(key, purpose):
        return None
    if checkpoint.key_id != key.id:
        return (
            f"the checkpoint is signed with key id {checkpoint.key_id}, not this key's "
            f"({key.id}): the wrong key, or an edited checkpoint"
        )
    return "the checkpoint's signature does not verify: it was edited"
