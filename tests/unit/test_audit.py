"""The PII audit trail: hash chain, JSON-lines sink, verification and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from gateway.audit import (
    GENESIS,
    AuditError,
    AuditSinkError,
    AuditTrail,
    JsonlSink,
    RedisStreamSink,
    audit_from_settings,
    audit_main,
    verify_file,
)
from gateway.config import ConfigError

PER_PROCESS = 150


def trail(path: Path) -> AuditTrail:
    return AuditTrail(JsonlSink(path), clock=lambda: 1_700_000_000.25)


async def record(t: AuditTrail, n: int, subject: str = "agent-1") -> None:
    for i in range(n):
        await t.record(
            subject=subject,
            customer_id=f"cus_{i}",
            fields=["email", "phone"] if i % 2 else ["Customer.email"],
            client_id="sidebar",
            operation="Customer360",
            request_id=f"req-{i}",
            source_ip="10.0.0.7",
        )


@pytest.fixture
async def five(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    await record(t, 5)
    await t.aclose()
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write(path: Path, rows: list[bytes]) -> None:
    path.write_bytes(b"".join(rows))


def rehash(row: bytes, **changes: object) -> bytes:
    data = {**json.loads(row), **changes}
    del data["hash"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    data["hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode() + b"\n"


async def test_events_are_canonical_json_chained_from_genesis(five: Path) -> None:
    rows = lines(five)
    events = [json.loads(row) for row in rows]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    for row, event in zip(rows, events, strict=True):
        assert row == json.dumps(event, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        # Anyone can recompute the hash from the published format.
        assert rehash(row) == row
    assert events[1] | {"hash": "", "prev_hash": ""} == {
        "time": "2023-11-14T22:13:20.250Z",
        "subject": "agent-1",
        "client_id": "sidebar",
        "customer_id": "cus_1",
        "fields": ["email", "phone"],
        "operation": "Customer360",
        "request_id": "req-1",
        "source_ip": "10.0.0.7",
        "seq": 2,
        "prev_hash": "",
        "hash": "",
    }
    result = verify_file(five)
    assert (result.ok, result.events, result.first_broken_line) == (True, 5, None)
    assert result.head_hash == events[-1]["hash"]


async def test_a_new_trail_continues_the_chain_of_an_existing_file(five: Path) -> None:
    t = trail(five)
    event = await t.record(subject="agent-2", customer_id="cus_9", fields=["email"])
    await t.aclose()
    assert event.seq == 6
    assert event.prev_hash == json.loads(lines(five)[4])["hash"]
    assert verify_file(five).events == 6


def edit(rows: list[bytes]) -> list[bytes]:
    rows[2] = rows[2].replace(b'"cus_2"', b'"cus_7"')
    return rows


def edit_and_rehash(rows: list[bytes]) -> list[bytes]:
    rows[2] = rehash(rows[2], customer_id="cus_7")
    return rows


def reformat(rows: list[bytes]) -> list[bytes]:
    rows[2] = json.dumps(json.loads(rows[2]), sort_keys=True).encode() + b"\n"
    return rows


def delete(rows: list[bytes]) -> list[bytes]:
    del rows[2]
    return rows


def delete_first(rows: list[bytes]) -> list[bytes]:
    return rows[1:]


def insert(rows: list[bytes]) -> list[bytes]:
    rows.insert(3, rows[2])
    return rows


def insert_forged(rows: list[bytes]) -> list[bytes]:
    # Linked to event 3 with a valid hash, but reusing its seq.
    rows.insert(3, rehash(rows[2], customer_id="cus_x", prev_hash=json.loads(rows[2])["hash"]))
    return rows


def reorder(rows: list[bytes]) -> list[bytes]:
    rows[2], rows[3] = rows[3], rows[2]
    return rows


def truncate(rows: list[bytes]) -> list[bytes]:
    rows[4] = rows[4][:40]
    return rows


def truncate_middle(rows: list[bytes]) -> list[bytes]:
    rows[2] = rows[2][:40] + b"\n"
    return rows


def blank_line(rows: list[bytes]) -> list[bytes]:
    rows.insert(2, b"\n")
    return rows


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (edit, 3, "edited"),
        (edit_and_rehash, 4, "prev_hash"),
        (reformat, 3, "canonical"),
        (delete, 3, "prev_hash"),
        (delete_first, 1, "genesis"),
        (insert, 4, "prev_hash"),
        (insert_forged, 4, "seq"),
        (reorder, 3, "prev_hash"),
        (truncate, 5, "unterminated"),
        (truncate_middle, 3, "JSON"),
        (blank_line, 3, "JSON"),
    ],
)
def test_verify_reports_the_first_broken_line(five, tamper, line, reason, capsys) -> None:
    write(five, tamper(lines(five)))
    result = verify_file(five)
    assert not result.ok
    assert result.first_broken_line == line
    assert reason in result.reason
    assert result.events == line - 1

    assert audit_main(["verify", str(five)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN") and f"line {line}:" in out and out.count("\n") == 1


def test_cli_exit_codes(five: Path, tmp_path: Path, capsys) -> None:
    assert audit_main(["verify", str(five)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "5 events" in out and out.count("\n") == 1

    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert audit_main(["verify", str(empty)]) == 0
    assert "0 events" in capsys.readouterr().out

    assert audit_main(["verify", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert audit_main(["verify"]) == 2
    assert audit_main([]) == 2
    assert audit_main(["check", str(five)]) == 2
    assert audit_main(["verify", str(five), "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert audit_main(["verify", "--redis", "http://example.invalid"]) == 2
    assert "not supported" in capsys.readouterr().err


async def test_appending_after_a_broken_tail_is_refused(five: Path) -> None:
    write(five, truncate(lines(five)))
    t = trail(five)
    with pytest.raises(AuditSinkError, match="unterminated"):
        await t.record(subject="a", customer_id="cus_1", fields=["email"])
    await t.aclose()
    assert len(lines(five)) == 5


async def test_sink_failures_reach_every_waiting_caller(tmp_path: Path) -> None:
    t = trail(tmp_path)  # a directory: cannot be opened as a file
    outcomes = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=["email"]) for i in range(3)),
        return_exceptions=True,
    )
    await t.aclose()
    assert all(isinstance(o, AuditSinkError) for o in outcomes)


async def test_values_are_refused_only_names_and_ids_are_stored(tmp_path: Path) -> None:
    t = trail(tmp_path / "audit.jsonl")
    with pytest.raises(ValueError, match="field names"):
        await t.record(subject="a", customer_id="cus_1", fields=["ada@example.com"])
    with pytest.raises(ValueError, match="field names"):
        await t.record(subject="a", customer_id="cus_1", fields=[])
    event = await t.record(subject="a", customer_id="cus_1", fields="email")
    assert event.fields == ("email",)
    with pytest.raises(ValueError, match="never an email"):
        await t.record(subject="a", customer_id="ada@example.com", fields=["email"])
    await t.aclose()
    with pytest.raises(AuditError, match="closed"):
        await t.record(subject="a", customer_id="cus_1", fields=["email"])
    assert verify_file(tmp_path / "audit.jsonl").events == 1


async def test_concurrent_records_in_one_process_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    t = trail(path)
    events = await asyncio.gather(
        *(t.record(subject="a", customer_id=f"c{i}", fields=["email"]) for i in range(100))
    )
    await t.aclose()
    assert sorted(e.seq for e in events) == list(range(1, 101))
    assert [e.customer_id for e in events] == [f"c{i}" for i in range(100)]
    assert verify_file(path).events == 100


def _writer(path: str, name: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    async def run() -> None:
        t = AuditTrail(JsonlSink(path))
        barrier.wait(timeout=30)
        for start in range(0, PER_PROCESS, 10):
            await asyncio.gather(
                *(
                    t.record(subject=name, customer_id=f"c{i}", fields=["email"])
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
    result = verify_file(path)
    assert result.ok, result.reason
    assert result.events == 2 * PER_PROCESS
    subjects = [json.loads(row)["subject"] for row in lines(path)]
    assert subjects.count("w1") == subjects.count("w2") == PER_PROCESS


async def test_settings_default_to_a_file_and_to_redis_when_configured(tmp_path: Path) -> None:
    t = audit_from_settings({})
    assert isinstance(t.sink, JsonlSink) and t.sink.path == Path("c360-audit.jsonl")
    await t.aclose()
    path = tmp_path / "trail.jsonl"
    t = audit_from_settings({"audit": {"path": str(path)}})
    assert isinstance(t.sink, JsonlSink) and t.sink.path == path
    await t.aclose()

    t = audit_from_settings({"cache": {"redis_url": "redis://127.0.0.1:1/0"}})
    assert isinstance(t.sink, RedisStreamSink) and t.sink.stream == "c360:audit"
    await t.aclose()
    t = audit_from_settings(
        {"audit": {"sink": "redis", "redis_url": "redis://127.0.0.1:1/0", "stream": "s"}}
    )
    assert isinstance(t.sink, RedisStreamSink) and t.sink.stream == "s"
    await t.aclose()
    t = audit_from_settings({"audit": {"sink": "file"}, "cache": {"redis_url": "redis://x"}})
    assert isinstance(t.sink, JsonlSink)
    await t.aclose()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"audit": "yes"}, "audit must be a mapping"),
        ({"audit": {"sink": "syslog"}}, "'file' or 'redis'"),
        ({"audit": {"sink": "redis"}}, "audit.redis_url is required"),
        ({"audit": {"patth": "x"}}, "unknown setting(s) patth"),
        ({"audit": {"path": "/nonexistent-dir/a.jsonl"}}, "does not exist"),
        ({"audit": {"path": 3}}, "audit.path must be a string"),
        ({"audit": {"sink": "redis", "redis_url": "redis://h", "path": "a"}}, "file sink only"),
        ({"audit": {"redis_url": "env:C360_TEST_UNSET_VAR"}}, "C360_TEST_UNSET_VAR"),
        ({"cache": {"redis_url": "redis+sentinel://h/m"}}, "cache.redis_url"),
    ],
)
def test_bad_settings_say_which_setting(raw, message) -> None:
    with pytest.raises(ConfigError) as caught:
        audit_from_settings(raw)
    assert message in str(caught.value)
