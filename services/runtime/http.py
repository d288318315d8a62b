"""The HTTP edge every service shares: health, metrics, error shapes, request limits.

Bad requests get a 4xx with a message that names the field, never a 5xx, as RFC 9457 problem
details (:mod:`services.runtime.problems`):
- a body that fails validation -> 422 ``{"type", "title", "status", "detail", "code", "errors": [{"field", ...}]}``
- a JSON body holding what PostgreSQL cannot store (a NUL character, a lone UTF-16 surrogate) or
  what JSON does not allow (NaN, Infinity) -> 422 naming each such field, before any route runs
  (decision 0129); a database error's own text never reaches a response
- an address no route has -> 404, a method the address does not take -> 405 (with ``Allow``)
- a body larger than ``max_request_bytes`` -> 413; a JSON endpoint sent another type -> 415
- a domain rule broken (unknown zone, action not allowed now) -> 409/422 from the route.
An unreachable PostgreSQL is a 503 with ``Retry-After``, not a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import typing
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from types import UnionType
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.fields import escaped
from services.runtime import permissions, problems
from services.runtime.db import TRANSIENT_DB_ERRORS
from services.runtime.logging import get_logger
from services.runtime.numbers import whole_number
from services.runtime.outbound import DestinationRefused, OutboundPolicy, check_url

if TYPE_CHECKING:
    from services.runtime.service import Service

log = get_logger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
BODY_METHODS = {"POST", "PUT", "PATCH"}


class ProblemError(Exception):
    """Raised by routes for a request that is well-formed but not allowed: becomes a 4xx."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        """``code``: the problem type (:data:`services.runtime.problems.TYPES`) when a program must
        tell this refusal from others of its status; otherwise the status's generic type."""
        super().__init__(message)
        problems.type_of(status, code)  # a code of another status is a bug: raise here, in the tests
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers
        self.code = code


async def check_webhook_url(url: str, policy: OutboundPolicy, *, field: str = "webhook_url") -> None:
    """A webhook URL being registered: HTTPS, and every address it resolves to public (or allowed
    by configuration). Raises a 422 :class:`ProblemError` naming the field and the reason."""
    try:
        await check_url(url, policy)
    except DestinationRefused as exc:
        raise ProblemError(
            422, f"{field} is not an allowed destination: {exc}", field=field, code="destination-refused"
        ) from None


# What may hide a value PostgreSQL cannot store in a JSON body: the escapes of NUL and of UTF-16
# surrogates (a lone one cannot be encoded as UTF-8), the non-JSON constants Python's parser
# accepts, and a number a float may not hold as written: 16 digits or more (points between them
# too: a float keeps 15 for certain), or an exponent. A body without any of them (nearly every
# one) is passed on unparsed.
_SUSPECT = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity|[0-9][0-9.]{15}|[0-9][eE][+-]?[0-9]")


def unstorable_fields(body: bytes) -> list[dict[str, str]]:
    """The fields of a JSON body holding a value no service can store: a NUL character (PostgreSQL's
    text and jsonb refuse it), a lone UTF-16 surrogate (not encodable as UTF-8), NaN or Infinity (not
    JSON, RFC 8259), a number with a fraction or an exponent that a float cannot hold as written
    (``19.999999999999999999`` was read as 20: the parser makes such numbers floats; decision
    0156). ``[{"field": "subject.details", "detail": ...}]``, dotted paths as in the 422's
    ``errors``; ``[]`` when there are none or the body is not JSON (validation then says why)."""
    if not _SUSPECT.search(body):
        return []

    try:
        document = json.loads(body, parse_constant=_NotJson, parse_float=_written_number, parse_int=_written_whole)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes: validation says so
        return []
    found: list[dict[str, str]] = []
    # Walked with a stack of its own, not by recursion: a document as deep as the parser allows
    # would otherwise run out of Python's stack here (an attack's NaN in 5,000 brackets was a 500).
    pending: list[tuple[Any, list[str]]] = [(document, [])]
    while pending:
        value, path = pending.pop()
        if isinstance(value, dict):
            members = []
            for key, item in value.items():
                problem = _unstorable(key)
                if problem:
                    found.append({"field": ".".join(path) or "body", "detail": f"a member's name {problem}"})
                members.append((item, [*path, _printable(key)]))
            pending.extend(reversed(members))  # in the document's order
        elif isinstance(value, list):
            pending.extend(reversed([(item, [*path, str(i)]) for i, item in enumerate(value)]))
        elif isinstance(value, _NotJson):
            found.append({"field": ".".join(path) or "body", "detail": f"{value} is not a JSON number: send a number"})
        elif isinstance(value, _Inexact):
            found.append({"field": ".".join(path) or "body", "detail": f"the number {value} {value.problem}"})
        elif isinstance(value, str):
            problem = _unstorable(value)
            if problem:
                found.append({"field": ".".join(path) or "body", "detail": problem})
    return found[:20]


