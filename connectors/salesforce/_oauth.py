"""The Salesforce sandbox's OAuth endpoints: client credentials tokens and revocation.

``POST /services/oauth2/token`` takes ``grant_type=client_credentials`` with the
connected app's key and secret as form fields or HTTP Basic, and answers as
Salesforce does: ``{access_token, instance_url, id, token_type, issued_at,
signature}`` (no ``expires_in``: the org's session timeout decides), or 400
``{error, error_description}``. ``POST /services/oauth2/revoke`` with
``token=…`` ends a token, which is how tests make one expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from binascii import Error as BinasciiError
from urllib.parse import parse_qs, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["TokenIssuer"]

_ORG_ID = "00Dc360SANDBOXORG"
_USER_ID = "005c360SANDBOXUSR"


def _oauth_error(error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


async def _form(request: Request) -> dict[str, str]:
    # Form bodies parsed by hand: starlette's request.form() needs python-multipart.
    parsed = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {key: values[-1] for key, values in parsed.items()}


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (BinasciiError, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


class TokenIssuer:
    """Issues, checks and revokes the sandbox org's access tokens."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self._client_id = client_id
        self._secret = client_secret
        self._live: set[str] = set()

    def valid(self, token: str) -> bool:
        return token in self._live

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        client = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
        if not (
            hmac.compare_digest(client[0].encode(), self._client_id.encode())
            and hmac.compare_digest(client[1].encode(), self._secret.encode())
        ):
            return _oauth_error("invalid_client", "invalid client credentials")
        access_token = f"{_ORG_ID}!{secrets.token_urlsafe(48)}"
        self._live.add(access_token)
        instance_url = str(request.base_url).rstrip("/")
        identity = f"{instance_url}/id/{_ORG_ID}/{_USER_ID}"
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(self._secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        return JSONResponse(
            {
                "access_token": access_token,
                "instance_url": instance_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": base64.b64encode(digest.digest()).decode("ascii"),
            }
        )

    async def revoke(self, request: Request) -> Response:
        token = (await _form(request)).get("token", "")
        if token not in self._live:
            return _oauth_error("invalid_token", "invalid token")
        self._live.discard(token)
        return Response(status_code=200)
