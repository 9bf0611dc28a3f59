"""The Redis stream audit sink against a real redis-server that the test starts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from connectors.sdk.testing.server import free_port
from gateway import _audit_redis as audit_redis
from gateway.audit import (
    GENESIS,
    AuditError,
    AuditKey,
    AuditSinkError,
    AuditTrail,
    RedisStreamSink,
    audit_main,
    verify_stream,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

SECRET = b"r" * 32
KEY = AuditKey(SECRET)
KEY_TEXT = base64.urlsafe_b64encode(SECRET).decode()
OTHER_SECRET = b"o" * 32
OTHER = AuditKey(OTHER_SECRET)
FIELDS = {"Customer.email": "full", "Customer.phone": "masked"}
STREAM = "c360:audit"
HEAD = "{c360:audit}:head"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def sink(url: str, key: AuditKey = KEY, **kwargs) -> RedisStreamSink:
    return RedisStreamSink(url, key=key, **kwargs)


async def fill(url: str, workers: int = 2, per_worker: int = 30) -> None:
    """Several trails (as several gateway workers would) writing concurrently."""
    trails = [AuditTrail(sink(url)) for _ in range(workers)]
    await asyncio.gather(
        *(
            t.record(subject=f"w{w}", customer_id=f"c{i}", fields=FIELDS, request_id=f"r{i}")
            for i in range(per_worker)
            for w, t in enumerate(trails)
        )
    )
    for t in trails:
        await t.aclose()


@pytest.fixture
async def filled(redis_url: str) -> str:
    await fill(redis_url)
    return redis_url


def entries(db: redis.Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return db.xrange(STREAM)


def canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def forged(event: dict, secret: bytes, **changes: object) -> bytes:
    data = {**event, **changes}
    del data["hash"]
    data["hash"] = hmac.new(
        secret, b"c360 audit event\n" + canonical(data), hashlib.sha256
    ).hexdigest()
    return canonical(data)


async def test_concurrent_writers_keep_one_chain_under_a_signed_head(
    filled: str, db: redis.Redis
) -> None:
    rows = [json.loads(fields[b"event"]) for _, fields in entries(db)]
    assert [row["seq"] for row in rows] == list(range(1, 61))
    assert {row["subject"] for row in rows} == {"w0", "w1"}
    assert {json.dumps(row["fields"]) for row in rows} == {json.dumps(FIELDS)}
    head = json.loads(db.get(HEAD))
    assert (head["seq"], head["hash"], head["size"], head["key_id"]) == (
        60, rows[-1]["hash"], 0, KEY.id,
    )  # fmt: skip
    body = {k: v for k, v in head.items() if k != "sig"}
    purpose = b"c360 audit stream head\nc360:audit\n"
    assert head["sig"] == hmac.new(SECRET, purpose + canonical(body), hashlib.sha256).hexdigest()
    result = await verify_stream(filled, key=KEY)
    assert (result.ok, result.events, result.head_hash) == (True, 60, rows[-1]["hash"])
    assert result.checkpoint_seq == 60
    # Paging through the stream gives the same verdict.
    assert (await verify_stream(filled, key=KEY, page=7)).events == 60


async def test_a_restarted_writer_continues_the_chain(filled: str) -> None:
    t = AuditTrail(sink(filled))
    event = await t.record(subject="w9", customer_id="c1", fields={"Contact.phone": "masked"})
    await t.aclose()
    assert event.seq == 61
    assert (await verify_stream(filled, key=KEY)).events == 61


@pytest.mark.parametrize(
    ("index", "problem", "position", "reason"),
    [
        (9, "deleted", 10, "event 11 follows event 9: event 10 is missing"),
        (0, "deleted", 1, "event 2 follows the start: event 1 is missing"),
        (-1, "truncated", 60, "ends at event 59 but its checkpoint names event 60"),
    ],
)
async def test_deleted_entries_are_named(filled, db, index, problem, position, reason) -> None:
    db.xdel(STREAM, entries(db)[index][0])
    result = await verify_stream(filled, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, problem, position)
    assert reason in result.reason


async def test_a_deleted_head_is_named_even_on_a_one_event_stream(redis_url, db) -> None:
    await fill(redis_url, workers=1, per_worker=1)
    db.delete(HEAD)
    result = await verify_stream(redis_url, key=KEY)
    assert (result.ok, result.problem, result.events) == (False, "missing_checkpoint", 1)
    assert result.reason == (
        "no checkpoint for a trail of 1 events (head key {c360:audit}:head): it was deleted (an "
        "empty trail without one was emptied along with it, or never written by c360)"
    )
    t = AuditTrail(sink(redis_url))
    with pytest.raises(AuditSinkError, match="the stream has entries but no head key"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert "has entries but no head key" in str(await t.probe())
    await t.aclose()
    assert len(entries(db)) == 1


async def test_an_emptied_stream_is_named_and_stops_writers(filled: str, db) -> None:
    db.delete(STREAM)
    result = await verify_stream(filled, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, "emptied", 1)
    t = AuditTrail(sink(filled))
    with pytest.raises(AuditSinkError, match="the stream is empty but its head key names"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert "is empty but its head names an event" in str(await t.probe())
    await t.aclose()
    assert entries(db) == []


async def test_an_edited_head_is_named_and_stops_writers(filled: str, db) -> None:
    head = json.loads(db.get(HEAD))
    db.set(HEAD, canonical({**head, "seq": 59}))
    result = await verify_stream(filled, key=KEY)
    assert (result.problem, result.first_broken_line) == ("checkpoint_edited", None)
    t = AuditTrail(sink(filled))
    with pytest.raises(AuditSinkError, match="head key of c360:audit does not verify"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert "does not verify" in str(await t.probe())
    db.set(HEAD, b"60:" + head["hash"].encode())  # the old unsigned shape
    with pytest.raises(AuditSinkError, match="head key of c360:audit is malformed"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert len(entries(db)) == 60
    assert (await verify_stream(filled, key=KEY)).problem == "checkpoint_edited"


async def test_a_head_copied_from_another_stream_does_not_verify(redis_url, db) -> None:
    await fill(redis_url, workers=1, per_worker=2)
    other = AuditTrail(sink(redis_url, stream="other"))
    await other.record(subject="a", customer_id="c1", fields=FIELDS)
    await other.record(subject="a", customer_id="c2", fields=FIELDS)
    await other.aclose()
    db.set(HEAD, db.get("{other}:head"))
    assert (await verify_stream(redis_url, key=KEY)).problem == "checkpoint_edited"


async def test_an_appended_forgery_is_detected(filled: str, db: redis.Redis) -> None:
    last = json.loads(entries(db)[-1][1][b"event"])
    forgery = {**last, "seq": 61, "prev_hash": last["hash"], "fields": {"Customer.ssn": "full"}}
    db.xadd(STREAM, {"event": canonical(forgery)})
    result = await verify_stream(filled, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, "edited", 61)


async def test_a_chain_recomputed_without_the_key_is_detected(filled: str, db) -> None:
    # Every entry from 5 on replaced by an edited copy, relinked under a guessed key.
    rows = entries(db)
    prev = json.loads(rows[3][1][b"event"])["hash"]
    for entry_id, _ in rows[4:]:
        db.xdel(STREAM, entry_id)
    for _, fields in rows[4:]:
        event = json.loads(fields[b"event"])
        raw = forged(event, OTHER_SECRET, prev_hash=prev, subject="someone-else")
        db.xadd(STREAM, {"event": raw})
        prev = json.loads(raw)["hash"]
    result = await verify_stream(filled, key=KEY)
    assert (result.ok, result.problem, result.first_broken_line) == (False, "recomputed", 5)
    assert result.events == 4


async def test_the_wrong_key_is_named(filled: str) -> None:
    result = await verify_stream(filled, key=OTHER)
    assert (result.ok, result.problem, result.first_broken_line) == (False, "wrong_key", 1)
    t = AuditTrail(sink(filled, key=OTHER))
    with pytest.raises(AuditSinkError, match=r"does not verify under audit\.key"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()


async def test_probe_reports_a_healthy_and_an_unreachable_redis(filled: str) -> None:
    t = AuditTrail(sink(filled))
    assert await t.probe() is None
    await t.aclose()
    url = f"redis://127.0.0.1:{free_port()}/0"
    t = AuditTrail(sink(url, timeout=0.5))
    with pytest.raises(AuditSinkError, match="redis: cannot append to c360:audit"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    assert str(await t.probe()).startswith("redis: ")
    await t.aclose()


async def test_probe_reports_a_redis_that_does_not_answer() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        t = AuditTrail(sink(url, timeout=0.3))
        reason = await t.probe()
        await t.aclose()
    assert reason == "redis: no answer within 0.3 s"


async def test_after_a_failed_append_the_probe_tries_a_write(redis_url, db) -> None:
    t = AuditTrail(sink(redis_url))
    db.config_set("maxmemory", 1)  # writes refused (OOM), reads still answered
    try:
        with pytest.raises(AuditSinkError, match="maxmemory"):
            await t.record(subject="a", customer_id="c1", fields=FIELDS)
        assert "maxmemory" in str(await t.probe())
    finally:
        db.config_set("maxmemory", 0)
    assert await t.probe() is None
    assert (await t.record(subject="a", customer_id="c1", fields=FIELDS)).seq == 1
    await t.aclose()


def test_cli_verifies_a_stream(redis_url: str, db: redis.Redis, capsys, monkeypatch) -> None:
    asyncio.run(fill(redis_url, workers=1, per_worker=3))
    monkeypatch.setenv("C360_TEST_REDIS_AUDIT_KEY", KEY_TEXT)
    key = ["--key", "env:C360_TEST_REDIS_AUDIT_KEY"]
    assert audit_main(["verify", "--redis", redis_url, *key]) == 0
    assert capsys.readouterr().out.startswith("OK c360:audit: 3 events, chain intact")
    db.xdel(STREAM, entries(db)[0][0])
    assert audit_main(["verify", "--redis", redis_url, "--stream", STREAM, *key]) == 1
    assert capsys.readouterr().out.startswith("BROKEN c360:audit: deleted at entry 1: ")


def test_cli_verifies_the_stream_its_config_names(redis_url, tmp_path, capsys, monkeypatch) -> None:
    asyncio.run(fill(redis_url, workers=1, per_worker=2))
    monkeypatch.setenv("C360_TEST_REDIS_AUDIT_KEY", KEY_TEXT)
    config = tmp_path / "c360.yaml"
    audit = {"key": "env:C360_TEST_REDIS_AUDIT_KEY", "sink": "redis", "redis_url": redis_url}
    config.write_text(json.dumps({"audit": audit}))
    assert audit_main(["verify", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("OK c360:audit: 2 events")
    config.write_text(json.dumps({"audit": {**audit, "stream": "empty"}}))
    assert audit_main(["verify", "--config", str(config)]) == 1
    assert "missing_checkpoint" in capsys.readouterr().out


async def test_an_unreachable_redis_is_an_error_not_a_verdict() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(AuditError, match="cannot read c360:audit"):
        await verify_stream(url, key=KEY)
    assert GENESIS == "0" * 64


async def test_a_writer_will_not_chain_over_a_cut_tail(filled: str, db: redis.Redis) -> None:
    db.xdel(STREAM, entries(db)[-1][0])
    t = AuditTrail(sink(filled))
    with pytest.raises(AuditSinkError, match="does not end in the event its head names"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    db.xadd(STREAM, {"event": b"not json"})
    t = AuditTrail(sink(filled))
    with pytest.raises(AuditSinkError, match="does not end in the event its head names"):
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert len(entries(db)) == 60


async def test_entries_that_are_not_utf8_are_malformed_not_a_crash(filled: str, db) -> None:
    db.xadd(STREAM, {"event": b"\xff\xfe"})
    result = await verify_stream(filled, key=KEY)
    assert (result.problem, result.first_broken_line) == ("malformed", 61)


async def test_only_a_probe_after_a_failure_writes_and_its_key_expires(redis_url, db) -> None:
    t = AuditTrail(sink(redis_url))
    probe_key = "{c360:audit}:head:probe"
    assert await t.probe() is None
    assert db.exists(probe_key) == 0
    db.config_set("maxmemory", 1)
    try:
        with pytest.raises(AuditSinkError):
            await t.record(subject="a", customer_id="c1", fields=FIELDS)
    finally:
        db.config_set("maxmemory", 0)
    assert await t.probe() is None
    assert db.get(probe_key) == b"1"
    assert 0 < db.pttl(probe_key) <= 10_000
    await t.aclose()


async def test_an_entry_without_an_event_is_malformed_not_a_crash(filled: str, db) -> None:
    db.xadd(STREAM, {"note": b"hello"})
    result = await verify_stream(filled, key=KEY)
    assert (result.problem, result.first_broken_line, result.reason) == (
        "malformed", 61, "not an audit event: not valid JSON (a cut or edited line)",
    )  # fmt: skip


async def test_a_writer_that_keeps_losing_the_race_gives_up_and_says_so(
    redis_url, db, monkeypatch
) -> None:
    await fill(redis_url, workers=1, per_worker=1)
    monkeypatch.setattr(audit_redis, "_MAX_ATTEMPTS", 1)  # a fresh writer's first guess loses
    t = AuditTrail(sink(redis_url))
    with pytest.raises(AuditSinkError) as caught:
        await t.record(subject="a", customer_id="c1", fields=FIELDS)
    await t.aclose()
    assert str(caught.value) == "redis: c360:audit kept moving; gave up after 1"
    assert len(entries(db)) == 1
