"""The PII audit trail: keyed chain, checkpoints, file sink, probe, verification, CLI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import _audit_file as audit_file
from gateway._audit_event import Checkpoint, new_event
from gateway._audit_settings import AuditSettings, audit_settings
from gateway.audit import (
    GENESIS,
    PROBLEMS,
    AuditError,
    AuditEvent,
    AuditFormatError,
    AuditKey,
    AuditSinkError,
    AuditTrail,
    JsonlSink,
    RedisStreamSink,
    audit_from_settings,
    audit_main,
    verify_file,
)
from gateway.config import ConfigError
from gateway.demo import DEMO_AUDIT_KEY_TEXT, sandbox_settings

PER_PROCESS = 150
SECRET = b"k" * 32
KEY = AuditKey(SECRET)
OTHER_SECRET = b"o" * 32
OTHER = AuditKey(OTHER_SECRET)
KEY_TEXT = base64.urlsafe_b64encode(SECRET).decode().rstrip("=")
OTHER_TEXT = base64.urlsafe_b64encode(OTHER_SECRET).decode()
FIELDS = {"Customer.email": "full", "Customer.phone": "masked"}


def refusal(error: type[Exception], function, *args, **kwargs) -> str:
    """The message ``function(*args, **kwargs)`` raises ``error`` with."""
    with pytest.raises(error) as caught:
        function(*args, **kwargs)
    return str(caught.value)


def canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def mac(secret: bytes, purpose: bytes, data: dict) -> str:
    return hmac.new(secret, purpose + canonical(data), hashlib.sha256).hexdigest()


def trail(path: Path, key: AuditKey = KEY, **kwargs) -> AuditTrail:
    return AuditTrail(JsonlSink(path, key=key, **kwargs), clock=lambda: 1_700_000_000.25)


async def record(t: AuditTrail, n: int, subject: str = "agent-1", start: int = 0) -> None:
    for i in range(start, start + n):
        await t.record(
            subject=subject,
            customer_id=f"cus_{i}",
            fields=FIELDS if i % 2 else {"Customer.email": "full"},
            client_id="sidebar",
            operation="Customer360",
            request_id=f"req-{i}",
            source_ip="10.0.0.7",
        )


async def written(
    path: Path, n: int = 5, key: AuditKey = KEY, subject: str = "agent-1", **kwargs
) -> Path:
    t = trail(path, key, **kwargs)
    await record(t, n, subject)
    await t.aclose()
    return path


@pytest.fixture
async def five(tmp_path: Path) -> Path:
    return await written(tmp_path / "audit.jsonl")


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write(path: Path, rows: list[bytes]) -> None:
    path.write_bytes(b"".join(rows))


def data(path: Path | str) -> bytes | None:
    """What the file holds; None when there is no file."""
    path = Path(path)
    return path.read_bytes() if path.exists() else None


def put(path: Path | str, content: bytes | None) -> None:
    Path(path).write_bytes(content or b"")


def checkpoint_of(path: Path) -> dict:
    return json.loads(Path(f"{path}.checkpoint").read_bytes())


def empty_checkpoint() -> bytes:
    body = {"seq": 0, "hash": GENESIS, "size": 0, "key_id": KEY.id}
    return canonical({**body, "sig": mac(SECRET, b"c360 audit file checkpoint\n", body)})


def forge(row: bytes, secret: bytes | None, **changes: object) -> bytes:
    """``row`` changed and re-hashed: unkeyed SHA-256 (None) or HMAC under ``secret``."""
    data = {**json.loads(row), **changes}
    del data["hash"]
    if secret is None:
        data["hash"] = hashlib.sha256(canonical(data)).hexdigest()
    else:
        data["hash"] = mac(secret, b"c360 audit event\n", data)
    return canonical(data) + b"\n"


def recompute(rows: list[bytes], start: int, secret: bytes | None, **changes: object) -> None:
    """Re-hash rows[start:] (changing the first) and relink them: a rebuilt chain."""
    prev = json.loads(rows[start - 1])["hash"] if start else GENESIS
    for i in range(start, len(rows)):
        rows[i] = forge(rows[i], secret, prev_hash=prev, **(changes if i == start else {}))
        prev = json.loads(rows[i])["hash"]


# -- the format ---------------------------------------------------------------


async def test_events_are_canonical_json_in_a_keyed_chain_anyone_with_the_key_can_check(
    five: Path,
) -> None:
    rows = lines(five)
    events = [json.loads(row) for row in rows]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    for row, event in zip(rows, events, strict=True):
        assert row == canonical(event) + b"\n"
        # The published format: HMAC-SHA256 under the key over every other attribute.
        body = {k: v for k, v in event.items() if k != "hash"}
        assert event["hash"] == mac(SECRET, b"c360 audit event\n", body)
        assert event["hash"] != hashlib.sha256(canonical(body)).hexdigest()
    assert events[1] | {"hash": "", "prev_hash": ""} == {
        "time": "2023-11-14T22:13:20.250Z",
        "subject": "agent-1",
        "client_id": "sidebar",
        "customer_id": "cus_1",
        "fields": {"Customer.email": "full", "Customer.phone": "masked"},
        "operation": "Customer360",
        "request_id": "req-1",
        "source_ip": "10.0.0.7",
        "seq": 2,
        "prev_hash": "",
        "key_id": KEY.id,
        "hash": "",
    }
    assert events[0]["fields"] == {"Customer.email": "full"}
    result = verify_file(five, key=KEY)
    assert (result.ok, result.events, result.first_broken_line, result.problem) == (
        True, 5, None, None,
    )  # fmt: skip
    assert (result.head_hash, result.checkpoint_seq) == (events[-1]["hash"], 5)
    assert result.reason == "chain intact"


async def test_the_checkpoint_is_signed_apart_and_names_the_head(five: Path) -> None:
    checkpoint = checkpoint_of(five)
    last = json.loads(lines(five)[-1])
    assert checkpoint["seq"] == 5
    assert checkpoint["hash"] == last["hash"]
    assert checkpoint["size"] == len(data(five) or b"")
    assert checkpoint["key_id"] == KEY.id
    body = {k: v for k, v in checkpoint.items() if k != "sig"}
    assert checkpoint["sig"] == mac(SECRET, b"c360 audit file checkpoint\n", body)


def test_a_key_has_a_public_id_and_never_shows_its_secret() -> None:
    assert len(KEY.id) == 16 and int(KEY.id, 16) >= 0
    assert KEY.id == AuditKey(SECRET).id != OTHER.id
    assert KEY.id == hmac.new(SECRET, b"c360 audit key id", hashlib.sha256).hexdigest()[:16]
    assert "kkkk" not in repr(KEY) and KEY.id in repr(KEY)
    assert AuditKey.from_text(KEY_TEXT, where="x") == KEY  # padding optional
    assert AuditKey.from_text(KEY_TEXT + "=", where="x") == KEY
    assert AuditKey(b"k" * 31 + b"x").id != KEY.id
    with pytest.raises(ValueError, match="at least 32 bytes"):
        AuditKey(b"k" * 31)


def test_urlsafe_keys_decode_to_their_bytes() -> None:
    secret = bytes([0xFB, 0xFF] * 16)
    text = base64.urlsafe_b64encode(secret).decode()
    assert "-" in text and "_" in text
    assert AuditKey.from_text(text, where="x").secret == secret
    assert refusal(ConfigError, AuditKey.from_text, "!", where="here") == (
        "here: the audit key is not urlsafe base64"
    )
    short = base64.urlsafe_b64encode(b"k" * 31).decode()
    assert refusal(ConfigError, AuditKey.from_text, short, where="k") == (
        "k: the audit key must decode to at least 32 bytes (got 31); make one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
    )


def test_non_ascii_text_is_stored_escaped(tmp_path: Path) -> None:
    event = AuditEvent(
        time="t", subject="agent-é", client_id=None, customer_id="c1", fields=FIELDS,
        operation="Überblick", request_id=None, source_ip=None,
    ).signed(KEY, 1, GENESIS)  # fmt: skip
    raw = event.to_json()
    assert raw.isascii() and b"agent-\\u00e9" in raw and b"\\u00dcberblick" in raw
    assert AuditEvent.from_json(raw) == event


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "not urlsafe base64"),
        ("!!!!" + KEY_TEXT, "not urlsafe base64"),  # junk is refused, not skipped
        (base64.urlsafe_b64encode(b"k" * 31).decode(), "at least 32 bytes (got 31)"),
    ],
)
def test_bad_keys_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^here: .*" + re.escape(message)):
        AuditKey.from_text(text, where="here")


async def test_masked_and_full_reads_are_both_recorded_and_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    event = await t.record(
        subject="agent", customer_id="c360_abc-_1", fields={"Contact.phone": "masked"}
    )
    await t.record(subject="agent", customer_id="c360_abc-_1", fields={"Contact.phone": "full"})
    await t.aclose()
    assert event.fields == {"Contact.phone": "masked"}
    stored = [json.loads(row)["fields"] for row in lines(path)]
    assert stored == [{"Contact.phone": "masked"}, {"Contact.phone": "full"}]
    # Turning a masked read into a full one (or back) is an edit the chain shows.
    rows = lines(path)
    rows[0] = rows[0].replace(b'"masked"', b'"full"')
    write(path, rows)
    result = verify_file(path, key=KEY)
    assert (result.problem, result.first_broken_line) == ("edited", 1)


async def test_fields_are_stored_sorted_whatever_order_they_came_in(tmp_path: Path) -> None:
    t = trail(tmp_path / "audit.jsonl")
    event = await t.record(
        subject="a", customer_id="c1", fields={"Source.id": "full", "Customer.email": "masked"}
    )
    await t.aclose()
    assert list(event.fields) == ["Customer.email", "Source.id"]
    assert event.to_json().index(b"Customer.email") < event.to_json().index(b"Source.id")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"fields": ["Customer.email"]}, "must map `Type.field` names"),
        ({"fields": "Customer.email"}, "must map `Type.field` names"),
        ({"fields": {}}, "must map `Type.field` names"),
        ({"fields": {"ada@example.com": "full"}}, "1 are not"),
        ({"fields": {"Customer.email:masked": "full"}}, "1 are not"),
        ({"fields": {"email": "full", "phone": "full"}}, "2 are not"),
        ({"fields": {"Ada Lovelace.x": "full"}}, "1 are not"),
        ({"fields": {"customer.email": "full"}}, "1 are not"),
        ({"fields": {"Customer.Email": "full"}}, "1 are not"),
        ({"fields": {"Customer.email.x": "full"}}, "1 are not"),
        ({"fields": {"C" + "x" * 100 + ".email": "full"}}, "1 are not"),
        ({"fields": {3: "full"}}, "1 are not"),
        ({"fields": {"Customer.email": "partly"}}, "'full' or 'masked'"),
        ({"fields": {"Customer.email": ["full"]}}, "'full' or 'masked'"),
        ({"fields": {"Customer.email": None}}, "'full' or 'masked'"),
        ({"customer_id": "ada@example.com"}, "never an email"),
        ({"customer_id": "Ada Lovelace"}, "never an email"),
        ({"customer_id": "+1 555 0100"}, "never an email"),
        ({"customer_id": ""}, "never an email"),
        ({"customer_id": "c" * 601}, "never an email"),
        ({"customer_id": 7}, "never an email"),
        ({"subject": ""}, "subject must be a non-empty string"),
        ({"subject": None}, "subject must be a non-empty string"),
        ({"subject": "s" * 1025}, "subject is longer than 1024"),
        ({"client_id": 5}, "client_id must be a non-empty string"),
        ({"operation": ""}, "operation must be a non-empty string"),
        ({"request_id": "r" * 1025}, "request_id is longer than 1024"),
        ({"source_ip": b"10.0.0.1"}, "source_ip must be a non-empty string"),
    ],
)
async def test_arguments_that_could_carry_a_value_are_refused(
    tmp_path: Path, arguments: dict, message: str
) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    good = {"subject": "a", "customer_id": "c360_x", "fields": {"Customer.email": "full"}}
    with pytest.raises(ValueError, match=message) as caught:
        await t.record(**{**good, **arguments})
    assert "ada@" not in str(caught.value) and "Lovelace" not in str(caught.value)
    # The longest accepted values pass.
    event = await t.record(
        subject="s" * 1024,
        customer_id="c" * 600,
        fields={"C" + "x" * 99 + ".e" + "x" * 99: "full"},
        request_id="r" * 1024,
    )
    await t.aclose()
    assert event.seq == 1
    assert verify_file(path, key=KEY).events == 1


async def test_refusals_say_exactly_why(tmp_path: Path) -> None:
    t = trail(tmp_path / "audit.jsonl")
    good = {"subject": "a", "customer_id": "c1", "fields": FIELDS}
    for changes, exact in [
        (
            {"fields": ["Customer.email"]},
            "audit fields must map `Type.field` names to 'full' or 'masked', got list",
        ),
        (
            {"fields": {"Customer.email": "x"}},
            "audit fields say how each was shown: 'full' or 'masked'",
        ),
        (
            {"customer_id": "a@b"},
            "audit customer_id must be the gateway's id, never an email or a name",
        ),
    ]:
        with pytest.raises(ValueError) as caught:
            await t.record(**{**good, **changes})
        assert str(caught.value) == exact
    await t.aclose()


async def test_a_closed_trail_refuses_events(tmp_path: Path) -> None:
    t = trail(tmp_path / "audit.jsonl")
    await t.aclose()
    with pytest.raises(AuditError, match="closed"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert await t.probe() == "the audit trail is closed"
    with pytest.raises(ValueError, match=r"^on_failure must be 'deny' or 'allow'$"):
        AuditTrail(t.sink, on_failure="maybe")  # type: ignore[arg-type]


# -- appending ------------------------------------------------------------------


async def test_a_new_trail_continues_the_chain_of_an_existing_file(five: Path) -> None:
    t = trail(five)
    event = await t.record(subject="agent-2", customer_id="cus_9", fields=FIELDS)
    await t.aclose()
    assert event.seq == 6
    assert event.prev_hash == json.loads(lines(five)[4])["hash"]
    assert checkpoint_of(five)["seq"] == 6
    assert verify_file(five, key=KEY).events == 6


class CountingSink:
    def __init__(self, sink: JsonlSink) -> None:
        self.sink = sink
        self.batches: list[int] = []

    async def append(self, drafts):
        self.batches.append(len(drafts))
        return await self.sink.append(drafts)

    async def probe(self, *, write: bool = False):
        return await self.sink.probe(write=write)

    async def aclose(self) -> None:
        await self.sink.aclose()


async def test_concurrent_records_share_one_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = CountingSink(JsonlSink(path, key=KEY))
    t = AuditTrail(sink, max_batch=64)
    events = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(100))
    )
    await t.aclose()
    assert sink.batches == [64, 36]
    assert sorted(e.seq for e in events) == list(range(1, 101))
    assert [e.customer_id for e in events] == [f"c{i}" for i in range(100)]
    assert verify_file(path, key=KEY).events == 100


def _writer(path: str, name: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    async def run() -> None:
        t = AuditTrail(JsonlSink(path, key=KEY))
        barrier.wait(timeout=30)
        for start in range(0, PER_PROCESS, 10):
            await asyncio.gather(
                *(
                    t.record(subject=name, customer_id=f"c{i}", fields=FIELDS)
                    for i in range(start, start + 10)
                )
            )
        await t.aclose()

    asyncio.run(run())


def test_two_processes_writing_one_file_keep_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_writer, args=(str(path), name, barrier)) for name in ("w1", "w2")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    result = verify_file(path, key=KEY)
    assert result.ok, result.reason
    assert (result.events, result.checkpoint_seq) == (2 * PER_PROCESS, 2 * PER_PROCESS)
    subjects = [json.loads(row)["subject"] for row in lines(path)]
    assert subjects.count("w1") == subjects.count("w2") == PER_PROCESS


def cut_tail(path: Path) -> None:
    write(path, [*lines(path)[:4], lines(path)[4][:40]])


def append_partial(path: Path) -> None:
    put(path, data(path) + b'{"client_id":')  # a write cut short, beyond the checkpoint


def edit_last(path: Path) -> None:
    rows = lines(path)
    rows[4] = rows[4].replace(b'"cus_4"', b'"cus_7"')
    write(path, rows)


def reforge_last(path: Path) -> None:
    rows = lines(path)
    rows[4] = forge(rows[4], None, customer_id="cus_7")
    write(path, rows)


def drop_last_two(path: Path) -> None:
    write(path, lines(path)[:3])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def remove(path: Path) -> None:
    path.unlink()


def block(checkpoint: str) -> Path:
    blocker = Path(f"{checkpoint}.{os.getpid()}.tmp")
    blocker.mkdir()
    return blocker


def unblock(blocker: Path) -> bool:
    was_there = blocker.is_dir()
    blocker.rmdir()
    return was_there


def remove_checkpoint(path: Path) -> None:
    Path(f"{path}.checkpoint").unlink()


def edit_checkpoint(path: Path) -> None:
    checkpoint = Path(f"{path}.checkpoint")
    data = json.loads(checkpoint.read_bytes())
    checkpoint.write_bytes(canonical({**data, "size": data["size"] - 1}))


def garble_checkpoint(path: Path) -> None:
    Path(f"{path}.checkpoint").write_bytes(b'{"seq": 5')


def blank_line_at_end(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (cut_tail, "shorter than its checkpoint"),
        (append_partial, "does not end in a whole event"),
        (blank_line_at_end, "the last event is broken"),
        (edit_last, "the last event does not verify"),
        (reforge_last, "the last event does not verify"),
        (drop_last_two, "shorter than its checkpoint (event 5 at byte"),
        (empty, "shorter than its checkpoint"),
        (remove, "is gone but its checkpoint names event 5"),
        (remove_checkpoint, "has events but no checkpoint"),
        (edit_checkpoint, "checkpoint"),
        (garble_checkpoint, "not valid JSON"),
    ],
)
async def test_appending_to_a_broken_trail_is_refused_never_a_new_chain(
    five: Path, tamper, message: str
) -> None:
    tamper(five)
    before, saved = data(five), data(f"{five}.checkpoint")
    t = trail(five)
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert message in str(caught.value)
    reason = await t.probe()
    await t.aclose()
    assert reason is not None and message.partition(" (")[0] in reason
    assert (data(five), data(f"{five}.checkpoint")) == (before, saved)


async def test_another_key_can_neither_extend_nor_verify_the_trail(five: Path) -> None:
    t = trail(five, OTHER)
    with pytest.raises(AuditSinkError, match=f"under audit.key \\(id {OTHER.id}; it names key"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert len(lines(five)) == 5
    result = verify_file(five, key=OTHER)
    assert (result.ok, result.problem, result.first_broken_line) == (False, "wrong_key", 1)
    assert KEY.id in result.reason and OTHER.id in result.reason


async def test_an_event_rewritten_where_the_checkpoint_points_stops_appends(
    tmp_path: Path,
) -> None:
    # Two genuine trails of one key: one file with the other's checkpoint.
    first = await written(tmp_path / "a.jsonl", 5)
    second = await written(tmp_path / "b.jsonl", 6, subject="agent-2")
    put(f"{second}.checkpoint", data(f"{first}.checkpoint"))
    t = trail(second)
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert str(caught.value) == (
        f"{second} no longer holds event 5 where its checkpoint says: the trail was rewritten; "
        "run `c360 audit verify`"
    )
    result = verify_file(second, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, "forked", None)
    assert result.reason == (
        "event 5 is not the one the checkpoint names: the trail was replaced by another chain"
    )


async def test_events_after_the_checkpoint_are_taken_up_by_the_next_append(
    tmp_path: Path,
) -> None:
    """A crash between the append and the checkpoint leaves events it does not name."""
    path = await written(tmp_path / "audit.jsonl", 3)
    older = data(f"{path}.checkpoint")
    t = trail(path)
    await record(t, 2, start=3)
    put(f"{path}.checkpoint", older)
    result = verify_file(path, key=KEY)
    assert (result.ok, result.events, result.checkpoint_seq) == (True, 5, 3)
    assert result.reason == "chain intact; 2 after the checkpoint (a write cut short)"
    event = await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert event.seq == 6
    assert checkpoint_of(path)["seq"] == 6
    assert verify_file(path, key=KEY).reason == "chain intact"


async def test_a_crash_before_the_first_checkpoint_moved_is_taken_up(tmp_path: Path) -> None:
    path = await written(tmp_path / "audit.jsonl", 2)
    put(f"{path}.checkpoint", empty_checkpoint())
    result = verify_file(path, key=KEY)
    assert (result.ok, result.checkpoint_seq, result.events) == (True, 0, 2)
    t = trail(path)
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 3
    await t.aclose()


async def test_a_failed_write_is_reported_to_every_caller(tmp_path: Path) -> None:
    # /dev/full takes the open and refuses every write (ENOSPC).
    t = AuditTrail(JsonlSink("/dev/full", key=KEY, checkpoint=tmp_path / "cp"))
    outcomes = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, AuditSinkError) for o in outcomes)
    assert "cannot append to audit file /dev/full" in str(outcomes[0])
    assert "No space left" in str(outcomes[0])
    assert "cutting the file back to 0 bytes failed" in str(outcomes[0])
    await t.aclose()
    # The checkpoint of the empty trail went first, and stays.
    assert data(tmp_path / "cp") == empty_checkpoint() + b"\n"


async def test_an_unopenable_trail_fails_every_caller(tmp_path: Path) -> None:
    t = trail(tmp_path)  # a directory: cannot be opened as a file
    outcomes = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, AuditSinkError) for o in outcomes)
    assert all("cannot open audit file" in str(o) for o in outcomes)
    assert "cannot open audit file" in str(await t.probe())
    await t.aclose()


async def test_a_batch_whose_checkpoint_cannot_be_written_is_cut_off_again(
    five: Path,
) -> None:
    blocker = block(f"{five}.checkpoint")  # the temporary checkpoint cannot be opened
    before, checkpoint = data(five), data(f"{five}.checkpoint")
    t = trail(five)
    with pytest.raises(AuditSinkError, match="cannot write the audit checkpoint"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert (data(five), data(f"{five}.checkpoint")) == (before, checkpoint)
    # Readiness stays down while it cannot write, and sees it recover.
    assert "cannot write the audit checkpoint" in str(await t.probe())
    assert unblock(blocker)  # never removed a directory it did not make
    assert await t.probe() is None
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 6
    await t.aclose()
    assert data(blocker) is None
    assert verify_file(five, key=KEY).events == 6


async def test_a_fresh_trail_writes_its_checkpoint_before_its_first_event(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path, checkpoint=tmp_path / "no-such-dir" / "cp")
    with pytest.raises(AuditSinkError, match="cannot write the audit checkpoint"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert path.read_bytes() == b""


async def test_probe_says_whether_the_sink_can_take_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    assert await t.probe() is None  # no file yet, a writable directory
    assert not path.exists()
    await record(t, 2)
    assert await t.probe() is None
    append_partial(path)
    assert "does not end in a whole event" in str(await t.probe())
    put(path, data(path)[:-20])
    assert "is shorter than its checkpoint" in str(await t.probe())
    path.unlink()
    assert await t.probe() == f"{path} is gone but its checkpoint names event 2"
    put(f"{path}.checkpoint", b"garbage")
    assert "not valid JSON" in str(await t.probe())
    await t.aclose()


async def test_probe_of_a_trail_in_a_missing_directory(tmp_path: Path) -> None:
    t = trail(tmp_path / "gone" / "audit.jsonl")
    assert "its directory is not writable" in str(await t.probe())
    await t.aclose()


# -- verification -------------------------------------------------------------


def edit(rows: list[bytes]) -> list[bytes]:
    rows[2] = rows[2].replace(b'"cus_2"', b'"cus_7"')
    return rows


def edit_and_rehash(rows: list[bytes]) -> list[bytes]:
    rows[2] = forge(rows[2], None, customer_id="cus_7")
    return rows


def edit_last_and_rehash(rows: list[bytes]) -> list[bytes]:
    rows[4] = forge(rows[4], OTHER_SECRET, customer_id="cus_7")
    return rows


def recompute_from_3(rows: list[bytes]) -> list[bytes]:
    recompute(rows, 2, None, customer_id="cus_7")
    return rows


def recompute_with_a_guessed_key(rows: list[bytes]) -> list[bytes]:
    recompute(rows, 0, OTHER_SECRET, fields={"Customer.email": "masked"})
    return rows


def reformat(rows: list[bytes]) -> list[bytes]:
    rows[2] = json.dumps(json.loads(rows[2]), sort_keys=True).encode() + b"\n"
    return rows


def delete(rows: list[bytes]) -> list[bytes]:
    del rows[2]
    return rows


def delete_two(rows: list[bytes]) -> list[bytes]:
    del rows[1:3]
    return rows


def delete_first(rows: list[bytes]) -> list[bytes]:
    return rows[1:]


def insert_copy(rows: list[bytes]) -> list[bytes]:
    rows.insert(3, rows[2])
    return rows


def insert_older_copy(rows: list[bytes]) -> list[bytes]:
    rows.insert(4, rows[1])
    return rows


def insert_forged(rows: list[bytes]) -> list[bytes]:
    prev = json.loads(rows[2])["hash"]
    rows.insert(3, forge(rows[2], None, customer_id="cus_x", seq=4, prev_hash=prev))
    return rows


def insert_forged_keyed(rows: list[bytes]) -> list[bytes]:
    prev = json.loads(rows[2])["hash"]
    rows.insert(3, forge(rows[2], OTHER_SECRET, customer_id="cus_x", seq=4, prev_hash=prev))
    return rows


def reorder(rows: list[bytes]) -> list[bytes]:
    rows[2], rows[3] = rows[3], rows[2]
    return rows


def move_to_end(rows: list[bytes]) -> list[bytes]:
    return [rows[0], *rows[2:], rows[1]]


def drop_tail(rows: list[bytes]) -> list[bytes]:
    return rows[:3]


def drop_last(rows: list[bytes]) -> list[bytes]:
    return rows[:4]


def empty_rows(rows: list[bytes]) -> list[bytes]:
    return []


def partial_last(rows: list[bytes]) -> list[bytes]:
    rows[4] = rows[4][:40]
    return rows


def cut_middle(rows: list[bytes]) -> list[bytes]:
    rows[2] = rows[2][:40] + b"\n"
    return rows


def blank_line(rows: list[bytes]) -> list[bytes]:
    rows.insert(2, b"\n")
    return rows


def unkeyed_format(rows: list[bytes]) -> list[bytes]:
    data = json.loads(rows[0])
    del data["key_id"]
    data["fields"] = sorted(data["fields"])
    return [canonical(data) + b"\n", *rows[1:]]


@pytest.mark.parametrize(
    ("tamper", "problem", "line", "reason"),
    [
        (edit, "edited", 3, "MAC does not match its content: it was edited"),
        (edit_and_rehash, "edited", 3, "edited"),
        (edit_last_and_rehash, "edited", 5, "edited"),
        (recompute_from_3, "recomputed", 3, "recomputed without the key"),
        (recompute_with_a_guessed_key, "recomputed", 1, "recomputed without the key"),
        (reformat, "malformed", 3, "not in canonical form"),
        (delete, "deleted", 3, "event 4 follows event 2: event 3 is missing: deleted"),
        (delete_two, "deleted", 2, "event 4 follows event 1: events 2-3 are missing"),
        (delete_first, "deleted", 1, "event 2 follows the start: event 1 is missing"),
        (insert_copy, "inserted", 4, "event 3 again after event 3: an inserted copy"),
        (insert_older_copy, "inserted", 5, "event 2 again after event 4"),
        (insert_forged, "inserted", 4, "sits between events 3 and 4: it was inserted"),
        (insert_forged_keyed, "inserted", 4, "sits between events 3 and 4"),
        (reorder, "reordered", 3, "event 4 follows event 2, and event 3 comes later"),
        (move_to_end, "reordered", 2, "event 3 follows event 1, and event 2 comes later"),
        (drop_tail, "truncated", 4, "ends at event 3 but its checkpoint names event 5: events 4-5"),
        (drop_last, "truncated", 5, "event 5 is missing from the end"),
        (empty_rows, "emptied", 1, "empty but its checkpoint names event 5: it was emptied"),
        (partial_last, "partial_line", 5, "no newline"),
        (cut_middle, "malformed", 3, "not valid JSON"),
        (blank_line, "malformed", 3, "not valid JSON"),
        (unkeyed_format, "malformed", 1, "an unkeyed event from an older c360"),
    ],
)
def test_verify_names_what_was_done_and_where(five, tamper, problem, line, reason, capsys) -> None:
    assert problem in PROBLEMS
    write(five, tamper(lines(five)))
    result = verify_file(five, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, problem, line)
    assert reason in result.reason
    assert (result.events, result.checkpoint_seq) == (line - 1, 5)
    verified = [json.loads(row)["hash"] for row in lines(five)[: line - 1]]
    assert result.head_hash == (verified[-1] if verified else GENESIS)

    assert audit_main(["verify", str(five), "--key", f"file:{keyfile(five.parent)}"]) == 1
    out = capsys.readouterr().out
    assert out == (
        f"BROKEN {five}: {problem} at line {line}: {result.reason} "
        f"({line - 1} events verified before it)\n"
    )


def keyfile(directory: Path, text: str = KEY_TEXT) -> Path:
    path = directory / "audit.key"
    path.write_text(text + "\n")
    return path


async def test_a_deleted_file_is_an_emptied_trail(five: Path) -> None:
    remove(five)
    result = verify_file(five, key=KEY)
    assert (result.problem, result.first_broken_line, result.events) == ("emptied", 1, 0)


@pytest.mark.parametrize(
    ("tamper", "problem", "reason"),
    [
        (
            remove_checkpoint,
            "missing_checkpoint",
            "no checkpoint for a trail of 5 events (looked for {trail}.checkpoint): it was "
            "deleted (an empty trail without one was emptied along with it, or never written "
            "by c360)",
        ),
        (
            edit_checkpoint,
            "checkpoint_edited",
            "the checkpoint's signature does not verify: it was edited",
        ),
        (garble_checkpoint, "checkpoint_edited", "the checkpoint is not valid JSON: it was edited"),
    ],
)
def test_verify_names_what_was_done_to_the_checkpoint(five, tamper, problem, reason) -> None:
    tamper(five)
    result = verify_file(five, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, problem, None)
    assert result.reason == reason.format(trail=five)
    assert (result.events, result.checkpoint_seq) == (5, None)


async def test_a_checkpoint_signed_with_another_key(five: Path) -> None:
    other = await written(five.parent / "other.jsonl", 5, OTHER)
    put(f"{five}.checkpoint", data(f"{other}.checkpoint"))
    result = verify_file(five, key=KEY)
    assert (result.problem, result.first_broken_line) == ("checkpoint_edited", None)
    assert f"signed with key id {OTHER.id}, not this key's ({KEY.id})" in result.reason


async def test_a_trail_rebuilt_under_another_key_without_its_checkpoint(five: Path) -> None:
    rows = lines(five)
    for i, row in enumerate(rows):
        prev = json.loads(rows[i - 1])["hash"] if i else GENESIS
        rows[i] = forge(row, OTHER_SECRET, key_id=OTHER.id, prev_hash=prev)
    write(five, rows)
    remove_checkpoint(five)
    result = verify_file(five, key=KEY)
    assert (result.problem, result.first_broken_line) == ("wrong_key", 1)
    # With its checkpoint, the key is proven right: the trail was rebuilt.
    await written(five.parent / "fresh.jsonl", 5)
    put(f"{five}.checkpoint", data(f"{five.parent}/fresh.jsonl.checkpoint"))
    assert verify_file(five, key=KEY).problem == "recomputed"


async def test_empty_trails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    result = verify_file(path, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (
        False, "missing_checkpoint", None,
    )  # fmt: skip
    assert result.reason == (
        f"no checkpoint for an empty trail (looked for {path}.checkpoint): it was deleted (an "
        "empty trail without one was emptied along with it, or never written by c360)"
    )
    with pytest.raises(AuditError, match="cannot read"):
        verify_file(tmp_path / "missing.jsonl", key=KEY)
    # A trail whose first append failed after its first checkpoint: empty and intact.
    (tmp_path / "cp").write_bytes(empty_checkpoint())
    result = verify_file(path, key=KEY, checkpoint=tmp_path / "cp")
    assert (result.ok, result.events, result.checkpoint_seq) == (True, 0, 0)
    wrong = verify_file(path, key=OTHER, checkpoint=tmp_path / "cp")
    assert (wrong.problem, wrong.first_broken_line) == ("wrong_key", None)


# -- the command line -----------------------------------------------------------


def test_cli_exit_codes_and_key_sources(five: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("C360_AUDIT_KEY", raising=False)
    head = json.loads(lines(five)[-1])["hash"]
    key = f"file:{keyfile(tmp_path)}"
    assert audit_main(["verify", str(five), "--key", key]) == 0
    assert capsys.readouterr().out == (
        f"OK {five}: 5 events, chain intact, checkpoint at event 5, head {head}\n"
    )
    monkeypatch.setenv("C360_TEST_AUDIT_KEY", KEY_TEXT)
    assert audit_main(["verify", str(five), "--key", "env:C360_TEST_AUDIT_KEY"]) == 0
    assert audit_main(["verify", str(five), "--key", f"file:{keyfile(tmp_path, OTHER_TEXT)}"]) == 1
    assert "wrong_key" in capsys.readouterr().out
    assert audit_main(["verify", str(five)]) == 2
    assert "no key" in capsys.readouterr().err
    monkeypatch.setenv("C360_AUDIT_KEY", KEY_TEXT)
    assert audit_main(["verify", str(five)]) == 0
    moved = tmp_path / "elsewhere.cp"
    Path(f"{five}.checkpoint").rename(moved)
    assert audit_main(["verify", str(five)]) == 1
    assert "missing_checkpoint" in capsys.readouterr().out
    assert audit_main(["verify", str(five), "--checkpoint", str(moved)]) == 0
    capsys.readouterr()

    for argv, message in [
        (["verify", str(tmp_path / "missing.jsonl")], "cannot read"),
        (["verify", str(five), "--key", "literal-key"], "not a literal"),
        (["verify", str(five), "--key", "env:C360_TEST_UNSET_VAR"], "C360_TEST_UNSET_VAR"),
        (["verify", str(five), "--redis", "redis://127.0.0.1:1/0"], "either FILE or --redis"),
        (["verify"], "either FILE or --redis"),
        (["verify", str(five), "--stream", "s"], "--stream goes with --redis"),
        (["verify", "--redis", "redis://h", "--checkpoint", "x"], "--checkpoint goes with FILE"),
        (["verify", "--redis", "http://example.invalid"], "not supported"),
    ]:
        assert audit_main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert audit_main([]) == 2
    assert audit_main(["check", str(five)]) == 2


def test_cli_takes_the_key_and_the_trail_from_the_config(five: Path, tmp_path, capsys) -> None:
    config = tmp_path / "c360.yaml"
    key = f"file:{keyfile(tmp_path)}"
    config.write_text(json.dumps({"audit": {"key": key, "path": str(five)}}))
    assert audit_main(["verify", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {five}: 5 events")
    assert audit_main(["verify", str(five), "--config", str(config)]) == 0
    (tmp_path / "other").mkdir()
    other = f"file:{keyfile(tmp_path / 'other', OTHER_TEXT)}"
    assert audit_main(["verify", "--config", str(config), "--key", other]) == 1
    capsys.readouterr()
    config.write_text(json.dumps({"audit": {"path": str(five)}}))
    assert audit_main(["verify", "--config", str(config)]) == 2
    assert "audit.key is required" in capsys.readouterr().err
    assert audit_main(["verify", "--config", str(tmp_path / "nope.yaml")]) == 2


# -- settings -------------------------------------------------------------------


@pytest.fixture
def key_env(monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("C360_TEST_AUDIT_KEY", KEY_TEXT)
    return {"key": "env:C360_TEST_AUDIT_KEY"}


async def test_settings_default_to_a_file_and_to_redis_when_configured(
    tmp_path: Path, key_env, caplog
) -> None:
    caplog.set_level(logging.WARNING, "c360.audit")
    t = audit_from_settings({"audit": key_env})
    assert isinstance(t.sink, JsonlSink) and t.sink.path == Path("c360-audit.jsonl")
    assert t.sink.checkpoint == Path("c360-audit.jsonl.checkpoint")
    assert t.sink.key == KEY and t.on_failure == "deny"
    await t.aclose()
    path = tmp_path / "trail.jsonl"
    t = audit_from_settings({"audit": {**key_env, "path": str(path), "on_failure": "deny"}})
    assert isinstance(t.sink, JsonlSink) and t.sink.path == path
    assert t.sink.checkpoint == tmp_path / "trail.jsonl.checkpoint"
    await t.aclose()
    elsewhere = tmp_path / "anchor" / "trail.cp"
    elsewhere.parent.mkdir()
    t = audit_from_settings({"audit": {**key_env, "path": str(path), "checkpoint": str(elsewhere)}})
    assert isinstance(t.sink, JsonlSink) and t.sink.checkpoint == elsewhere
    await t.aclose()
    assert caplog.records == []

    t = audit_from_settings({"audit": key_env, "cache": {"redis_url": "redis://127.0.0.1:1/0"}})
    assert isinstance(t.sink, RedisStreamSink) and t.sink.stream == "c360:audit"
    assert t.sink.key == KEY
    await t.aclose()
    t = audit_from_settings(
        {"audit": {**key_env, "sink": "redis", "redis_url": "redis://127.0.0.1:1/0", "stream": "s",
                   "on_failure": "allow"}}
    )  # fmt: skip
    assert isinstance(t.sink, RedisStreamSink) and t.sink.stream == "s"
    assert t.on_failure == "allow"
    assert caplog.records[0].getMessage() == (
        "audit.on_failure is 'allow': PII WILL BE SERVED WITHOUT AN AUDIT EVENT whenever "
        "the audit trail cannot store one"
    )
    assert caplog.records[0].levelno == logging.WARNING
    await t.aclose()
    t = audit_from_settings(
        {"audit": {**key_env, "sink": "file"}, "cache": {"redis_url": "redis://x"}}
    )
    assert isinstance(t.sink, JsonlSink)
    await t.aclose()
    keyfile(tmp_path)
    t = audit_from_settings({"audit": {"key": f"file:{tmp_path / 'audit.key'}"}})
    assert t.sink.key == KEY  # type: ignore[attr-defined]
    await t.aclose()


async def test_the_demo_signs_its_trail_with_a_public_demo_key() -> None:
    settings = sandbox_settings("http://127.0.0.1:1")
    t = audit_from_settings(settings.raw)
    assert t.sink.key == AuditKey.from_text(DEMO_AUDIT_KEY_TEXT, where="demo")  # type: ignore[attr-defined]
    assert t.on_failure == "deny"
    await t.aclose()


MAKE_ONE = "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
MISSING_KEY = (
    "audit.key is required: a reference (env:NAME or file:PATH) to urlsafe base64 of at least "
    "32 random bytes, which signs the audit trail so `c360 audit verify` can prove it untouched; "
    + MAKE_ONE
)
UNSET = "environment variable C360_TEST_UNSET_VAR is not set"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"audit": "yes"}, "audit must be a mapping"),
        ({"audit": {}}, MISSING_KEY),
        ({"audit": {"key": ""}}, MISSING_KEY),
        (
            {"audit": {"key": "c2VjcmV0LWtleS1ieXRlcy1zZWNyZXQta2V5LWJ5dGVzLTMy"}},
            "audit.key: a credential must be 'env:NAME' or 'file:PATH', not a literal",
        ),
        ({"audit": {"key": 42}}, "audit.key must be a reference: env:NAME or file:PATH"),
        ({"audit": {"key": "env:C360_TEST_UNSET_VAR"}}, f"audit.key: {UNSET}"),
        (
            {"audit": {"key": "env:C360_TEST_SHORT_KEY"}},
            f"audit.key: the audit key must decode to at least 32 bytes (got 5); {MAKE_ONE}",
        ),
        ({"audit": {"sink": "syslog"}}, "audit.sink must be 'file' or 'redis'"),
        ({"audit": {"sink": "redis"}}, "audit.redis_url is required when audit.sink is 'redis'"),
        ({"audit": {"patth": "x"}}, "audit: unknown setting(s) patth"),
        ({"audit": {"b": 1, "a": 2}}, "audit: unknown setting(s) a, b"),
        (
            {"audit": {"on_failure": "ignore"}},
            "audit.on_failure must be 'deny' (the default) or 'allow'",
        ),
        (
            {"audit": {"on_failure": True}},
            "audit.on_failure must be 'deny' (the default) or 'allow'",
        ),
        (
            {"audit": {"path": "/nonexistent-dir/a.jsonl"}},
            "audit.path: directory /nonexistent-dir does not exist",
        ),
        (
            {"audit": {"checkpoint": "/nonexistent-dir/a.cp"}},
            "audit.checkpoint: directory /nonexistent-dir does not exist",
        ),
        (
            {"audit": {"path": "a.jsonl", "checkpoint": "a.jsonl"}},
            "audit.checkpoint must be another file than audit.path",
        ),
        ({"audit": {"path": 3}}, "audit.path must be a string"),
        (
            {"audit": {"sink": "redis", "redis_url": "redis://h", "path": "a"}},
            "audit.path applies to the file sink only",
        ),
        (
            {"audit": {"sink": "redis", "redis_url": "redis://h", "checkpoint": "a"}},
            "audit.checkpoint applies to the file sink only",
        ),
        ({"audit": {"redis_url": "env:C360_TEST_UNSET_VAR"}}, f"audit.redis_url: {UNSET}"),
        (
            {"audit": {}, "cache": {"redis_url": "file:/nonexistent-dir/url"}},
            "cache.redis_url: cannot read secrets file /nonexistent-dir/url",
        ),
        ({"audit": {}, "cache": {"redis_url": 3}}, "cache.redis_url must be a string"),
        (
            {"audit": {}, "cache": {"redis_url": "redis+sentinel://h/m"}},
            "cache.redis_url: 'redis+sentinel' URLs are not supported: use redis://, rediss:// "
            "or unix:// (or set audit.sink: file)",
        ),
        (
            {"audit": {"redis_url": "hunter2@redis-host:6379"}},  # never echoed: may be secret
            "audit.redis_url: not a Redis URL: use redis://, rediss:// or unix:// "
            "(or set audit.sink: file)",
        ),
        (
            {"audit": {"redis_url": "redis://h:port/0"}},
            "audit.redis_url: not a usable Redis URL: Port could not be cast to integer value "
            "as 'port' (or set audit.sink: file)",
        ),
    ],
)
def test_bad_settings_say_which_setting(raw, message, monkeypatch) -> None:
    monkeypatch.setenv("C360_TEST_AUDIT_KEY", KEY_TEXT)
    monkeypatch.setenv("C360_TEST_SHORT_KEY", "c2hvcnQ")
    monkeypatch.delenv("C360_TEST_UNSET_VAR", raising=False)
    audit = raw["audit"]
    if isinstance(audit, dict) and "key" not in audit and message != MISSING_KEY:
        raw = {**raw, "audit": {"key": "env:C360_TEST_AUDIT_KEY", **audit}}
    with pytest.raises(ConfigError) as caught:
        audit_from_settings(raw)
    assert str(caught.value) == message


def test_a_bad_cache_redis_url_names_its_setting(monkeypatch) -> None:
    monkeypatch.setenv("C360_TEST_AUDIT_KEY", KEY_TEXT)
    with pytest.raises(ConfigError, match=r"^cache.redis_url: .*or set audit.sink: file"):
        audit_from_settings(
            {
                "audit": {"key": "env:C360_TEST_AUDIT_KEY"},
                "cache": {"redis_url": "redis+sentinel://h/m"},
            }
        )


def test_an_event_parses_back_only_when_it_is_exactly_what_was_written(five: Path) -> None:
    row = lines(five)[1][:-1]
    event = AuditEvent.from_json(row)
    assert event.to_json() == row and event.verifies(KEY) and not event.verifies(OTHER)
    assert event.fields == FIELDS


class BrokenSink:
    """A sink that fails the way a test asks: raises ``error`` or returns ``events``."""

    def __init__(self, error: BaseException | None = None, events: list | None = None) -> None:
        self.error, self.events = error, events

    async def append(self, drafts):
        if self.error is not None:
            raise self.error
        return self.events

    async def probe(self, *, write: bool = False):
        raise RuntimeError("probe bug")

    async def aclose(self) -> None:
        return None


async def test_a_cancelled_append_fails_every_waiting_caller_instead_of_hanging() -> None:
    t = AuditTrail(BrokenSink(asyncio.CancelledError()), max_batch=2)
    outcomes = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(5)),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [AuditSinkError] * 5
    await t.aclose()


async def test_a_sink_that_stores_fewer_events_than_asked_fails_the_batch() -> None:
    t = AuditTrail(BrokenSink(events=[]))
    with pytest.raises(AuditSinkError, match="the sink stored 0 of 1 events"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert await t.probe() == "the audit probe failed: RuntimeError('probe bug')"
    await t.aclose()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds the trail's lock, as a writer stuck on a dead disk would."""
    with open(path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


async def test_probe_of_a_trail_locked_by_a_stuck_writer_times_out(five: Path) -> None:
    t = AuditTrail(JsonlSink(five, key=KEY, probe_timeout=0.2))
    with locked(five):
        assert await t.probe() == f"{five} did not answer within 0.2 s (locked? slow disk?)"
    assert await t.probe() is None
    await t.aclose()


def good_event() -> dict:
    return json.loads(AuditEvent(
        time="t", subject="s", client_id=None, customer_id="c1", fields=FIELDS,
        operation=None, request_id=None, source_ip=None,
    ).signed(KEY, 1, GENESIS).to_json())  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"time": 5}, "malformed time"),
        ({"subject": None}, "malformed subject"),
        ({"customer_id": 1}, "malformed customer_id"),
        ({"client_id": 3}, "malformed client_id"),
        ({"operation": ["x"]}, "malformed operation"),
        ({"request_id": 1.5}, "malformed request_id"),
        ({"source_ip": {}}, "malformed source_ip"),
        ({"fields": []}, "malformed fields"),
        ({"fields": {}}, "malformed fields"),
        ({"fields": ["Customer.email"]}, "malformed fields"),
        ({"fields": {"email": "full"}}, "malformed fields"),
        ({"fields": {"Customer.email": "half"}}, "malformed fields"),
        ({"fields": {"Customer.email": 1}}, "malformed fields"),
        ({"seq": 0}, "malformed seq"),
        ({"seq": True}, "malformed seq"),
        ({"seq": "1"}, "malformed seq"),
        ({"prev_hash": "ab"}, "malformed prev_hash"),
        ({"hash": "A" * 64}, "malformed hash"),
        ({"key_id": "abc"}, "malformed key_id"),
        ({"key_id": None}, "malformed key_id"),
        ({"time": 5, "seq": 0, "key_id": ""}, "malformed time, seq, key_id"),
        ({"extra": 1}, "not an audit event (wrong keys)"),
    ],
)
def test_a_malformed_event_says_what_is_wrong(changes: dict, message: str) -> None:
    raw = canonical({**good_event(), **changes})
    with pytest.raises(AuditFormatError) as caught:
        AuditEvent.from_json(raw)
    assert str(caught.value) == message
    for not_an_event in (b"[1]", b'"x"', b"{}"):
        with pytest.raises(AuditFormatError, match="wrong keys"):
            AuditEvent.from_json(not_an_event)
    assert AuditEvent.from_json(canonical(good_event())).verifies(KEY)
    for raw, exact in [
        (b"{", "not valid JSON (a cut or edited line)"),
        (json.dumps(good_event()).encode(), "not in canonical form: the line was edited"),
        (
            canonical({k: v for k, v in good_event().items() if k != "key_id"}),
            "an unkeyed event from an older c360, not an HMAC chain",
        ),
    ]:
        assert refusal(AuditFormatError, AuditEvent.from_json, raw) == exact


