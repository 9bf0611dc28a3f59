"""The sandbox's live changes: ``POST /_sandbox/mutate`` edits a record, then
delivers the vendor's webhook for it, signed as that vendor signs.

Each vendor sandbox registers a ``mutate(spec, now) -> [payload, …]`` over
its own indexes and an ``encode(payload, secret, now) -> (headers, body)``
(both live in ``connectors.<vendor>.webhook``), so the change is what the
next read serves, and the :class:`MutationShape` of each change it makes: a
spec missing what its shape needs is refused here, saying what it needs with
a whole example, before the vendor's mutator sees it; ``GET /_sandbox/mutate``
lists every shape. Where webhooks go is set on ``SandboxState(webhooks=…)`` or
at run time::

    POST /_sandbox/webhooks   {"stripe": {"url": "http://gw/webhooks/stripe", "secret": "whsec_…"},
                               "mailchimp": {"url": "http://gw/webhooks/mailchimp/<secret>"}}
                              replaces every target ({} clears); answers the vendors set
    POST /_sandbox/mutate     {"vendor": "stripe", "kind": "customer", "id": "cus_…",
                               "changes": {"phone": "+14155550100"}}
                              200 {"vendor", "events": [payload…], "deliveries": [{"status"}…]}
                              400 invalid mutation, 404 unknown vendor
    GET  /_sandbox/mutate     {vendor: [{"kind", "needs", "sets", "fields", "example"}…]}

A delivery that fails is reported (``{"delivered": false, "error": …}``), not
retried: the caller decides. Nothing here echoes a webhook secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.sdk.webhooks import InvalidMutation

__all__ = ["Encode", "Mutate", "MutationShape", "Mutations", "WebhookTarget", "mutation_routes"]

Mutate = Callable[[Mapping[str, Any], float], list[Any]]
Encode = Callable[[Any, str, float], tuple[dict[str, str], bytes]]


@dataclass(frozen=True, slots=True)
class MutationShape:
    """One change a vendor's sandbox makes: the spec's ``kind``, the keys it
    needs (each with what it holds), the object of new values (``sets``:
    ``changes`` or ``create``) and the fields that object may hold, and a
    whole example spec."""

    kind: str
    needs: Mapping[str, str]
    fields: tuple[str, ...]
    example: Mapping[str, Any]
    sets: str = "changes"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "needs": dict(self.needs), "sets": self.sets,
                "fields": list(self.fields), "example": dict(self.example)}  # fmt: skip

    def check(self, vendor: str, spec: Mapping[str, Any]) -> None:
        """Refuse a spec without what this shape needs, saying what that is."""
        for key, what in self.needs.items():
            if spec.get(key) in (None, ""):
                raise InvalidMutation(
                    f"a {vendor} {self.kind} mutation needs {key!r}: {what}; "
                    f"e.g. {json.dumps(self.example)}"
                )
        values = spec.get(self.sets)
        if not isinstance(values, Mapping) or not values:
            raise InvalidMutation(
                f"a {vendor} {self.kind} mutation needs {self.sets!r}: an object of new values "
                f"for any of {', '.join(self.fields)}; e.g. {json.dumps(self.example)}"
            )


def _shape_of(vendor: str, shapes: tuple[MutationShape, ...], spec: Mapping[str, Any]) -> None:
    """Check ``spec`` against the vendor's shape of its kind (for a kind with
    several shapes, the one whose ``sets`` object the spec carries)."""
    if not shapes:
        return
    kind = spec.get("kind")
    same = [s for s in shapes if s.kind == kind]
    if not same:
        kinds = " or ".join(sorted({repr(s.kind) for s in shapes}))
        raise InvalidMutation(
            f"a {vendor} mutation's 'kind' is {kinds}, not {kind!r}; "
            f"e.g. {json.dumps(shapes[0].example)}"
        )
    shape = next((s for s in same if s.sets in spec), same[0])
    shape.check(vendor, spec)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    secret: str = ""

    def __repr__(self) -> str:  # keep the secret out of logs
        return "WebhookTarget(***)"


def _targets(raw: Any) -> dict[str, WebhookTarget]:
    if not isinstance(raw, Mapping):
        raise InvalidMutation("webhooks must map vendor names to {url, secret}")
    targets: dict[str, WebhookTarget] = {}
    for vendor, target in raw.items():
        url = target.get("url") if isinstance(target, Mapping) else None
        secret = target.get("secret", "") if isinstance(target, Mapping) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidMutation(f"webhooks.{vendor}.url must be an http(s) URL")
        if not isinstance(secret, str):
            raise InvalidMutation(f"webhooks.{vendor}.secret must be a string")
        targets[str(vendor)] = WebhookTarget(url, secret)
    return targets


class Mutations:
    """The mutators the vendor sandboxes registered and where their webhooks go."""

    def __init__(
        self,
        webhooks: Mapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
    ) -> None:
        self._vendors: dict[str, tuple[Mutate, Encode]] = {}
        self._shapes: dict[str, tuple[MutationShape, ...]] = {}
        self._targets = _targets(webhooks or {})
        self._clock = clock
        self._timeout = timeout

    def register(
        self,
        vendor: str,
        mutate: Mutate,
        encode: Encode,
        shapes: tuple[MutationShape, ...] = (),
    ) -> None:
        """``shapes``: every change ``mutate`` makes; specs are checked against them first."""
        self._vendors[vendor] = (mutate, encode)
        self._shapes[vendor] = shapes

    @property
    def shapes(self) -> dict[str, list[dict[str, Any]]]:
        """Every registered change, by vendor, as ``GET /_sandbox/mutate`` lists them."""
        return {v: [s.describe() for s in self._shapes[v]] for v in sorted(self._vendors)}

    def set_webhooks(self, webhooks: Mapping[str, Any]) -> None:
        """Replace every webhook target; raises :class:`InvalidMutation` if one is unusable."""
        self._targets = _targets(webhooks)

    @property
    def configured(self) -> list[str]:
        return sorted(self._targets)

    def serves(self, vendor: Any) -> bool:
        return isinstance(vendor, str) and vendor in self._vendors

    async def apply(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Change the record ``spec`` names, then deliver its webhooks; the answer JSON.

        Raises :class:`InvalidMutation` for a vendor not served here (see
        :meth:`serves`) or a change the vendor cannot make.
        """
        vendor = spec.get("vendor")
        if not isinstance(vendor, str) or vendor not in self._vendors:
            raise InvalidMutation(f"no sandbox here serves vendor {vendor!r}")
        mutate, encode = self._vendors[vendor]
        _shape_of(vendor, self._shapes[vendor], spec)
        now = self._clock()
        events = mutate(spec, now)
        target = self._targets.get(vendor)
        deliveries: list[dict[str, Any]] = []
        if target is not None:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                for event in events:
                    headers, body = encode(event, target.secret, now)
                    deliveries.append(await _deliver(client, target.url, headers, body))
        return {
            "vendor": vendor,
            "events": events,
            "webhook": "configured" if target is not None else "not configured",
            "deliveries": deliveries,
        }