def _utf8_text(body: bytes) -> bool:
    """Whether ``body`` is UTF-8 with no NUL byte (UTF-16 and UTF-32 text has them)."""
    if b"\x00" in body:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _NotJson(str):
    """NaN, Infinity or -Infinity where a number was sent: Python's parser accepts them, JSON does not."""


class _Inexact(str):
    """A JSON number that the parser's float cannot hold as written, with why."""

    problem: str

    def __new__(cls, text: str, problem: str) -> _Inexact:
        inexact = super().__new__(cls, text)
        inexact.problem = problem
        return inexact

    @classmethod
    def cut(cls, text: str, problem: str) -> _Inexact:
        """A number too long to repeat whole in an answer: its first 20 characters stand for it."""
        return cls(f"{text[:20]}...", problem)


def _written_number(text: str) -> float | _Inexact:
    """``text`` (a JSON number with a fraction or an exponent) as the float the services' parser
    reads, or an :class:`_Inexact` saying why that float would not be the number sent."""
    number = float(text)
    if not math.isfinite(number):
        return _Inexact(text, "is too large to be read: send a number in the field's range")
    try:
        written = Decimal(text)
    except ArithmeticError:  # an exponent beyond Decimal's (10**18): was a 500 (found by an attack)
        return _Inexact.cut(text, "has an exponent beyond any field's range: send a number in it")
    if Decimal(repr(number)) != written:
        return _Inexact(
            text,
            f"has more digits than a JSON number keeps here (it would be read as {number!r}): "
            "send it as a string of its digits",
        )
    return number


def _written_whole(text: str) -> int | _Inexact:
    """``text`` (a JSON number without a fraction) as an int, or an :class:`_Inexact` when it has
    more digits than Python reads (``sys.get_int_max_str_digits()``, 4,300): the parser would refuse
    the whole body, a 400 naming no field, where the number alone is wrong."""
    if len(text) - text.startswith("-") > sys.get_int_max_str_digits() > 0:
        return _Inexact.cut(text, f"has {len(text):,} digits, more than any field takes")
    return int(text)


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (U+0000), which cannot be stored: remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF), which is not text: remove it"
    return None


def _printable(key: str) -> str:
    return key.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    # A member's name is the sender's text: what does not print is escaped, not echoed.
    return escaped(".".join(parts) or "body")


