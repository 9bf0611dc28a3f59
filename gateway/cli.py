"""The ``c360`` command: demo | serve | sandbox | token | audit | schema | roles.

c360 demo     [--port P] [--sandbox-port P] [--issuer-port P] [--hardened] [--redis-url URL]
              [--customers N] [--seed S] [--latency-ms L] [--faults JSON]
c360 serve    --config FILE [--host H] [--port P] [--workers W] [--redis-url URL] [--log-level L]
c360 sandbox  [--port 8700] [--customers N] [--seed S] [--latency-ms L] [--faults JSON]
c360 token    --role R [--mfa] [--gateway URL | --issuer URL]   (gateway.issuer)
c360 audit    verify ...                                         (gateway._audit_cli)
c360 schema   print the SDL
c360 roles    [--config FILE]  what every role gets on every guarded field

``c360 <command> --help`` describes every option. A usage error or a config
that cannot run is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette

from connectors.sdk.errors import ConfigurationError
from connectors.sdk.sandbox import SandboxState, World, create_combined_app, parse_faults
from gateway.config import ConfigError, load_document, load_settings
from gateway.demo import SANDBOX_VENDORS

__all__ = ["main", "serve_factory"]


class _SandboxServer(uvicorn.Server):
    """Lets go of requests held by a ``hang`` fault, so the server can stop."""

    def __init__(self, config: uvicorn.Config, state: SandboxState) -> None:
        super().__init__(config)
        self._state = state

    async def shutdown(self, sockets: Any = None) -> None:
        self._state.shutdown()
        await super().shutdown(sockets)


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Any:
    """An argparse type: a number in [low, high], else argparse's one-line usage error."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


_PORT = _bounded(int, 1, 65535)


def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--customers",
        type=_bounded(int, 1, 1_000_000),
        default=1000,
        metavar="N",
        help="people in the seeded world (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        metavar="S",
        help="world seed; the same N and S give the same world (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_bounded(float, 0, 60_000),
        default=0.0,
        metavar="L",
        help="milliseconds added to every vendor response (default: %(default)s)",
    )
    parser.add_argument(
        "--faults",
        default="{}",
        metavar="JSON",
        help="faults per vendor at start, as POST /_sandbox/faults takes them, e.g. "
        '\'{"stripe": {"status": 500}}\' (default: none)',
    )


