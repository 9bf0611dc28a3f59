"""What the audit trail stores: keyed events, signed checkpoints, and the key.

An event is one line of canonical JSON (sorted keys, no whitespace, ASCII)::

    {"client_id":"sidebar","customer_id":"c360_…","fields":{"Customer.email":"full",
     "Customer.phone":"masked"},"hash":"…","key_id":"…","operation":"Sidebar",
     "prev_hash":"…","request_id":"…","seq":7,"source_ip":"10.0.0.7",
     "subject":"agent-42","time":"2025-01-01T12:00:00.000Z"}

``hash`` is HMAC-SHA256 under the audit key over the canonical JSON of every
other attribute, so only a holder of the key can write an event that verifies;
``prev_hash`` is the previous event's ``hash`` (:data:`GENESIS` for the first),
and ``key_id`` names the key (a rotated key will need it). A checkpoint names
the trail's head (``seq``, ``hash``, and for a file its size in bytes), signed
with the same key for a different purpose, so it can live apart from the trail
and still prove what the trail held.

    AuditError                 the trail cannot record or be read
    ├── AuditSinkError         an append failed: the events were not stored
    └── AuditFormatError       a stored event or checkpoint is malformed
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import ConfigError, resolve_secret

__all__ = [
    "GENESIS",
    "HOWS",
    "MAX_CHECKPOINT",
    "AuditError",
    "AuditEvent",
    "AuditFormatError",
    "AuditKey",
    "AuditSinkError",
    "Checkpoint",
    "canonical",
    "chain",
    "new_event",
]

GENESIS = "0" * 64
HOWS = frozenset(("full", "masked"))
_OPTIONAL = ("client_id", "operation", "request_id", "source_ip")
_KEYS = frozenset(
    ("time", "subject", "customer_id", "fields", "seq", "prev_hash", "key_id", "hash", *_OPTIONAL)
)
# The keys of the unkeyed events written before the chain was an HMAC.
_OLD_KEYS = _KEYS - {"key_id"}
_CHECKPOINT_KEYS = frozenset(("seq", "hash", "size", "key_id", "sig"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
# `Type.field` GraphQL names only: an email, phone, name with a space or any
# other value put here by mistake is refused rather than written to the trail.
_FIELD = re.compile(r"[A-Z][A-Za-z0-9_]{0,99}\.[a-z_][A-Za-z0-9_]{0,99}")
# The gateway's customer ids (`c360_` + urlsafe base64) and markers like
# `unattributed`: never an email (@), a phone (+, spaces) or a name (spaces).
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,600}")
_MAX_TEXT = 1024
_MIN_KEY_BYTES = 32
MAX_CHECKPOINT = 4096  # bytes; a real one is about 200
_EVENT_MAC = b"c360 audit event\n"
_KEY_ID_MAC = b"c360 audit key id"


class AuditError(Exception):
    """The audit trail cannot record or be read."""


class AuditSinkError(AuditError):
    """A sink could not append: the events were not recorded."""


class AuditFormatError(AuditError):
    """A stored event or checkpoint is malformed."""


def canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True, repr=False)
class AuditKey:
    """The secret the chain and its checkpoints are signed with; ``id`` names it."""

    secret: bytes
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) < _MIN_KEY_BYTES:
            raise ValueError(f"an audit key needs at least {_MIN_KEY_BYTES} bytes")
        # An HMAC of the key, not a hash: it says nothing about the secret.
        key_id = hmac.new(self.secret, _KEY_ID_MAC, hashlib.sha256).hexdigest()[:16]
        object.__setattr__(self, "id", key_id)

    def __repr__(self) -> str:
        return f"AuditKey(id={self.id})"

    def mac(self, purpose: bytes, data: bytes) -> str:
        return hmac.new(self.secret, purpose + data, hashlib.sha256).hexdigest()

    @classmethod
    def from_text(cls, text: str, *, where: str) -> AuditKey:
        """Decode urlsafe base64 (padding optional) of at least 32 random bytes."""
        try:
            secret = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"{where}: the audit key is not urlsafe base64") from exc
        if len(secret) < _MIN_KEY_BYTES:
            raise ConfigError(
                f"{where}: the audit key must decode to at least {_MIN_KEY_BYTES} bytes "
                f"(got {len(secret)}); make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return cls(secret)

    @classmethod
    def from_reference(cls, reference: str, *, where: str) -> AuditKey:
        """Read the key from ``env:NAME`` or ``file:PATH`` (literals are refused)."""
        return cls.from_text(resolve_secret(reference, where=where), where=where)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    time: str
    subject: str
    client_id: str | None
    customer_id: str
    # `Type.field` -> "full" | "masked", in sorted order.
    fields: Mapping[str, str]
    operation: str | None
    request_id: str | None
    source_ip: str | None
    seq: int = 0
    prev_hash: str = ""
    key_id: str = ""
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "subject": self.subject,
            "client_id": self.client_id,
            "customer_id": self.customer_id,
            "fields": dict(self.fields),
            "operation": self.operation,
            "request_id": self.request_id,
            "source_ip": self.source_ip,
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "key_id": self.key_id,
        }

    def to_json(self) -> bytes:
        return canonical({**self.body(), "hash": self.hash})

    def signed(self, key: AuditKey, seq: int, prev_hash: str) -> AuditEvent:
        linked = replace(self, seq=seq, prev_hash=prev_hash, key_id=key.id, hash="")
        return replace(linked, hash=key.mac(_EVENT_MAC, canonical(linked.body())))

    def verifies(self, key: AuditKey) -> bool:
        """Whether ``hash`` is this event's MAC under ``key``."""
        expected = key.mac(_EVENT_MAC, canonical(self.body()))
        return self.key_id == key.id and hmac.compare_digest(expected, self.hash)

    @classmethod
    def from_json(cls, raw: bytes) -> AuditEvent:
        """Parse one stored event, checking its shape and canonical form (not its MAC)."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise AuditFormatError("not valid JSON (a cut or edited line)") from exc
        if isinstance(data, dict) and set(data) == _OLD_KEYS:
            raise AuditFormatError("an unkeyed event from an older c360, not an HMAC chain")
        if not isinstance(data, dict) or set(data) != _KEYS:
            raise AuditFormatError("not an audit event (wrong keys)")
        wrong = [k for k in ("time", "subject", "customer_id") if not isinstance(data[k], str)]
        wrong += [k for k in _OPTIONAL if data[k] is not None and not isinstance(data[k], str)]
        if not _valid_fields(data["fields"]):
            wrong.append("fields")
        if type(data["seq"]) is not int or data["seq"] < 1:
            wrong.append("seq")
        wrong += [k for k in ("prev_hash", "hash") if not _HEX64.fullmatch(str(data[k]))]
        if not _KEY_ID.fullmatch(str(data["key_id"])):
            wrong.append("key_id")
        if wrong:
            raise AuditFormatError(f"malformed {', '.join(wrong)}")
        event = cls(**data)
        if event.to_json() != raw:
            raise AuditFormatError("not in canonical form: the line was edited")
        return event


def _valid_fields(fields: Any) -> bool:
    return (
        isinstance(fields, dict)
        and bool(fields)
        and all(isinstance(n, str) and _FIELD.fullmatch(n) for n in fields)
        and all(isinstance(h, str) and h in HOWS for h in fields.values())
    )


def _text(name: str, value: Any, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"audit {name} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"audit {name} is longer than {_MAX_TEXT} characters")
    return value


def new_event(
    *,
    time: str,
    subject: Any,
    customer_id: Any,
    fields: Any,
    client_id: Any = None,
    operation: Any = None,
    request_id: Any = None,
    source_ip: Any = None,
) -> AuditEvent:
    """An unchained event, or ValueError when an argument could carry a PII value."""
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(
            "audit fields must map `Type.field` names to 'full' or 'masked', "
            f"got {type(fields).__name__}"
        )
    names = [name for name in fields if not (isinstance(name, str) and _FIELD.fullmatch(name))]
    if names:
        # Never echo what was refused: it may be the PII value itself.
        raise ValueError(f"audit fields must be `Type.field` names; {len(names)} are not")
    if not all(isinstance(how, str) and how in HOWS for how in fields.values()):
        raise ValueError("audit fields say how each was shown: 'full' or 'masked'")
    if not isinstance(customer_id, str) or not _CUSTOMER_ID.fullmatch(customer_id):
        raise ValueError("audit customer_id must be the gateway's id, never an email or a name")
    return AuditEvent(
        time=time,
        subject=str(_text("subject", subject, optional=False)),
        client_id=_text("client_id", client_id, optional=True),
        customer_id=customer_id,
        fields={name: fields[name] for name in sorted(fields)},
        operation=_text("operation", operation, optional=True),
        request_id=_text("request_id", request_id, optional=True),
        source_ip=_text("source_ip", source_ip, optional=True),
    )


def chain(
    drafts: Sequence[AuditEvent], key: AuditKey, seq: int, prev_hash: str
) -> list[AuditEvent]:
    """Sign ``drafts`` in order after the event ``seq`` whose hash is ``prev_hash``."""
    events = []
    for draft in drafts:
        seq += 1
        event = draft.signed(key, seq, prev_hash)
        prev_hash = event.hash
        events.append(event)
    return events


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that a trail's event ``seq`` is ``hash``.

    ``size`` is the file's length in bytes up to and including that event (0
    for a Redis stream). ``purpose`` binds the signature to what it is for
    (a file's checkpoint, one stream's head), so one cannot stand in for another.
    """

    seq: int
    hash: str
    size: int
    key_id: str
    sig: str

    @classmethod
    def signed(cls, key: AuditKey, purpose: bytes, *, seq: int, hash: str, size: int) -> Checkpoint:
        body = {"seq": seq, "hash": hash, "size": size, "key_id": key.id}
        return cls(seq, hash, size, key.id, key.mac(purpose, canonical(body)))

    def verifies(self, key: AuditKey, purpose: bytes) -> bool:
        body = {"seq": self.seq, "hash": self.hash, "size": self.size, "key_id": self.key_id}
        expected = key.mac(purpose, canonical(body))
        return self.key_id == key.id and hmac.compare_digest(expected, self.sig)

    def to_json(self) -> bytes:
        return canonical(
            {"seq": self.seq, "hash": self.hash, "size": self.size, "key_id": self.key_id,
             "sig": self.sig}
        )  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes) -> Checkpoint:
        if len(raw) > MAX_CHECKPOINT:
            raise AuditFormatError(f"the checkpoint is larger than {MAX_CHECKPOINT} bytes")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise AuditFormatError("the checkpoint is not valid JSON") from exc
        if not isinstance(data, dict) or set(data) != _CHECKPOINT_KEYS:
            raise AuditFormatError("the checkpoint is not a checkpoint (wrong keys)")
        seq, size = data["seq"], data["size"]
        if type(seq) is not int or type(size) is not int or seq < 0 or size < 0:
            raise AuditFormatError("the checkpoint's seq or size is not a count")
        if seq == 0 and (data["hash"] != GENESIS or size != 0):
            raise AuditFormatError("the checkpoint of an empty trail names an event")
        hexes = (_HEX64.fullmatch(str(data[k])) for k in ("hash", "sig"))
        if not all(hexes) or not _KEY_ID.fullmatch(str(data["key_id"])):
            raise AuditFormatError("the checkpoint's hash, key id or signature is malformed")
        return cls(seq, data["hash"], size, data["key_id"], data["sig"])