# An API's answer to a request without an access token (RFC 6750's challenge in the header), given by
# the edge for a request with a body (below) and by the authorization dependency for the rest. With no
# token at all the challenge names no error (RFC 6750 section 3.1); a token that fails says
# invalid_token (INVALID_TOKEN_CHALLENGE).
TOKEN_REQUIRED = "an access token is required: Authorization: Bearer <token>"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
INVALID_TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class EdgeMiddleware:
    """Correlation id in and out; size and content-type limits before any parsing.

    A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which runs every request
    through an extra task and memory stream: a tenth of the brokerage's time under load."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        content_types: frozenset[str] = frozenset({"application/json"}),
        internal_port: int | None = None,
        uploads: dict[str, int] | None = None,
        token_first: bool = False,
        verify_token: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """``uploads``: paths that take a file (``text/csv``, or a form's ``multipart/form-data``) and
        the most bytes each accepts. ``token_first``: every operation with a body needs an access
        token (an API's, not the console's pages), so a request with a body and no ``Authorization``
        header is answered 401 before its body is read or judged - a stranger learns nothing of the
        body's rules and sends no megabytes (found by an attack: 413, 415 and 422 had come first).
        ``verify_token``: with ``token_first``, the check a bearer token must pass before the body is
        read (raising a :class:`ProblemError`: 401, or 503 when the issuer's keys cannot be fetched),
        so a token that fails is answered 401 whatever the body holds (decision 0168)."""
        self.app = app
        self.token_first = token_first
        self.verify_token = verify_token
        self.max_bytes = max_bytes
        self.content_types = content_types
        self.internal_port = internal_port
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        correlation_id = headers.get(CORRELATION_HEADER) or str(uuid.uuid4())
        structlog.contextvars.bind_contextvars(http_correlation_id=correlation_id)
        header = (CORRELATION_HEADER.lower().encode(), correlation_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            problem = None
            if b"%00" in scope.get("query_string", b"") or "\x00" in scope["path"]:
                problem = _problem(400, "NUL characters are not allowed in URLs")
            elif (
                self.internal_port is not None
                and scope["path"] not in INTERNAL_PATHS
                and permissions.on_internal_listener(scope, self.internal_port)
            ):
                # The internal listener is for probes and Prometheus: the API is not served there.
                problem = _problem(
                    404,
                    "the internal listener serves /health/live, /health/ready and /metrics only",
                    code="internal-listener-only",
                )
            elif scope["method"] in BODY_METHODS:
                if self.token_first:
                    problem = await self._token_problem(headers)
                if problem is None:
                    problem, receive = await self._checked_body(headers, receive, self.uploads.get(scope["path"]))
            if problem is not None:
                await problem(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("http_correlation_id")

    async def _token_problem(self, headers: Headers) -> JSONResponse | None:
        """The 401 (or 503) a request with a body gets before its body is read: no ``Authorization``
        header, one that is not ``Bearer <token>``, or a token that fails ``verify_token``."""
        authorization = headers.get("authorization")
        if authorization is None:
            return _problem(401, TOKEN_REQUIRED, headers=BEARER_CHALLENGE)
        if self.verify_token is None:
            return None
        scheme, token = get_authorization_scheme_param(authorization)  # as the dependency's HTTPBearer reads it
        if scheme.lower() != "bearer" or not token:
            # What the authorization dependency answers too: HTTPBearer sees no bearer token there.
            return _problem(401, TOKEN_REQUIRED, headers=BEARER_CHALLENGE)
        try:
            await self.verify_token(token)
        except ProblemError as exc:
            return _problem(exc.status, exc.message, headers=exc.headers, code=exc.code)
        return None

    async def _checked_body(
        self, headers: Headers, receive: Receive, upload_bytes: int | None = None
    ) -> tuple[JSONResponse | None, Receive]:
        """(a problem response or None, a receive that hands the app the body already read).
        ``upload_bytes``: the path takes a file (text/csv or multipart/form-data) of up to this many bytes."""
        max_bytes = upload_bytes or self.max_bytes
        # A path that takes a file takes only a file: a JSON body there would be read as CSV.
        content_types = frozenset({"text/csv", "multipart/form-data"}) if upload_bytes else self.content_types
        too_large = _problem(413, f"request body larger than {max_bytes} bytes")
        length = headers.get("content-length")
        if length is not None and ((declared := whole_number(length)) is None or declared > max_bytes):
            return too_large, receive
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: the app sees an empty body and the disconnect
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > max_bytes:
                return too_large, receive
            more = message.get("more_body", False)
        body = b"".join(chunks)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and ctype not in content_types:
            return _problem(
                415, f"content type must be {' or '.join(sorted(content_types))}, not {ctype or 'missing'!r}"
            ), receive
        if ctype == "application/json" and body and not _utf8_text(body):
            # RFC 8259 8.1: JSON between systems is UTF-8. Python's parser would also read UTF-16
            # and UTF-32, which the checks below, reading bytes, would not see into.
            return _problem(400, "a JSON body must be UTF-8 text (RFC 8259), without NUL bytes"), receive
        if ctype == "application/json":
            fields = unstorable_fields(body)
            if fields:
                summary = "; ".join(f"{f['field']}: {f['detail']}" for f in fields[:5])
                return _problem(422, f"invalid request: {summary}", fields), receive
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay


def _problem(
    status: int,
    message: str,
    fields: list[dict[str, str]] | None = None,
    headers: dict | None = None,
    *,
    code: str | None = None,
) -> JSONResponse:
    """An ``application/problem+json`` response (:func:`services.runtime.problems.body`)."""
    return JSONResponse(
        status_code=status,
        content=problems.body(status, message, code=code, fields=fields),
        headers=headers,
        media_type=problems.MEDIA_TYPE,
    )


def create_app(
    service: Service,
    *,
    title: str,
    description: str,
    version: str = "1",
    html_forms: bool = False,
    authenticated: bool = True,
    uploads: dict[str, int] | None = None,
) -> FastAPI:
    """``html_forms``: also accept the browser's form posts (the web console's pages).
    ``uploads``: paths that take a ``text/csv`` file, with the most bytes each accepts.
    ``authenticated``: every route needs an access token its role allows (services/runtime/auth.py,
    the table in services/runtime/permissions.py); the console's pages have their own sign-in."""
    dependencies = []
    verify_token = None
    if authenticated:
        from services.runtime.auth import TokenVerifier, authorization, edge_token_check

        # One verifier for the edge and the dependency: a token is verified once a request.
        verifier = TokenVerifier(service.settings)
        dependencies.append(authorization(service.name, service.settings, verifier))
        verify_token = edge_token_check(service.name, verifier)
    dependencies.append(Depends(one_value_each))  # after the token: a stranger learns no parameter's rules
    app = FastAPI(
        title=title, description=description, version=version, lifespan=service.lifespan, dependencies=dependencies
    )
    types = {"application/json"} | ({"application/x-www-form-urlencoded"} if html_forms else set())
    app.add_middleware(
        EdgeMiddleware,
        max_bytes=service.settings.max_request_bytes,
        content_types=frozenset(types),
        internal_port=service.settings.internal_port,
        uploads=uploads,
        token_first=authenticated,
        verify_token=verify_token,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # Not JSON at all: the body is at fault (the parser's loc ends in a character position, which had
        # been named as the field "1", found by an attack).
        fields = [
            {
                "field": "body" if e["type"] == "json_invalid" else _field_name(tuple(e["loc"])),
                "detail": problems.validation_message(e),
            }
            for e in errors
        ]
        summary = "; ".join(f"{f['field']}: {f['detail']}" for f in fields[:5])
        return _problem(422, f"invalid request: {summary}", fields)

    @app.exception_handler(ProblemError)
    async def problem(_: Request, exc: ProblemError) -> JSONResponse:
        fields = [{"field": exc.field, "detail": exc.message}] if exc.field else None
        return _problem(exc.status, exc.message, fields, exc.headers, code=exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own refusals (an address no route has, a method it does not take) as
        # problems like every other error, not {"detail": "Not Found"}; 405 keeps its Allow header.
        detail = {404: "no such resource: no route has this address", 405: "this address does not take that method"}
        return _problem(exc.status_code, detail.get(exc.status_code, str(exc.detail)), headers=dict(exc.headers or {}))

    for error in TRANSIENT_DB_ERRORS:
        app.add_exception_handler(error, _unavailable)
    app.add_exception_handler(Exception, _failed)
    # A value PostgreSQL cannot take (a number out of a column's range, a key too long for an
    # index) came from the request: the client's error, whatever validation let it through. The
    # edge and the request models refuse such values naming the field (decision 0129); this is the
    # net under them, and says nothing of the database's own words.
    app.add_exception_handler(asyncpg.exceptions.DataError, _bad_value)
    app.add_exception_handler(asyncpg.exceptions._base.DataError, _bad_value)
    app.add_exception_handler(asyncpg.exceptions.ProgramLimitExceededError, _bad_value)
    # Two requests doing the same thing at the same moment, the second stopped by a unique index: a
    # 409, never a 500 (found by an attack: ten change requests at once). Routes refuse such races in
    # their own words where they know them (an INSERT ... ON CONFLICT); this is the net under them.
    app.add_exception_handler(asyncpg.exceptions.UniqueViolationError, _same_moment)

    # Health, readiness and metrics: an app without access tokens (the console, whose pages have
    # their own sign-in) answers them on its internal listener only; the others through the
    # permission table (INTERNAL: no token there, any valid token on the API port).
    internal = [] if authenticated else [Depends(_internal_listener_only(service.settings.internal_port))]

    # response_model=None: the return annotation is for mypy, not a response model in the OpenAPI document.
    @app.get(
        "/health/live", tags=["operations"], summary="The process is up", response_model=None, dependencies=internal
    )
    async def live() -> dict[str, str]:
        # Which event loop serves ("uvloop" in production): a setting that must reach the process.
        return {"status": "live", "service": service.name, "event_loop": type(asyncio.get_running_loop()).__module__}

    @app.get("/health/ready", tags=["operations"], summary="Kafka and PostgreSQL are reachable", dependencies=internal)
    async def ready() -> JSONResponse:
        checks = await service.readiness()
        ok = all(checks.values())
        content: dict = {"status": "ready" if ok else "not ready", "checks": checks}
        # Detail for operators, not a readiness check: a parked outbox row needs a person
        # (`homecare outbox parked`), not a restart or a load balancer's attention.
        outbox = await service.outbox_state()
        if outbox is not None:
            content["outbox"] = outbox
        if service.lag_on_health:
            content["lag"] = service.lag  # None until first measured
        if ok:
            return JSONResponse(content=content)
        # Not ready is an error like any other (a problem), its checks kept as extension members.
        failing = ", ".join(sorted(name for name, up in checks.items() if not up))
        return JSONResponse(
            status_code=503,
            content=problems.body(503, f"not ready: {failing}") | {k: v for k, v in content.items() if k != "status"},
            media_type=problems.MEDIA_TYPE,
        )

    @app.get(
        "/asyncapi.json",
        tags=["operations"],
        summary="AsyncAPI 3.0 document of the service's Kafka topics",
        response_model=None,
    )
    async def asyncapi() -> dict[str, Any]:
        from services.runtime.asyncapi import document

        return document(service)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        dependencies=internal,
    )
    async def metrics_endpoint() -> PlainTextResponse:
        await service.refresh_gauges()
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if authenticated:
        _document_permissions(app, service.name)
    _document_problems(app)
    return app


INTERNAL_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


def _query_fields(dependant: Any) -> Iterator[Any]:
    """The query parameters a route declares, its dependencies' included (FastAPI's ``Dependant``)."""
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's type holds several values (``list[str]``, ``set[...] | None``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType, typing.Annotated):
        return any(_takes_many(arm) for arm in typing.get_args(annotation))
    return origin in (list, set, frozenset, tuple) or annotation in (list, set, frozenset, tuple)


# A route's query parameters that take one value, found once and kept on the route itself: a table
# keyed by id(route) could hand one app's set to another app's route at a reused id (tests build many
# apps), and FastAPI's routes are not hashable.
_ONE_VALUED = "homecare_one_valued_query"


async def one_value_each(request: Request) -> None:
    """An app-wide dependency: a query parameter that takes one value, given more than once, is a
    422 naming it (``?zone=melton&zone=rutland``). The framework keeps the last silently, so a
    filter a client believed it set could be dropped unseen, and a proxy that reads the first
    would see another request than the service (HTTP parameter pollution; found by an attack on
    the reporting service, fixed for every API). Raises :class:`ProblemError` (422)."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    one_valued: frozenset[str] | None = getattr(route, _ONE_VALUED, None)
    if one_valued is None:
        fields = list(_query_fields(dependant))
        one_valued = frozenset(f.alias for f in fields if not _takes_many(f.field_info.annotation))
        setattr(route, _ONE_VALUED, one_valued)
    counts = Counter(name for name, _ in request.query_params.multi_items())
    for name, times in counts.items():
        if times > 1 and name in one_valued:
            shown = escaped(name)
            raise ProblemError(422, f"query parameter {shown} is given {times} times; it takes one value", field=shown)


def _internal_listener_only(internal_port: int) -> Callable[[Request], Awaitable[None]]:
    async def on_internal_listener(request: Request) -> None:
        if not permissions.on_internal_listener(request.scope, internal_port):
            raise ProblemError(404, "served on the internal listener only", code="internal-listener-only")

    return on_internal_listener


def _document_permissions(app: FastAPI, service_name: str) -> None:
    """The OpenAPI document says, per operation, how it authenticates and which roles the
    permission table allows (``x-roles``): the table stays the one source."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                rule = permissions.rule_for(service_name, method.upper(), path)
                if rule is permissions.PUBLIC:
                    operation["security"] = []
                elif rule is permissions.INTERNAL:
                    operation["security"] = [{"oidc": []}]
                    operation["x-roles"] = ["any"]
                    operation.setdefault("responses", {}).setdefault(
                        "401", {"description": "On the API port: no access token, or one not valid for this service"}
                    )
                    operation["description"] = (
                        "Without a token on the service's internal listener (`<SERVICE>_INTERNAL_PORT`, default the "
                        "API port + 1000: for probes and Prometheus, never published); on the API port, any valid "
                        "access token for this service."
                    )
                elif rule is permissions.PROVIDER_CREDENTIAL:
                    # The organisation's credential, or a named staff user's access token (decision 0126).
                    operation["security"] = [{"providerCredential": []}, {"oidc": []}]
                    operation.setdefault("responses", {}).setdefault(
                        "401", {"description": "No provider credential or access token, or one that is not live"}
                    )
                    operation["responses"].setdefault(
                        "403",
                        {
                            "description": "An access token without the role provider_staff, of an account that names "
                            "no provider (no-provider-claim), or of a person who is not a user of the provider it "
                            "names (not-a-provider-user)"
                        },
                    )
                else:
                    operation["security"] = [{"oidc": []}]
                    operation["x-roles"] = sorted(rule or ())
                    operation.setdefault("responses", {}).update(
                        {
                            "401": {"description": "No access token, or one that is not valid for this service"},
                            "403": {"description": "Your roles do not allow this operation"},
                        }
                    )
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# What any operation may answer besides its own responses, and why (the edge, the database, the
# identity provider): declared on every operation, so the document lists every status it can send.
_EVERY_OPERATION = {
    "400": "A malformed request line (a NUL character in the URL)",
    "404": "Asked on the internal listener, which serves only /health/live, /health/ready and /metrics",
    "500": "The service failed; the failure is logged under the response's X-Correlation-ID",
    "503": "A dependency (PostgreSQL, the identity provider) is unavailable; Retry-After says when to try again",
}
_WITH_BODY = {
    "413": "The request body is larger than the service accepts",
    "415": "The request body is not JSON",
}


def _document_problems(app: FastAPI) -> None:
    """Every error response in the OpenAPI document is ``application/problem+json`` with the
    ``Problem`` schema (RFC 9457, :mod:`services.runtime.problems`), including FastAPI's own 422; and
    each operation lists every status the shared edge can send for it (:data:`_EVERY_OPERATION`,
    :data:`_WITH_BODY`; 404 where the path names a resource; 422 where there is input)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        for schema in ("HTTPValidationError", "ValidationError"):
            schemas.pop(schema, None)
        content = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                has_input = bool(operation.get("parameters") or operation.get("requestBody"))
                if operation.get("security"):  # a token's X-Acting-User/-Role headers are input too
                    has_input = True
                extra = dict(_EVERY_OPERATION)
                if operation.get("requestBody"):
                    extra |= _WITH_BODY
                if "{" in path:
                    extra["404"] = "No such resource"
                if has_input:
                    extra["422"] = "The request is not valid: errors names each field at fault"
                for status, description in extra.items():
                    responses.setdefault(status, {"description": description})
                for status, response in responses.items():
                    if status[0] in "45":
                        if response.get("description") == "Validation Error":
                            response["description"] = "The request is not valid: errors names each field at fault"
                        response["content"] = content
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
    """A value the database refused: a 422 in the service's words. The database's text (which can
    quote the value and names tables and columns) goes to the log only."""
    log.warning(
        "the database refused a value from a request",
        path=request.url.path,
        error_type=type(exc).__name__,
        error=str(exc)[:300],
    )
    return _problem(422, "a value in the request cannot be stored: check the fields' limits in the API document")


async def _same_moment(request: Request, exc: Exception) -> JSONResponse:
    """A unique index stopped a write: another request did the same a moment before. The constraint's
    name goes to the log (a route that meets one every time has a bug to fix), never to the client."""
    log.error(
        "a write met a unique index: answered 409",
        constraint=getattr(exc, "constraint_name", None),
        method=request.method,
        path=request.url.path,
    )
    return _problem(409, "the same change was made a moment ago by another request: look again, then retry")


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("a dependency is unavailable", error_type=type(exc).__name__)
    return _problem(503, "service temporarily unavailable: try again shortly", headers={"Retry-After": "2"})


async def _failed(_: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: a 500 problem. Starlette re-raises the exception after sending it, so
    the server logs the traceback; the caller never sees it."""
    return _problem(500, "the service failed; the failure is logged")