async def _deliver(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    try:
        response = await client.post(url, headers=headers, content=body)
    except httpx.HTTPError as exc:
        return {"delivered": False, "error": type(exc).__name__}
    return {"delivered": response.is_success, "status": response.status_code}


def _bad(error: str, message: str, status: int = 400) -> Response:
    return JSONResponse({"error": error, "message": message}, status_code=status)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def mutation_routes(mutations: Mutations) -> list[BaseRoute]:
    async def mutate(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(mutations.shapes)
        spec = await _json(request)
        if not isinstance(spec, Mapping):
            return _bad("invalid_mutation", "the body must be a JSON object")
        if not mutations.serves(spec.get("vendor")):
            return _bad("unknown_vendor", "no sandbox here serves that vendor", status=404)
        try:
            return JSONResponse(await mutations.apply(spec))
        except InvalidMutation as exc:
            return _bad("invalid_mutation", str(exc))

    async def webhooks(request: Request) -> Response:
        try:
            mutations.set_webhooks(await _json(request))
        except InvalidMutation as exc:
            return _bad("invalid_webhooks", str(exc))
        return JSONResponse({"configured": mutations.configured})

    return [
        Route("/_sandbox/mutate", mutate, methods=["GET", "POST"]),
        Route("/_sandbox/webhooks", webhooks, methods=["POST"]),
    ]