def cp(**changes: object) -> bytes:
    body = {"seq": 3, "hash": "a" * 64, "size": 10, "key_id": KEY.id, "sig": "b" * 64}
    return canonical({**body, **changes})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "the checkpoint is not valid JSON"),
        (b"[]", "the checkpoint is not a checkpoint (wrong keys)"),
        (cp(extra=1), "the checkpoint is not a checkpoint (wrong keys)"),
        (cp(seq=-1), "the checkpoint's seq or size is not a count"),
        (cp(size=-1), "the checkpoint's seq or size is not a count"),
        (cp(seq=True), "the checkpoint's seq or size is not a count"),
        (cp(size="10"), "the checkpoint's seq or size is not a count"),
        (cp(seq=0), "the checkpoint of an empty trail names an event"),
        (cp(seq=0, hash=GENESIS), "the checkpoint of an empty trail names an event"),
        (cp(hash="a" * 63), "the checkpoint's hash, key id or signature is malformed"),
        (cp(sig="B" * 64), "the checkpoint's hash, key id or signature is malformed"),
        (cp(key_id="x" * 16), "the checkpoint's hash, key id or signature is malformed"),
    ],
)
def test_a_malformed_checkpoint_says_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(AuditFormatError) as caught:
        Checkpoint.from_json(raw)
    assert str(caught.value) == message
    assert Checkpoint.from_json(cp()).seq == 3
    assert Checkpoint.from_json(cp(seq=0, hash=GENESIS, size=0)).seq == 0


