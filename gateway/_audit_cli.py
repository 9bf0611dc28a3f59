"""``c360 audit verify``: read a trail and its checkpoint, print the verdict.

    c360 audit verify FILE [--checkpoint PATH] [--key env:NAME | file:PATH]
    c360 audit verify --redis URL [--stream S] [--key ...]
    c360 audit verify --config c360.yaml          # the sink that config names

The key comes from ``--key``, else the config's ``audit.key``, else
``env:C360_AUDIT_KEY``. Exit 0: intact; 1: broken (one line naming the
problem, see :mod:`gateway._audit_verify`); 2: usage, key or I/O error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from redis import exceptions as redis_errors

from gateway._audit_event import (
    MAX_CHECKPOINT,
    AuditError,
    AuditFormatError,
    AuditKey,
    Checkpoint,
)
from gateway._audit_file import CHECKPOINT_PURPOSE
from gateway._audit_redis import DEFAULT_STREAM, head_key, head_purpose, redis_client, text_of
from gateway._audit_settings import audit_settings
from gateway._audit_verify import Scanner, VerifyResult, checkpoint_problem
from gateway.config import ConfigError, load_document

__all__ = ["audit_main", "verify_file", "verify_stream"]

_KEY_ENV = "C360_AUDIT_KEY"


def _checkpoint(
    raw: bytes | None, key: AuditKey, purpose: bytes
) -> tuple[Checkpoint | None, str | None]:
    """The stored checkpoint (None: none or malformed), and why it does not count."""
    if raw is None:
        return None, None
    try:
        checkpoint = Checkpoint.from_json(raw)
    except AuditFormatError as exc:
        return None, f"{exc}: it was edited"
    return checkpoint, checkpoint_problem(checkpoint, key, purpose)


def verify_file(
    path: str | os.PathLike[str],
    *,
    key: AuditKey,
    checkpoint: str | os.PathLike[str] | None = None,
) -> VerifyResult:
    """Check a JSON-lines trail against its checkpoint (default ``<path>.checkpoint``)."""
    checkpoint_path = Path(checkpoint) if checkpoint else Path(f"{path}.checkpoint")
    try:
        with open(checkpoint_path, "rb") as handle:
            raw: bytes | None = handle.read(MAX_CHECKPOINT + 1)
    except FileNotFoundError:
        raw = None
    except OSError as exc:
        raise AuditError(f"cannot read {checkpoint_path}: {exc}") from exc
    stored, problem = _checkpoint(raw, key, CHECKPOINT_PURPOSE)
    scanner = Scanner(key, stored, problem, where=f" (looked for {checkpoint_path})")
    try:
        with open(path, "rb") as handle:
            for line in handle:
                whole = line.endswith(b"\n")
                scanner.feed(line[:-1] if whole else line, whole=whole)
                if scanner.decided:
                    break
    except FileNotFoundError as exc:
        if stored is None or problem is not None or stored.seq == 0:
            raise AuditError(f"cannot read {path}: {exc}") from exc
        # The checkpoint proves there were events: a deleted file is an emptied trail.
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc
    return scanner.finish()


async def verify_stream(
    redis_url: str, stream: str = DEFAULT_STREAM, *, key: AuditKey, page: int = 500
) -> VerifyResult:
    """Check a Redis stream trail against its signed head key."""
    client = redis_client(redis_url, 5.0)
    try:
        # The head is read first: writers move stream and head together, so the
        # stream read afterwards must contain the event the head names.
        head = await client.get(head_key(stream))
        raw = text_of(head).encode() if head is not None else None
        stored, problem = _checkpoint(raw, key, head_purpose(stream))
        scanner = Scanner(key, stored, problem, where=f" (head key {head_key(stream)})")
        start = "-"
        while not scanner.decided:
            entries = await client.xrange(stream, min=start, max="+", count=page) or []
            for _, values in entries:
                scanner.feed(text_of((values or {}).get(b"event")).encode())
            if len(entries) < page:
                break
            start = f"({text_of(entries[-1][0])}"
    except redis_errors.RedisError as exc:
        raise AuditError(f"cannot read {stream}: {exc}") from exc
    finally:
        await client.aclose()
    return scanner.finish()


def _usage() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c360 audit", description="check the PII audit trail")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser(
        "verify", help="verify the keyed chain and its checkpoint; exit 0 ok, 1 broken"
    )
    verify.add_argument("file", nargs="?", help="a JSON-lines audit file")
    verify.add_argument("--checkpoint", metavar="PATH", help="default: FILE.checkpoint")
    verify.add_argument("--redis", metavar="URL", help="verify a Redis stream instead")
    verify.add_argument("--stream", help=f"default: {DEFAULT_STREAM}")
    verify.add_argument("--key", metavar="REF", help=f"env:NAME or file:PATH (env:{_KEY_ENV})")
    verify.add_argument("--config", metavar="YAML", help="take the key and the sink from here")
    return parser


def _run(args: argparse.Namespace) -> tuple[str, str, VerifyResult]:
    if args.config is not None:
        settings = audit_settings(load_document(args.config))
        key = AuditKey.from_reference(args.key, where="--key") if args.key else settings.key
        if args.file is None and args.redis is None:
            if settings.sink == "file":
                args.file, args.checkpoint = str(settings.path), str(settings.checkpoint)
            else:
                args.redis, args.stream = settings.redis_url, args.stream or settings.stream
    elif args.key:
        key = AuditKey.from_reference(args.key, where="--key")
    elif os.environ.get(_KEY_ENV):
        key = AuditKey.from_reference(f"env:{_KEY_ENV}", where=_KEY_ENV)
    else:
        raise _Usage(f"no key: give --key env:NAME|file:PATH, --config c360.yaml, or {_KEY_ENV}")
    if (args.file is None) == (args.redis is None):
        raise _Usage("give either FILE or --redis URL")
    if args.file is not None:
        if args.stream:
            raise _Usage("--stream goes with --redis")
        return args.file, "line", verify_file(args.file, key=key, checkpoint=args.checkpoint)
    if args.checkpoint:
        raise _Usage("--checkpoint goes with FILE (a stream's head key is its checkpoint)")
    stream = args.stream or DEFAULT_STREAM
    return stream, "entry", asyncio.run(verify_stream(args.redis, stream, key=key))


class _Usage(Exception):
    pass


def audit_main(argv: Sequence[str]) -> int:
    """``c360 audit verify ...``: 0 intact, 1 broken, 2 usage or I/O error."""
    parser = _usage()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 on --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        where, unit, result = _run(args)
    except _Usage as exc:
        parser.print_usage(sys.stderr)
        print(f"c360 audit verify: {exc}", file=sys.stderr)
        return 2
    except (AuditError, ConfigError) as exc:
        print(f"c360 audit verify: {exc}", file=sys.stderr)
        return 2
    if result.ok:
        anchor = f", checkpoint at event {result.checkpoint_seq}"
        print(
            f"OK {where}: {result.events} events, {result.reason}{anchor}, head {result.head_hash}"
        )
        return 0
    at = f" at {unit} {result.first_broken_line}" if result.first_broken_line else ""
    print(
        f"BROKEN {where}: {result.problem}{at}: {result.reason} "
        f"({result.events} events verified before it)"
    )
    return 1
