"""The Redis stream audit sink against a real redis-server that the test starts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from connectors.sdk.testing.server import free_port
from gateway.audit import (
    AuditError,
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


async def fill(url: str, workers: int = 2, per_worker: int = 30) -> None:
    """Several trails (as several gateway workers would) writing concurrently."""
    trails = [AuditTrail(RedisStreamSink(url)) for _ in range(workers)]
    await asyncio.gather(
        *(
            t.record(subject=f"w{w}", customer_id=f"c{i}", fields=["email"], request_id=f"r{i}")
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


async def test_concurrent_writers_keep_one_chain(filled: str, db: redis.Redis) -> None:
    rows = [json.loads(fields[b"event"]) for _, fields in entries(db)]
    assert [row["seq"] for row in rows] == list(range(1, 61))
    assert {row["subject"] for row in rows} == {"w0", "w1"}
    assert db.get(HEAD) == f"60:{rows[-1]['hash']}".encode()
    result = await verify_stream(filled)
    assert (result.ok, result.events, result.head_hash) == (True, 60, rows[-1]["hash"])
    # Paging through the stream gives the same verdict.
    assert (await verify_stream(filled, page=7)).events == 60


async def test_a_restarted_writer_continues_the_chain(filled: str) -> None:
    t = AuditTrail(RedisStreamSink(filled))
    event = await t.record(subject="w9", customer_id="c1", fields=["phone"])
    await t.aclose()
    assert event.seq == 61
    assert (await verify_stream(filled)).events == 61


async def test_deleting_a_middle_entry_is_detected(filled: str, db: redis.Redis) -> None:
    db.xdel(STREAM, entries(db)[9][0])
    result = await verify_stream(filled)
    assert (result.ok, result.first_broken_line, result.events) == (False, 10, 9)


async def test_deleting_the_last_entry_is_detected(filled: str, db: redis.Redis) -> None:
    db.xdel(STREAM, entries(db)[-1][0])
    result = await verify_stream(filled)
    assert not result.ok
    assert result.first_broken_line == 60
    assert "deleted" in result.reason


async def test_an_appended_forgery_is_detected(filled: str, db: redis.Redis) -> None:
    last = json.loads(entries(db)[-1][1][b"event"])
    forged = {**last, "seq": 61, "prev_hash": last["hash"], "fields": ["ssn"]}
    db.xadd(STREAM, {"event": json.dumps(forged, sort_keys=True, separators=(",", ":"))})
    result = await verify_stream(filled)
    assert (result.ok, result.first_broken_line) == (False, 61)
    assert "edited" in result.reason


async def test_a_rewritten_entry_is_detected(filled: str, db: redis.Redis) -> None:
    # Replace event 5 by a correctly hashed copy at the end: the chain is broken at 5.
    entry_id, fields = entries(db)[4]
    event = json.loads(fields[b"event"])
    event["customer_id"] = "someone-else"
    del event["hash"]
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
    event["hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    db.xdel(STREAM, entry_id)
    db.xadd(STREAM, {"event": json.dumps(event, sort_keys=True, separators=(",", ":"))})
    result = await verify_stream(filled)
    assert (result.ok, result.first_broken_line) == (False, 5)


async def test_a_lost_head_is_detected_and_stops_writers(filled: str, db: redis.Redis) -> None:
    db.delete(HEAD)
    result = await verify_stream(filled)
    assert not result.ok and "head key" in result.reason
    t = AuditTrail(RedisStreamSink(filled))
    with pytest.raises(AuditSinkError, match="no head key"):
        await t.record(subject="a", customer_id="c1", fields=["email"])
    await t.aclose()
    assert len(entries(db)) == 60


def test_cli_verifies_a_stream(redis_url: str, db: redis.Redis, capsys) -> None:
    asyncio.run(fill(redis_url, workers=1, per_worker=3))
    assert audit_main(["verify", "--redis", redis_url]) == 0
    assert capsys.readouterr().out.startswith("OK c360:audit: 3 events")
    db.xdel(STREAM, entries(db)[0][0])
    assert audit_main(["verify", "--redis", redis_url, "--stream", STREAM]) == 1
    assert capsys.readouterr().out.startswith("BROKEN c360:audit: at entry 1:")


async def test_an_unreachable_redis_is_an_error_not_a_verdict() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(AuditError):
        await verify_stream(url)
    t = AuditTrail(RedisStreamSink(url, timeout=0.5))
    with pytest.raises(AuditSinkError):
        await t.record(subject="a", customer_id="c1", fields=["email"])
    await t.aclose()