async def test_an_event_from_another_chain_of_the_same_key(tmp_path: Path) -> None:
    first = await written(tmp_path / "a.jsonl", 4)
    second = await written(tmp_path / "b.jsonl", 4, subject="agent-2")
    write(first, [*lines(first)[:2], *lines(second)[2:]])
    result = verify_file(first, key=KEY)
    assert (result.problem, result.first_broken_line) == ("inserted", 3)
    assert "event 3 does not link to event 2: it is from another chain" in result.reason


def test_an_edit_followed_by_garbage_is_an_edit(five: Path) -> None:
    rows = edit(lines(five))
    rows[3] = b"garbage\n"
    write(five, rows)
    result = verify_file(five, key=KEY)
    assert (result.problem, result.first_broken_line) == ("edited", 3)


async def test_an_empty_trail_with_its_checkpoint_takes_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    put(path, b"")
    put(f"{path}.checkpoint", empty_checkpoint())
    t = trail(path)
    assert await t.probe() is None
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 1
    await t.aclose()


def garble_checkpoint_of_a_gone_file(path: Path) -> None:
    remove(path)
    garble_checkpoint(path)


def checkpoint_is_a_directory(path: Path) -> None:
    remove_checkpoint(path)
    Path(f"{path}.checkpoint").mkdir()


