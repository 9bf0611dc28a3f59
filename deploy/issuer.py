"""The development token issuer as a server of its own, for docker-compose.yml.

    python deploy/issuer.py --url http://issuer:8701 [--host 0.0.0.0] [--port 8701]

Tokens name ``--url`` as their issuer at whatever address they are asked for,
so a token fetched through a published port still matches the gateways'
``auth.issuer``. Its signing key is made at start: tokens die with the process.
Anyone who reaches it can mint an admin token, so compose publishes no port
for it; ask from inside the compose network::

    docker compose exec issuer c360 token --role support_agent --issuer http://issuer:8701
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from gateway.issuer import DevIssuer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="issuer.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="the issuer URL the gateways are configured with"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8701, help="port (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        parser.error("--url must be an http(s) URL")
    issuer = DevIssuer(args.url)
    uvicorn.run(
        issuer.app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
