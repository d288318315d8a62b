"""The HTTP edge every service shares: health, metrics, error shapes, request limits.

Bad requests get a 4xx with a message that names the field, never a 5xx:
- a body that fails validation -> 422 ``{"error": ..., "fields": [{"field", "message"}]}``
- a body larger than ``max_request_bytes`` -> 413; a JSON endpoint sent another type -> 415
- a domain rule broken (unknown zone, action not allowed now) -> 409/422 from the route.
An unreachable PostgreSQL is a 503 with ``Retry-After``, not a stack trace.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware

from services.runtime.db import TRANSIENT_DB_ERRORS

if TYPE_CHECKING:
    from services.runtime.service import Service

CORRELATION_HEADER = "X-Correlation-ID"
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ProblemError(Exception):
    """Raised by routes for a request that is well-formed but not allowed: becomes a 4xx."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


class EdgeMiddleware(BaseHTTPMiddleware):
    """Correlation id in and out; size and content-type limits before any parsing."""

    def __init__(self, app, max_bytes: int, content_types: frozenset[str] = frozenset({"application/json"})) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.content_types = content_types

    async def dispatch(self, request: Request, call_next):
        correlation_id = request.headers.get(CORRELATION_HEADER) or str(uuid.uuid4())
        structlog.contextvars.bind_contextvars(http_correlation_id=correlation_id)
        try:
            if "%00" in request.url.query or "\x00" in request.url.path:
                return _problem(400, "NUL characters are not allowed in URLs")
            if request.method in BODY_METHODS:
                length = request.headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                    return _problem(413, f"request body larger than {self.max_bytes} bytes")
                body = await request.body()
                if len(body) > self.max_bytes:
                    return _problem(413, f"request body larger than {self.max_bytes} bytes")
                ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if body and ctype not in self.content_types:
                    return _problem(415, f"content type must be {' or '.join(sorted(self.content_types))}, not {ctype or 'missing'!r}")
            response = await call_next(request)
            response.headers[CORRELATION_HEADER] = correlation_id
            return response
        finally:
            structlog.contextvars.unbind_contextvars("http_correlation_id")


def _problem(status: int, message: str, fields: list[dict] | None = None, headers: dict | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    return JSONResponse(status_code=status, content=body, headers=headers)


def create_app(service: "Service", *, title: str, description: str, version: str = "1", html_forms: bool = False) -> FastAPI:
    """``html_forms``: also accept the browser's form posts (the web console's pages)."""
    app = FastAPI(title=title, description=description, version=version, lifespan=service.lifespan)
    types = {"application/json"} | ({"application/x-www-form-urlencoded"} if html_forms else set())
    app.add_middleware(EdgeMiddleware, max_bytes=service.settings.max_request_bytes, content_types=frozenset(types))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError):
        fields = [{"field": _field_name(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return _problem(422, f"invalid request: {summary}", fields)

    @app.exception_handler(ProblemError)
    async def problem(_: Request, exc: ProblemError):
        fields = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return _problem(exc.status, exc.message, fields)

    for error in TRANSIENT_DB_ERRORS:
        app.add_exception_handler(error, _unavailable)
    # A value PostgreSQL cannot take (a NUL character, a number out of range) came from the
    # request: it is the client's error, whatever validation let it through.
    app.add_exception_handler(asyncpg.exceptions.DataError, _bad_value)
    app.add_exception_handler(asyncpg.exceptions._base.DataError, _bad_value)

    @app.get("/health/live", tags=["operations"], summary="The process is up")
    async def live():
        return {"status": "live", "service": service.name}

    @app.get("/health/ready", tags=["operations"], summary="Kafka and PostgreSQL are reachable")
    async def ready():
        checks = await service.readiness()
        ok = all(checks.values())
        return JSONResponse(status_code=200 if ok else 503, content={"status": "ready" if ok else "not ready", "checks": checks})

    @app.get("/asyncapi.json", tags=["operations"], summary="AsyncAPI 3.0 document of the service's Kafka topics")
    async def asyncapi():
        from services.runtime.asyncapi import document

        return document(service)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics_endpoint():
        await service.refresh_gauges()
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _bad_value(_: Request, exc: Exception):
    return _problem(422, f"invalid value in the request: {str(exc).splitlines()[0][:200]}")


async def _unavailable(_: Request, exc: Exception):
    return _problem(503, f"service temporarily unavailable: {type(exc).__name__}", headers={"Retry-After": "2"})