def huge_last_line(path: Path) -> None:
    put(path, data(path) + b"x" * (1 << 20) + b"\n")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (garble_checkpoint_of_a_gone_file, "not valid JSON"),
        (checkpoint_is_a_directory, "cannot read the audit checkpoint"),
        (huge_last_line, "an event longer than 1048576 bytes"),
    ],
)
async def test_appends_refused_for_what_cannot_be_read(five: Path, tamper, message) -> None:
    tamper(five)
    t = trail(five)
    with pytest.raises(AuditSinkError, match=message):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert message in str(await t.probe())
    await t.aclose()


def test_unreadable_trails_are_errors_not_verdicts(five: Path, capsys) -> None:
    checkpoint_is_a_directory(five)
    with pytest.raises(AuditError, match=r"cannot read .*checkpoint"):
        verify_file(five, key=KEY)
    with pytest.raises(AuditError, match="cannot read"):
        verify_file(five.parent, key=KEY, checkpoint=five.parent / "none")
    assert audit_main(["verify", str(five), "--key", f"file:{keyfile(five.parent)}"]) == 2
    assert "cannot read" in capsys.readouterr().err


class FlakySink:
    """Fails the first ``failures`` appends, then stores; records each probe's ``write``."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or RuntimeError("disk on fire")
        self.appends = 0
        self.probes: list[bool] = []

    async def append(self, drafts):
        self.appends += 1
        if self.appends <= self.failures:
            raise self.error
        return [draft.signed(KEY, i + 1, GENESIS) for i, draft in enumerate(drafts)]

    async def probe(self, *, write: bool = False):
        self.probes.append(write)
        return None

    async def aclose(self) -> None:
        return None


async def test_each_failed_batch_fails_its_callers_and_the_next_batch_is_still_tried() -> None:
    sink = FlakySink(failures=2)
    t = AuditTrail(sink, max_batch=1)
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(3)),
            return_exceptions=True,
        ),
        timeout=10,
    )
    assert sink.appends == 3
    assert [type(o) for o in outcomes] == [AuditSinkError, AuditSinkError, AuditEvent]
    assert str(outcomes[0]) == "disk on fire"
    assert outcomes[0].__cause__ is sink.error
    await t.aclose()


async def test_a_cancelled_append_is_not_retried_and_says_what_happened() -> None:
    sink = FlakySink(failures=1, error=asyncio.CancelledError())
    t = AuditTrail(sink, max_batch=1)
    outcomes = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(3)),
        return_exceptions=True,
    )
    assert sink.appends == 1
    assert [str(o) for o in outcomes] == ["CancelledError"] * 3
    assert all(isinstance(o.__cause__, asyncio.CancelledError) for o in outcomes)
    await t.aclose()


async def test_the_probe_tries_a_write_only_after_a_failed_append_until_it_passes() -> None:
    sink = FlakySink(failures=1)
    t = AuditTrail(sink)
    assert await t.probe() is None
    with pytest.raises(AuditSinkError):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert await t.probe() is None
    assert await t.probe() is None
    assert sink.probes == [False, True, False]
    await t.aclose()
    with pytest.raises(AuditError, match=r"^the audit trail is closed$"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)


async def test_closing_waits_for_the_appends_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    tasks = [
        asyncio.create_task(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS))
        for i in range(10)
    ]
    await asyncio.sleep(0)  # let them queue: one pass of the loop, not a wait for time
    await t.aclose()
    assert verify_file(path, key=KEY).events == 10
    assert [task.result().seq for task in tasks] == list(range(1, 11))


async def test_batches_hold_256_events_by_default(tmp_path: Path) -> None:
    sink = CountingSink(JsonlSink(tmp_path / "audit.jsonl", key=KEY))
    t = AuditTrail(sink)
    await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(300))
    )
    await t.aclose()
    assert sink.batches == [256, 44]


def test_cli_help_says_what_each_option_is(capsys) -> None:
    assert audit_main(["--help"]) == 0
    out = capsys.readouterr().out
    top = " ".join(out.split())
    assert top.startswith("usage: c360 audit [-h] {verify} ...")
    shown = [" ".join(line.split()) for line in out.splitlines()]
    assert "check the PII audit trail" in shown
    assert "verify verify the keyed chain and its checkpoint; exit 0 ok, 1 broken" in shown
    assert audit_main(["verify", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(
        "usage: c360 audit verify [-h] [--checkpoint PATH] [--redis URL] [--stream STREAM] "
        "[--key REF] [--config YAML] [file]"
    )
    for text in (
        "file a JSON-lines audit file",
        "--checkpoint PATH default: FILE.checkpoint",
        "--redis URL verify a Redis stream instead",
        "--stream STREAM default: c360:audit",
        "--key REF env:NAME or file:PATH (env:C360_AUDIT_KEY)",
        "--config YAML take the key and the sink from here",
    ):
        assert text in out, text


def test_cli_errors_word_for_word(five: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("C360_AUDIT_KEY", raising=False)
    monkeypatch.delenv("C360_TEST_UNSET_VAR", raising=False)
    config = tmp_path / "c360.yaml"
    config.write_text(json.dumps({"audit": {"key": f"file:{keyfile(tmp_path)}"}}))
    for argv, message in [
        (
            ["verify", str(five), "--key", "env:C360_TEST_UNSET_VAR"],
            "--key: environment variable C360_TEST_UNSET_VAR is not set",
        ),
        (
            ["verify", str(five), "--config", str(config), "--key", "env:C360_TEST_UNSET_VAR"],
            "--key: environment variable C360_TEST_UNSET_VAR is not set",
        ),
        (
            ["verify", str(five)],
            "no key: give --key env:NAME|file:PATH, --config c360.yaml, or C360_AUDIT_KEY",
        ),
        (
            ["verify", "--key", "env:X", "--redis", "redis://h", str(five)],
            "give either FILE or --redis URL",
        ),
        (["verify", str(five), "--key", "env:X", "--stream", "s"], "--stream goes with --redis"),
        (
            ["verify", "--key", "env:X", "--redis", "redis://h", "--checkpoint", "c"],
            "--checkpoint goes with FILE (a stream's head key is its checkpoint)",
        ),
    ]:
        monkeypatch.setenv("X", KEY_TEXT)
        assert audit_main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "", argv
        assert captured.err.endswith(f"c360 audit verify: {message}\n"), argv
    monkeypatch.setenv("C360_AUDIT_KEY", "c2hvcnQ")
    assert audit_main(["verify", str(five)]) == 2
    assert capsys.readouterr().err.startswith(
        "c360 audit verify: C360_AUDIT_KEY: the audit key must decode to at least 32 bytes"
    )
    monkeypatch.setenv("C360_AUDIT_KEY", KEY_TEXT)
    remove_checkpoint(five)
    assert audit_main(["verify", str(five)]) == 1
    assert capsys.readouterr().out == (
        f"BROKEN {five}: missing_checkpoint: no checkpoint for a trail of 5 events (looked for "
        f"{five}.checkpoint): it was deleted (an empty trail without one was emptied along with "
        "it, or never written by c360) (5 events verified before it)\n"
    )


async def test_a_gone_file_is_emptied_only_when_its_checkpoint_names_an_event(
    tmp_path: Path,
) -> None:
    path = await written(tmp_path / "audit.jsonl", 1)
    remove(path)
    assert verify_file(path, key=KEY).problem == "emptied"
    put(f"{path}.checkpoint", empty_checkpoint())
    with pytest.raises(AuditError, match="cannot read"):
        verify_file(path, key=KEY)
    put(f"{path}.checkpoint", b"junk")
    with pytest.raises(AuditError, match="cannot read"):
        verify_file(path, key=KEY)


async def test_a_checkpoint_padded_past_its_size_is_not_read_whole(five: Path) -> None:
    stored = data(f"{five}.checkpoint")
    put(f"{five}.checkpoint", stored + b" " * (4096 - len(stored)))
    assert verify_file(five, key=KEY).ok  # whitespace up to 4 KiB is still JSON
    put(f"{five}.checkpoint", stored + b" " * (4097 - len(stored)))
    result = verify_file(five, key=KEY)
    assert (result.problem, result.reason) == (
        "checkpoint_edited",
        "the checkpoint is larger than 4096 bytes: it was edited",
    )
    t = trail(five)
    with pytest.raises(AuditSinkError, match="the checkpoint is larger than 4096 bytes"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()


def test_settings_read_into_one_typed_record(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("C360_TEST_AUDIT_KEY", KEY_TEXT)
    monkeypatch.setenv("C360_TEST_REDIS_URL", "redis://10.0.0.9:6379/2")
    key = {"key": "env:C360_TEST_AUDIT_KEY"}
    path = tmp_path / "t.jsonl"
    assert audit_settings({"audit": {**key, "path": str(path)}}) == AuditSettings(
        KEY, "deny", "file", path, tmp_path / "t.jsonl.checkpoint", None, "audit.redis_url",
        "c360:audit",
    )  # fmt: skip
    assert audit_settings(
        {"audit": {**key, "on_failure": "allow", "stream": "s"},
         "cache": {"redis_url": "env:C360_TEST_REDIS_URL"}}
    ) == AuditSettings(
        KEY, "allow", "redis", Path("c360-audit.jsonl"), Path("c360-audit.jsonl.checkpoint"),
        "redis://10.0.0.9:6379/2", "cache.redis_url", "s",
    )  # fmt: skip
    assert audit_settings(
        {"audit": {**key, "redis_url": "file:" + str(keyfile(tmp_path, "rediss://h:1/0"))},
         "cache": {"redis_url": "redis://ignored"}}
    ).redis_url == "rediss://h:1/0"  # fmt: skip
    assert audit_settings({"audit": {**key, "sink": "file"}, "cache": {"redis_url": "r"}}).sink == (
        "file"
    )


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h:1/0", "unix:///tmp/redis.sock"])
async def test_the_redis_sink_takes_every_redis_url_scheme_with_short_timeouts(url) -> None:
    sink = RedisStreamSink(url, key=KEY, timeout=0.75)
    options = sink._client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.75, 0.75)
    assert options["client_name"] == "c360-audit"
    assert (sink.stream, sink.head_key) == ("c360:audit", "{c360:audit}:head")
    assert RedisStreamSink(url, "{t}:s", key=KEY).head_key == "{t}:s:head"
    await sink.aclose()


def mode(path: Path | str) -> int:
    return Path(path).stat().st_mode & 0o777


def inode(path: Path | str) -> int:
    return Path(path).stat().st_ino


def test_the_trail_and_its_checkpoint_are_not_world_readable(five: Path) -> None:
    assert (mode(five), mode(f"{five}.checkpoint")) == (0o640, 0o640)


async def test_a_stale_temporary_checkpoint_is_overwritten_whole(five: Path) -> None:
    put(f"{five}.checkpoint.{os.getpid()}.tmp", b"x" * 5000)
    t = trail(five)
    await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert checkpoint_of(five)["seq"] == 6
    assert data(f"{five}.checkpoint.{os.getpid()}.tmp") is None


async def test_a_trail_past_one_mebibyte_still_takes_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(3000))
    )
    assert len(data(path)) > 1 << 20
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 3001
    await t.aclose()
    t = trail(path)  # a restarted gateway reads the last event back from the end
    assert (await t.record(subject="a", customer_id="c2", fields=FIELDS)).seq == 3002
    await t.aclose()
    assert verify_file(path, key=KEY).reason == "chain intact"


async def test_appends_refused_word_for_word(five: Path) -> None:
    append_partial(five)
    t = trail(five)
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert str(caught.value) == f"{five} does not end in a whole event; run `c360 audit verify`"
    remove_checkpoint(five)
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert str(caught.value) == (
        f"{five} has events but no checkpoint at {five}.checkpoint: run `c360 audit verify`"
    )
    await t.aclose()


async def test_after_a_cut_short_write_the_event_its_checkpoint_names_is_checked(
    tmp_path: Path,
) -> None:
    path = await written(tmp_path / "audit.jsonl", 3)
    older = data(f"{path}.checkpoint")
    t = trail(path)
    await record(t, 2, start=3)
    await t.aclose()
    put(f"{path}.checkpoint", older)  # as if the crash came before the checkpoint moved
    rows = lines(path)
    rows[2] = rows[2].replace(b'"cus_2"', b'"cus_9"')
    write(path, rows)
    t = trail(path)  # the restarted gateway
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert str(caught.value) == (
        f"{path}: the event its checkpoint names does not verify under audit.key (id {KEY.id}; "
        f"it names key id {KEY.id}): edited, or another key"
    )


async def test_a_gone_file_may_be_started_again_only_if_it_never_held_events(
    tmp_path: Path,
) -> None:
    path = await written(tmp_path / "audit.jsonl", 1)
    remove(path)
    t = trail(path)
    with pytest.raises(AuditSinkError, match="is gone but its checkpoint names event 1"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    put(f"{path}.checkpoint", empty_checkpoint())
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 1
    await t.aclose()


async def test_only_a_probe_after_a_failure_rewrites_the_checkpoint(five: Path) -> None:
    t = trail(five)
    before = inode(f"{five}.checkpoint")
    assert await t.probe() is None
    assert inode(f"{five}.checkpoint") == before  # a plain probe only reads
    blocker = block(f"{five}.checkpoint")
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert str(caught.value) == (
        f"cannot write the audit checkpoint {five}.checkpoint: [Errno 21] Is a directory: "
        f"'{blocker}'"
    )
    unblock(blocker)
    assert await t.probe() is None
    assert inode(f"{five}.checkpoint") != before  # the write probe replaced it
    await t.aclose()
    assert verify_file(five, key=KEY).ok


async def test_a_write_probe_of_a_trail_not_yet_created(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    put(f"{path}.checkpoint", empty_checkpoint())
    sink = JsonlSink(path, key=KEY)
    before = inode(f"{path}.checkpoint")
    assert await sink.probe() is None
    assert inode(f"{path}.checkpoint") == before
    blocker = block(f"{path}.checkpoint")
    assert "cannot write the audit checkpoint" in str(await sink.probe(write=True))
    unblock(blocker)
    assert await sink.probe(write=True) is None
    assert inode(f"{path}.checkpoint") != before
    assert not path.exists()
    put(f"{path}.checkpoint", b"junk")
    assert "not valid JSON" in str(await sink.probe(write=True))


def test_sinks_default_to_short_timeouts(tmp_path: Path) -> None:
    assert JsonlSink(tmp_path / "a", key=KEY).probe_timeout == 2.0
    sink = RedisStreamSink("redis://h:1/0", key=KEY)
    assert sink._client.connection_pool.connection_kwargs["socket_timeout"] == 2.0


# -- checkpoints under load ----------------------------------------------------


def _checkpoint_seq(path: Path) -> int:
    return json.loads(data(f"{path}.checkpoint") or b"{}")["seq"]


async def test_batches_in_quick_succession_share_a_checkpoint_write(tmp_path: Path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    fsyncs = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real(fd))[1])
    await record(t, 1)
    first = len(fsyncs)
    await record(t, 5, start=1)  # five batches, one after another, well within the interval
    assert len(fsyncs) - first == 5  # one fsync per batch: the checkpoint waits
    assert _checkpoint_seq(path) == 1
    await t.aclose()  # ...and is written at the latest when the trail closes
    assert _checkpoint_seq(path) == 6
    verdict = verify_file(path, key=KEY)
    assert verdict.ok and verdict.reason == "chain intact"


async def test_a_cut_after_the_last_written_checkpoint_is_still_refused(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 4)
    assert _checkpoint_seq(path) < 4  # the checkpoint on disk lags...
    write(path, lines(path)[:-1])  # ...and someone cuts the last event inside that lag
    with pytest.raises(AuditSinkError, match="is shorter than its checkpoint"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()


async def test_a_trail_swapped_for_an_older_copy_is_refused(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 1)
    copy = data(path)
    checkpoint = data(f"{path}.checkpoint")
    await record(t, 3, start=1)
    await t.sink.aclose()  # every checkpoint written: only the writer's memory is left
    put(path, copy)  # the old trail and its (then valid) checkpoint back in place
    put(f"{path}.checkpoint", checkpoint)
    with pytest.raises(AuditSinkError, match="before event 4 this gateway wrote"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()


async def test_a_checkpoint_changed_behind_the_writers_back_is_read_again(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 1)
    put(f"{path}.checkpoint", b"garbage")
    with pytest.raises(AuditSinkError, match="not valid JSON"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()


async def _until(condition, what: str) -> None:
    """Wait (bounded) for something the event loop does later: an event, not a duration."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_checkpoint_left_to_the_timer_is_written_without_closing(
    tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(audit_file, "CHECKPOINT_EVERY", 0.05)
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 3)
    await _until(lambda: _checkpoint_seq(path) == 3, "the timer's checkpoint")
    assert verify_file(path, key=KEY).reason == "chain intact"
    await record(t, 2, start=3)  # the next batches after a timer write: a new timer
    await _until(lambda: _checkpoint_seq(path) == 5, "the second timer's checkpoint")
    await t.aclose()
    assert verify_file(path, key=KEY).reason == "chain intact"  # chained after the timer's head
    assert caplog.records == []  # a checkpoint written in time is no error