def _sandbox_app(args: argparse.Namespace) -> tuple[Starlette, SandboxState]:
    try:
        faults = parse_faults(json.loads(args.faults), vendors=SANDBOX_VENDORS)
    except (ValueError, ConfigurationError) as exc:
        print(f"c360 {args.command}: --faults: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    world = World(customers=args.customers, seed=args.seed)
    state = SandboxState(world, latency_ms=args.latency_ms, faults=faults)
    return create_combined_app(state, SANDBOX_VENDORS), state


def _server(app: Starlette, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )


def _sandbox_server(app: Starlette, state: SandboxState, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    return _SandboxServer(config, state)


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway._demo_cli import run_demo

    sandbox_app, state = _sandbox_app(args)
    return run_demo(args, sandbox_app, state)


def serve_factory() -> Starlette:
    """uvicorn factory for ``c360 serve``: each worker reads ``C360_CONFIG``."""
    from gateway.app import create_app

    return create_app(
        load_settings(os.environ["C360_CONFIG"]), redis_url=os.environ.get("C360_REDIS_URL")
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway._preflight import preflight

    try:
        # Once, before any worker starts.
        preflight(args.config, redis_url=args.redis_url, workers=args.workers)
    except ConfigError as exc:
        print(f"c360 serve: {exc}", file=sys.stderr)
        return 2
    os.environ["C360_CONFIG"] = os.path.abspath(args.config)
    if args.redis_url:
        os.environ["C360_REDIS_URL"] = args.redis_url
    uvicorn.run(
        "gateway.cli:serve_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        # gateway.trusted_proxies decides whose X-Forwarded-For counts (gateway/_proxies.py);
        # uvicorn's own handling would trust 127.0.0.1 first.
        proxy_headers=False,
    )
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    app, state = _sandbox_app(args)
    print(
        f"c360 sandbox on http://{args.host}:{args.port} ({', '.join(SANDBOX_VENDORS)})", flush=True
    )
    asyncio.run(_sandbox_server(app, state, args.host, args.port).serve())
    return 0


def _cmd_schema(_: argparse.Namespace) -> int:
    from schema import build_schema

    print(build_schema().as_str())
    return 0


def _cmd_roles(args: argparse.Namespace) -> int:
    from gateway.auth import auth_settings_from_mapping
    from gateway.policy import BUILTIN_ROLE_SCOPES, policy_from_mapping
    from schema import build_schema
    from schema.roles import role_matrix

    raw: dict[str, Any] = {}
    if args.config:
        try:
            raw = dict(load_document(args.config))
        except ConfigError as exc:
            print(f"c360 roles: {exc}", file=sys.stderr)
            return 2
    try:
        auth = auth_settings_from_mapping(raw["auth"]) if raw.get("auth") else None
        policy = policy_from_mapping(
            raw.get("policy"), role_scopes=auth.role_scopes if auth is not None else None
        )
    except ConfigError as exc:
        print(f"c360 roles: {exc}", file=sys.stderr)
        return 2
    roles = [*BUILTIN_ROLE_SCOPES, *sorted(set(policy.roles) - set(BUILTIN_ROLE_SCOPES))]
    print(role_matrix(build_schema(), policy, roles), end="")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c360", description="customer-360 GraphQL gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="sandboxes + token issuer + gateway in one process, with GraphiQL",
        description="The gateway over the built-in vendor sandboxes, with a development token "
        "issuer, GraphiQL and fixed, public development keys. Ports left out are the "
        "conventional ones when free, else any free port.",
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="address every server listens on (default: %(default)s)"
    )
    demo.add_argument(
        "--port",
        type=_PORT,
        help="the gateway's port (default: 8000, or a free port if 8000 is taken)",
    )
    demo.add_argument(
        "--sandbox-port",
        type=_PORT,
        help="the vendor sandboxes' port (default: 8700, or a free port if taken)",
    )
    demo.add_argument(
        "--issuer-port",
        type=_PORT,
        help="the development token issuer's port (default: the sandbox port + 1, "
        "or a free port if taken)",
    )
    demo.add_argument(
        "--hardened",
        action="store_true",
        help="every production protection on, as in c360 serve: no GraphiQL, no "
        "introspection, query limits (default: off)",
    )
    demo.add_argument(
        "--redis-url",
        metavar="URL",
        help="share the record cache through Redis at URL (default: in memory)",
    )
    _world_args(demo)
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser(
        "serve",
        help="run the gateway against the vendors a config file names",
        description="Run the gateway against the vendors CONFIG names. C360_ID_KEY and "
        "audit.key are required: every process must share them.",
    )
    serve.add_argument(
        "--config", required=True, metavar="FILE", help="the gateway's YAML config (required)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument("--port", type=_PORT, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--workers",
        type=_bounded(int, 1, 256),
        default=1,
        metavar="W",
        help="gateway processes sharing the port (default: %(default)s)",
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis for the cache and webhooks; overrides cache.redis_url (default: the config's)",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        help="uvicorn's log level (default: %(default)s)",
    )
    serve.set_defaults(func=_cmd_serve)

    sandbox = sub.add_parser(
        "sandbox",
        help="serve every vendor sandbox on one port",
        description="The four vendor sandboxes over one seeded world, on one port.",
    )
    sandbox.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    sandbox.add_argument("--port", type=_PORT, default=8700, help="port (default: %(default)s)")
    _world_args(sandbox)
    sandbox.set_defaults(func=_cmd_sandbox)

    sub.add_parser(
        "audit",
        help="verify the PII audit trail: audit verify FILE [--checkpoint P] | --redis URL "
        "[--stream S], with --key env:NAME|file:PATH or --config FILE",
    )
    sub.add_parser(
        "token", help="mint a dev token: token --role R [--mfa] [--gateway URL | --issuer URL]"
    )
    schema = sub.add_parser("schema", help="print the GraphQL SDL")
    schema.set_defaults(func=_cmd_schema)
    roles = sub.add_parser("roles", help="what every role gets on every guarded field")
    roles.add_argument(
        "--config",
        metavar="FILE",
        help="the gateway config whose policy to show (default: the built-in roles)",
    )
    roles.set_defaults(func=_cmd_roles)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:
        # Dispatched before argparse so `c360 audit verify --help` reaches it.
        from gateway.audit import audit_main

        return audit_main(argv[1:])
    if argv[:1] == ["token"]:
        from gateway.issuer import token_main

        return token_main(argv[1:])
    args = _parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
