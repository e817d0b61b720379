"""The Starlette application: one route table (`routes.ROUTES`) turned into Starlette routes and
into the OpenAPI document served at `/openapi.json`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .frontend_files import FRONTEND_DIST, frontend_routes
from .routes import INT_PARAMS, ROUTES
from .runtime import Runtime
from .web import RouteSpec, make_endpoint

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "error_code": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["message"],
}
ERROR_STATUSES = {
    "400": "Bad request",
    "401": "Unauthenticated",
    "403": "Forbidden",
    "404": "Not found",
    "405": "Method not allowed",
    "409": "Conflict",
    "422": "Validation error",
    "429": "Too many attempts",
    "503": "Realtime not configured",
}


def starlette_path(path: str) -> str:
    return re.sub(
        r"\{(\w+)\}",
        lambda m: f"{{{m.group(1)}:int}}" if m.group(1) in INT_PARAMS else f"{{{m.group(1)}}}",
        path,
    )


def openapi_document(routes: list[RouteSpec]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for spec in routes:
        params: list[dict[str, Any]] = []
        for name in re.findall(r"\{(\w+)\}", spec.path):
            schema: dict[str, Any] = (
                {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
                if name in INT_PARAMS
                else {"type": "string"}
            )
            if name == "date":
                schema = {"type": "string", "format": "date"}
            if name == "month":
                schema = {"type": "integer", "minimum": 1, "maximum": 12}
            if name == "year":
                schema = {"type": "integer", "minimum": 1970, "maximum": 9999}
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
        for name, kind in spec.query.items():
            params.append(
                {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
            )
        ok: dict[str, Any]
        if spec.returns == "csv":
            ok = {
                "description": "CSV file",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        elif spec.returns == "image":
            binary = {"schema": {"type": "string", "format": "binary"}}
            ok = {
                "description": "Image",
                "content": {f"image/{kind}": binary for kind in ("png", "jpeg", "gif")},
            }
        else:
            ok = {
                "description": "Success",
                "content": {"application/json": {"schema": {"type": spec.returns}}},
            }
        responses: dict[str, Any] = {str(spec.status): ok}
        for code, text in ERROR_STATUSES.items():
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            }
        op: dict[str, Any] = {
            "operationId": (
                spec.method.lower() + "_" + re.sub(r"[^a-z0-9]+", "_", spec.path.lower())
            ).strip("_"),
            "summary": spec.summary,
            "tags": [spec.tag],
            "parameters": params,
            "responses": responses,
        }
        if spec.auth is not None:
            op["security"] = [{"bearerAuth": []}]
        if spec.body is not None:
            content = {spec.body_type: {"schema": spec.body}}
            if spec.tag == "broadcasting":
                content["application/x-www-form-urlencoded"] = {"schema": spec.body}
            op["requestBody"] = {"required": False, "content": content}
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "attendance_api",
            "version": "1.0.0",
            "description": "Attendance service. Overtime is floored to the `ot_rounding` "
            "step (none, 15, 30, 60 minutes): docs/attendance.md, decision D6. Realtime events "
            "are published through a Pusher-compatible server (pusherd).",
        },
        "paths": paths,
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }


def create_app(
    runtime: Runtime, *, background: bool = True, frontend: Path | None = FRONTEND_DIST
) -> Starlette:
    """Build the app around a prepared runtime; `background` starts the outbox dispatcher and
    the tick in the lifespan; `frontend` is the built web frontend to serve at `/` (None: API
    only)."""
    document = openapi_document(ROUTES)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    async def up(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes: list[BaseRoute] = [Route("/openapi.json", openapi), Route("/up", up)]
    for spec in ROUTES:
        routes.append(Route(starlette_path(spec.path), make_endpoint(spec), methods=[spec.method]))
    if frontend is not None:
        routes.extend(frontend_routes(frontend))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if background:
            await runtime.start()
        try:
            yield
        finally:
            if background:
                await runtime.stop()

    # The original frontend fetches with `credentials: 'include'`, so browsers need the origin
    # echoed and Allow-Credentials; nothing here authenticates by cookie, so that grants no
    # ambient authority.
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(runtime.config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept",
                "X-Requested-With",
                "X-Socket-ID",
                "X-CSRF-TOKEN",
                "Cache-Control",
            ],
            allow_credentials=True,
        )
    ]

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        messages = {404: "Not Found.", 405: "Method Not Allowed."}
        return JSONResponse(
            {"message": messages.get(exc.status_code, exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.runtime = runtime
    return app