async def test_a_late_checkpoint_never_goes_back_past_another_writers(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_file, "CHECKPOINT_EVERY", 3600.0)  # only close writes it
    path = tmp_path / "audit.jsonl"
    mine, theirs = trail(path), trail(path)  # two processes on one trail
    await record(mine, 1)
    await record(mine, 2, start=1)  # its checkpoint for event 3 is left for later
    await record(theirs, 2, start=3)
    await theirs.aclose()
    assert _checkpoint_seq(path) == 5
    await mine.aclose()  # the trail moved on since: event 3's checkpoint is not written
    assert _checkpoint_seq(path) == 5
    assert verify_file(path, key=KEY).reason == "chain intact"


async def test_a_checkpoint_the_timer_cannot_write_is_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(audit_file, "CHECKPOINT_EVERY", 3600.0)
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 2)
    os.unlink(f"{path}.checkpoint")
    os.mkdir(f"{path}.checkpoint")  # nothing can be renamed over a directory
    with caplog.at_level(logging.ERROR, "c360.audit"):
        await t.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        f"audit checkpoint not written: cannot write the audit checkpoint {path}.checkpoint: "
        f"[Errno 21] Is a directory: '{path}.checkpoint.{os.getpid()}.tmp' -> "
        f"'{path}.checkpoint'"
    ]


