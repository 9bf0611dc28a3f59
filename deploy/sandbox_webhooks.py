"""Point the sandbox's webhooks at the gateways' public URL, once, for docker-compose.yml.

    SANDBOX_URL=http://sandbox:8700 PUBLIC_URL=http://lb:8080 python deploy/sandbox_webhooks.py

Each vendor whose ``<VENDOR>_WEBHOOK_SECRET`` is set (the variables the
gateways' config reads) gets ``PUBLIC_URL/webhooks/<vendor>`` and that secret;
Mailchimp, which cannot send headers, gets the secret as the URL's last
segment, as in production. From then on ``POST /_sandbox/mutate`` on the
sandbox delivers each change's signed webhook through nginx to a gateway.
Exit 0 when the sandbox took the targets; 1, with one line, when it did not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import httpx

from gateway.demo import SANDBOX_VENDORS

# Mailchimp cannot set headers: its webhook URL carries the secret.
_SECRET_IN_URL = frozenset({"mailchimp"})


def targets(public_url: str, environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found = {}
    for vendor in SANDBOX_VENDORS:
        secret = environ.get(f"{vendor.upper()}_WEBHOOK_SECRET")
        if not secret:
            continue
        url = f"{public_url.rstrip('/')}/webhooks/{vendor}"
        found[vendor] = {
            "url": f"{url}/{secret}" if vendor in _SECRET_IN_URL else url,
            "secret": secret,
        }
    return found


def main() -> int:
    sandbox, public = os.environ.get("SANDBOX_URL"), os.environ.get("PUBLIC_URL")
    if not sandbox or not public:
        print("sandbox_webhooks: set SANDBOX_URL and PUBLIC_URL", file=sys.stderr)
        return 1
    wanted = targets(public, os.environ)
    try:
        response = httpx.post(f"{sandbox.rstrip('/')}/_sandbox/webhooks", json=wanted, timeout=10)
    except httpx.HTTPError as exc:
        print(f"sandbox_webhooks: cannot reach the sandbox: {type(exc).__name__}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"sandbox_webhooks: the sandbox refused: {response.text[:200]}", file=sys.stderr)
        return 1
    print(f"sandbox webhooks -> {public}: {', '.join(response.json()['configured']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
