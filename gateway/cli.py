"""The ``c360`` command: demo | serve | sandbox | schema.

c360 demo     [--port 8000] [--sandbox-port 8700] [--customers N] [--seed S] [--latency-ms L]
c360 serve    --config FILE [--host H] [--port P] [--workers W]
c360 sandbox  [--port 8700] [--customers N] [--seed S] [--latency-ms L]
c360 schema   print the SDL
c360 roles    [--config FILE]  what every role gets on every guarded field
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette

from connectors.sdk.errors import ConfigurationError
from connectors.sdk.sandbox import SandboxState, World, create_combined_app, parse_faults
from gateway.config import ConfigError, load_document, load_settings
from gateway.demo import SANDBOX_VENDORS, sandbox_settings

__all__ = ["main", "serve_factory"]


class _SandboxServer(uvicorn.Server):
    """Lets go of requests held by a ``hang`` fault, so the server can stop."""

    def __init__(self, config: uvicorn.Config, state: SandboxState) -> None:
        super().__init__(config)
        self._state = state

    async def shutdown(self, sockets: Any = None) -> None:
        self._state.shutdown()
        await super().shutdown(sockets)


def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--customers", type=int, default=1000, help="people in the world (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=42, help="world seed (default 42)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every vendor response"
    )
    parser.add_argument(
        "--faults", default="{}", help='fault knobs as JSON, e.g. \'{"stripe": {"status": 500}}\''
    )


def _sandbox_app(args: argparse.Namespace) -> tuple[Starlette, SandboxState]:
    try:
        faults = parse_faults(json.loads(args.faults), vendors=SANDBOX_VENDORS)
    except (ValueError, ConfigurationError) as exc:
        raise SystemExit(f"c360: --faults: {exc}") from None
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


EXAMPLE_QUERY = """query Customer360($email: String!) {
  customer(email: $email) {
    id name email phone
    sources { system id url updatedAt }
    account { id name industry parent { id name } }
    tickets { id subject status priority createdAt updatedAt }
    subscriptions { id status plan amount currency interval currentPeriodEnd }
    invoices { id status amountDue amountPaid currency createdAt }
    marketing { status lists { id name status } consents { channel status updatedAt } }
  }
}"""


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.auth import BUILTIN_ROLES, AuthSettings
    from gateway.issuer import DevIssuer

    sandbox_app, state = _sandbox_app(args)
    sandbox_url = f"http://{args.host}:{args.sandbox_port}"
    issuer_url = f"http://{args.host}:{args.issuer_port}"
    issuer = DevIssuer(issuer_url)
    gateway_url = f"http://{args.host}:{args.port}"
    # The sandbox's /_sandbox/mutate delivers signed webhooks to this gateway,
    # so live invalidation can be tried end to end.
    secrets_by_vendor = {v: secrets.token_urlsafe(24) for v in SANDBOX_VENDORS}
    for vendor, secret in secrets_by_vendor.items():
        os.environ[f"C360_DEMO_WEBHOOK_SECRET_{vendor.upper()}"] = secret
    state.mutations.set_webhooks(
        {
            vendor: {
                "url": f"{gateway_url}/webhooks/{vendor}"
                + (f"/{secret}" if vendor == "mailchimp" else ""),
                "secret": secret,
            }
            for vendor, secret in secrets_by_vendor.items()
        }
    )
    settings = sandbox_settings(
        sandbox_url,
        webhook_secrets={v: f"env:C360_DEMO_WEBHOOK_SECRET_{v.upper()}" for v in SANDBOX_VENDORS},
    )
    gateway_app = create_app(
        settings,
        redis_url=args.redis_url,
        auth=AuthSettings(issuer=issuer_url, audience=("c360",)),
        hardened=args.hardened,
    )
    example = next(p for p in state.world.people if p.in_all and p.tickets)
    url = f"http://{args.host}:{args.port}/graphql"
    tokens = {
        role: issuer.mint_token(role, mfa=role in ("billing_admin", "admin"), ttl=12 * 3600)
        for role in BUILTIN_ROLES
    }
    body = {"query": EXAMPLE_QUERY.replace("\n", " "), "variables": {"email": example.email}}
    mode = "hardened (no GraphiQL, no introspection)" if args.hardened else "GraphiQL on"
    print(
        f"c360 demo, {mode}\n"
        f"  GraphQL:   {url}\n"
        f"  sandbox:   {sandbox_url}  (stats: {sandbox_url}/_sandbox/stats, "
        f"answer key: {sandbox_url}/_sandbox/customers)\n"
        f"  issuer:    {issuer_url}  (c360 token --role R --issuer {issuer_url})\n"
        f"  metrics:   http://{args.host}:{args.port}/metrics\n"
        f"  audit:     {settings.raw['audit']['path']}\n\n"
        f"Tokens (send as 'Authorization: Bearer <token>'; in GraphiQL, the Headers tab):\n"
        + "".join(f"  {role}: {token}\n" for role, token in tokens.items())
        + f"\nExample: a customer in all four systems ({example.email}):\n\n"
        f"{EXAMPLE_QUERY}\n\nvariables: {json.dumps({'email': example.email})}\n\n"
        f"curl -s {url} -H 'content-type: application/json' "
        f"-H 'authorization: Bearer {tokens['admin']}' -d '{json.dumps(body)}'\n",
        flush=True,
    )

    async def run() -> None:
        await asyncio.gather(
            _sandbox_server(sandbox_app, state, args.host, args.sandbox_port).serve(),
            _server(issuer.app, args.host, args.issuer_port).serve(),
            _server(gateway_app, args.host, args.port).serve(),
        )

    asyncio.run(run())
    return 0


def serve_factory() -> Starlette:
    """uvicorn factory for ``c360 serve``: each worker reads ``C360_CONFIG``."""
    from gateway.app import create_app

    return create_app(
        load_settings(os.environ["C360_CONFIG"]), redis_url=os.environ.get("C360_REDIS_URL")
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        load_settings(args.config)  # validate once, before any worker starts
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
            raise SystemExit(f"c360: {exc}") from None
    try:
        auth = auth_settings_from_mapping(raw["auth"]) if raw.get("auth") else None
        policy = policy_from_mapping(
            raw.get("policy"), role_scopes=auth.role_scopes if auth is not None else None
        )
    except ConfigError as exc:
        raise SystemExit(f"c360: {exc}") from None
    roles = [*BUILTIN_ROLE_SCOPES, *sorted(set(policy.roles) - set(BUILTIN_ROLE_SCOPES))]
    print(role_matrix(build_schema(), policy, roles), end="")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="c360", description="customer-360 GraphQL gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="sandboxes + gateway in one process, with GraphiQL")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--sandbox-port", type=int, default=8700)
    demo.add_argument("--issuer-port", type=int, default=8701)
    demo.add_argument(
        "--hardened", action="store_true", help="every production protection on, as in c360 serve"
    )
    demo.add_argument("--redis-url", help="share the record cache through Redis (default: memory)")
    _world_args(demo)
    demo.set_defaults(func=_cmd_demo)

    serve = sub.add_parser("serve", help="run the gateway against configured upstreams")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--redis-url", help="overrides cache.redis_url in the config")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=_cmd_serve)

    sandbox = sub.add_parser("sandbox", help="serve every vendor sandbox on one port")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8700)
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
        "--config", help="the gateway config whose policy to show (default: built-in)"
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