async def test_a_trail_gone_before_its_late_checkpoint_is_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(audit_file, "CHECKPOINT_EVERY", 3600.0)
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 2)
    os.unlink(path)
    with caplog.at_level(logging.ERROR, "c360.audit"):
        await t.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        f"audit checkpoint not written: cannot open audit file {path}: [Errno 2] No such file "
        f"or directory: '{path}'"
    ]


async def test_an_unchanged_trail_is_not_read_back_before_each_batch(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 2)
    reads = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda *a: (reads.append(a), real(*a))[1])
    await record(t, 3, start=2)
    assert reads == []  # as this process left it: nothing to re-read or re-verify
    put(path, data(path))  # the same bytes, but written by someone else
    await record(t, 1, start=5)
    assert reads  # checked again before the next event is chained to it
    await t.aclose()
    assert verify_file(path, key=KEY).reason == "chain intact"


# -- the trail's batches and readiness, at the edges ----------------------------


class ScriptedSink:
    """Each append fails with the next of ``errors`` (an int: stores that many events
    fewer than asked), then every append stores; each probe records ``write`` and
    waits for ``gate``."""

    def __init__(self, *errors: BaseException | int) -> None:
        self.errors = list(errors)
        self.probes: list[bool] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def append(self, drafts):
        events = [draft.signed(KEY, i + 1, GENESIS) for i, draft in enumerate(drafts)]
        error = self.errors.pop(0) if self.errors else 0
        if isinstance(error, BaseException):
            raise error
        return events[: len(events) - error]

    async def probe(self, *, write: bool = False):
        self.probes.append(write)
        await self.gate.wait()
        return None

    async def aclose(self) -> None:
        return None


