"""The stack's own ceiling: a minimal strawberry ``{ hello }`` schema.

Served like the gateway is (uvicorn ▸ starlette route ▸ strawberry's ASGI
view), with none of the gateway's work (no auth, no loaders, no upstream
calls). ``bench/run.py`` starts it with::

    python -m uvicorn hello_app:app --app-dir bench --workers N --port P
"""

from __future__ import annotations

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


schema = strawberry.Schema(query=Query)
view: GraphQL[None, None] = GraphQL(schema, graphql_ide=None, allow_queries_via_get=False)


async def graphql(request: Request) -> Response:
    return await view.run(request)


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/graphql", graphql, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