async def test_a_batch_stored_short_fails_its_callers_and_the_next_batch_is_still_tried():
    t = AuditTrail(ScriptedSink(1), max_batch=1)
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(t.record(subject="a", customer_id=f"c{i}", fields=FIELDS) for i in range(2)),
            return_exceptions=True,
        ),
        timeout=10,
    )
    assert [type(o) for o in outcomes] == [AuditSinkError, AuditEvent]
    assert str(outcomes[0]) == "the sink stored 0 of 1 events"
    assert outcomes[1].customer_id == "c1"
    await t.aclose()


async def test_a_stored_batch_ends_the_write_probes_a_failure_started() -> None:
    sink = ScriptedSink(RuntimeError("disk on fire"))
    t = AuditTrail(sink)
    with pytest.raises(AuditSinkError):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.record(subject="a", customer_id="c2", fields=FIELDS)  # traffic proved it is back
    assert await t.probe() is None
    assert sink.probes == [False]
    await t.aclose()


async def test_a_new_failure_during_a_write_probe_keeps_the_probes_writing() -> None:
    sink = ScriptedSink(RuntimeError("disk on fire"), RuntimeError("disk full"))
    t = AuditTrail(sink)
    with pytest.raises(AuditSinkError, match=r"^disk on fire$"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    sink.gate.clear()
    probing = asyncio.create_task(t.probe())
    await asyncio.sleep(0)  # one pass of the loop: the probe is now waiting on the sink
    with pytest.raises(AuditSinkError, match=r"^disk full$"):
        await t.record(subject="a", customer_id="c2", fields=FIELDS)
    sink.gate.set()
    assert await probing is None  # it passed, but the append that failed meanwhile stands
    assert await t.probe() is None
    assert sink.probes == [True, True]
    await t.aclose()


# -- verdicts at the edges --------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (edit, "the event's MAC does not match its content: it was edited"),
        (partial_last, "part of an event, no newline: an interrupted write, or the trail was cut"),
        (delete, "event 4 follows event 2: event 3 is missing: deleted"),
        (insert_copy, "event 3 again after event 3: an inserted copy"),
        (reorder, "event 4 follows event 2, and event 3 comes later: events were reordered"),
    ],
)
def test_verdict_reasons_word_for_word(five: Path, tamper, reason: str) -> None:
    write(five, tamper(lines(five)))
    assert verify_file(five, key=KEY).reason == reason


async def test_an_edit_followed_by_another_chains_next_event_is_an_edit(tmp_path: Path) -> None:
    first = await written(tmp_path / "a.jsonl", 5)
    second = await written(tmp_path / "b.jsonl", 5, subject="agent-2")
    rows = edit(lines(first))[:3]
    # Event 3 of another chain of the key: the right number, but it links to another event 2.
    write(first, [*rows, lines(second)[2]])
    result = verify_file(first, key=KEY)
    assert (result.problem, result.first_broken_line) == ("edited", 3)


def test_a_recomputed_run_with_a_broken_link_is_an_edit(five: Path) -> None:
    rows = recompute_from_3(lines(five))
    rows[4] = forge(rows[4], None, seq=7)  # still names event 4's hash, but not as event 5
    write(five, rows)
    result = verify_file(five, key=KEY)
    assert (result.problem, result.first_broken_line) == ("edited", 3)


def test_an_unterminated_last_line_is_never_read_as_an_event(five: Path) -> None:
    rows = lines(five)
    # Event 3, whole but for its newline, after event 4: not read, so not "reordered".
    write(five, [rows[0], rows[1], rows[3], rows[2].rstrip(b"\n")])
    result = verify_file(five, key=KEY)
    assert (result.problem, result.first_broken_line, result.reason) == (
        "deleted", 3, "event 4 follows event 2: event 3 is missing: deleted",
    )  # fmt: skip


async def test_a_checkpoint_of_bytes_that_are_not_text_is_edited_never_a_crash(five: Path) -> None:
    put(f"{five}.checkpoint", b"\xff\xfe{\x00")
    result = verify_file(five, key=KEY)
    assert (result.problem, result.reason) == (
        "checkpoint_edited", "the checkpoint is not valid JSON: it was edited",
    )  # fmt: skip
    t = trail(five)
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert str(caught.value) == f"{five}.checkpoint: the checkpoint is not valid JSON"
    assert await t.probe() == f"{five}.checkpoint: the checkpoint is not valid JSON"
    await t.aclose()


# -- the command line, at the edges -------------------------------------------------


async def test_a_file_named_on_the_command_line_wins_over_the_configs(tmp_path, capsys) -> None:
    configured = await written(tmp_path / "configured.jsonl", 5)
    named = await written(tmp_path / "named.jsonl", 2)
    config = tmp_path / "c360.yaml"
    config.write_text(json.dumps({"audit": {"key": f"file:{keyfile(tmp_path)}",
                                            "path": str(configured)}}))  # fmt: skip
    assert audit_main(["verify", str(named), "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {named}: 2 events, chain intact")


def test_cli_without_a_command_says_which_is_missing(capsys) -> None:
    assert audit_main([]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        "usage: c360 audit [-h] {verify} ...\n"
        "c360 audit: error: the following arguments are required: command\n",
    )


# -- settings, at the edges -----------------------------------------------------------


def test_an_empty_audit_redis_url_is_no_url(key_env) -> None:
    cache = {"redis_url": "redis://10.0.0.9:6379/0"}
    settings = audit_settings({"audit": {**key_env, "redis_url": ""}, "cache": cache})
    assert (settings.sink, settings.redis_url, settings.redis_where) == (
        "redis", "redis://10.0.0.9:6379/0", "cache.redis_url",
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        audit_settings({"audit": {**key_env, "sink": "redis", "redis_url": ""}})
    assert str(caught.value) == "audit.redis_url is required when audit.sink is 'redis'"


def test_a_file_sink_never_reads_the_cache_redis_url(key_env, monkeypatch) -> None:
    # `c360 audit verify --config` on a host without the cache's Redis secret.
    monkeypatch.delenv("C360_TEST_UNSET_VAR", raising=False)
    raw = {"audit": {**key_env, "sink": "file"}, "cache": {"redis_url": "env:C360_TEST_UNSET_VAR"}}
    settings = audit_settings(raw)
    assert (settings.sink, settings.redis_url) == ("file", None)


# -- the file sink, at the edges --------------------------------------------------------


def _padded(length: int) -> dict:
    """record() arguments whose event, first in a trail, is ``length`` bytes long."""
    fields = {f"Customer.field_{i:03d}": "full" for i in range((length - 400) // 28)}

    def size(request_id: str) -> int:
        draft = new_event(time="2023-11-14T22:13:20.250Z", subject="a", customer_id="c1",
                          fields=fields, request_id=request_id)  # fmt: skip
        return len(draft.signed(KEY, 1, GENESIS).to_json())

    request_id = "r" * (1 + length - size("r"))
    assert size(request_id) == length
    return {"subject": "a", "customer_id": "c1", "fields": fields, "request_id": request_id}


@pytest.mark.parametrize("length", [4096, 4097, 8193])
async def test_a_restarted_writer_reads_back_a_first_event_of_any_length(
    tmp_path: Path, length: int
) -> None:
    # The last event is found by reading back from the end 4 KiB at a time.
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await t.record(**_padded(length))
    await t.aclose()
    assert len(data(path)) == length + 1
    t = trail(path)
    assert (await t.record(subject="a", customer_id="c2", fields=FIELDS)).seq == 2
    await t.aclose()
    assert verify_file(path, key=KEY).reason == "chain intact"


async def test_a_checkpoint_deleted_under_a_running_writer_is_written_again(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(audit_file, "CHECKPOINT_EVERY", 3600.0)  # only close writes it
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 3)  # the first batch writes its checkpoint; the writer holds the next
    os.unlink(f"{path}.checkpoint")
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 4
    await t.aclose()
    assert verify_file(path, key=KEY).reason == "chain intact"


async def test_a_writer_that_holds_a_checkpoint_will_not_start_over_when_both_files_go(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(audit_file, "CHECKPOINT_EVERY", 3600.0)
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 3)
    os.unlink(path)
    os.unlink(f"{path}.checkpoint")
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert str(caught.value) == f"{path} is gone but its checkpoint names event 3"
    assert await t.probe() == f"{path} is gone but its checkpoint names event 3"
    await t.aclose()
    assert not path.exists()
