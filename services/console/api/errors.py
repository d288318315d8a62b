"""The console's error pages, as GOV.UK's patterns word them: what a person sees when not signed in
(sent to sign in), not allowed (403), at an address that is no page (404), refused by a service
(its 4xx, in the console's words by status: never the service's own text), when a service is down
(503) or when the console itself fails (500). Always a page, never JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.console import handlers
from services.console.api.pages import page
from services.console.clients import ApiError, ServiceUnavailable
from services.runtime.logging import get_logger

log = get_logger(__name__)


class NotSignedIn(Exception):
    """No session, or not the right kind: to the staff sign-in page, or the portal's (``portal``)."""

    def __init__(self, portal: bool = False) -> None:
        self.portal = portal


class Forbidden(Exception):
    """Signed in, but this page or form is not for this session (403, with the reason)."""

    def __init__(self, message: str = "You do not have access to this page") -> None:
        self.message = message


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """The error template, with the menu of whoever is signed in (if anyone)."""
    return page(request, "error.html", getattr(request.state, "session", None), status, title=title, message=message)


NOT_FOUND = "Page not found"
NOT_FOUND_MORE = [
    "If you typed the web address, check it is correct.",
    "If you pasted the web address, check you copied the entire address.",
]
# A service's refusal that reached no form, by status: the console's words, never the service's.
REFUSED = {
    403: "You do not have access to this.",
    404: "There is no such record: it may have been removed, or the address is wrong.",
    409: "This cannot be done now: something changed since the page was loaded. Go back and reload the page.",
}
REFUSED_OTHERWISE = "The request could not be completed. Go back, check the answers and try again."


def not_found(request: Request) -> HTMLResponse:
    """GOV.UK's "Page not found" page (404)."""
    return page(
        request,
        "error.html",
        getattr(request.state, "session", None),
        404,
        title=NOT_FOUND,
        message=NOT_FOUND_MORE[0],
        more=NOT_FOUND_MORE[1:],
    )


def install(
    app: FastAPI,
    headers: dict[str, str] | None = None,
    session_of: Callable[[Request], Awaitable[object]] | None = None,
) -> None:
    """Answer the console's exceptions, and the services' refusals, with pages. ``headers``: the
    console's security headers, for the 500 page, which is answered outside its middleware;
    ``session_of``: reads the request's session, for the menu of a page no route answered."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # An address that is no page (404), or a page asked for the wrong way (405: a form's
        # address opened as a link): GOV.UK's page, not the framework's JSON, with the menu of
        # whoever is signed in (no route read the session).
        if session_of is not None and not hasattr(request.state, "session"):
            try:
                await session_of(request)
            except Exception as exc_reading:  # the database away: the page without a menu
                log.warning("no session for the error page", error=repr(exc_reading))
        if exc.status_code in (404, 405):
            response = not_found(request)
            response.status_code = exc.status_code
            return response
        return error_page(request, exc.status_code, "Sorry, there is a problem", REFUSED_OTHERWISE)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("a page failed", path=request.url.path, error=repr(exc), exc_info=exc)
        title, message = "Sorry, there is a problem with the service", "Try again later."
        try:
            response: Response = error_page(request, 500, title, message)
        except Exception:  # the templates themselves: a plain page still
            response = HTMLResponse(
                f"<!DOCTYPE html><html lang=en><title>{title}</title><h1>{title}</h1><p>{message}", 500
            )
        response.headers.update({**(headers or {}), "Cache-Control": "no-store"})
        return response

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if exc.portal:
            return RedirectResponse("/portal/sign-in", status_code=303)
        return RedirectResponse(f"/sign-in?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def no_such_page(request: Request, exc: RequestValidationError) -> Response:
        # A page address with a malformed part (a package id that is not one): a page, not JSON.
        return not_found(request)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return error_page(request, 403, "You do not have access", exc.message)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable) -> Response:
        log.warning("a service could not be reached", error=str(exc), path=request.url.path)
        return error_page(
            request,
            503,
            "Sorry, there is a problem with the service",
            "A service the console depends on is not answering. Try again in a few moments.",
        )

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> Response:
        log.info("a service refused a page's request", status=exc.status, path=request.url.path)
        return error_page(
            request,
            exc.status if 400 <= exc.status < 500 else 502,
            "The request was refused",
            REFUSED.get(exc.status, REFUSED_OTHERWISE),
        )

    async def unstorable(request: Request, exc: Exception) -> Response:
        # A value the console's own database refused (the shared edge's JSON answer replaced by a
        # page): the database's words go to the log only.
        log.warning("the database refused a value from a form", path=request.url.path, error_type=type(exc).__name__)
        return error_page(request, 400, "The request was refused", REFUSED_OTHERWISE)

    for error in (
        asyncpg.exceptions.DataError,
        asyncpg.exceptions._base.DataError,
        asyncpg.exceptions.ProgramLimitExceededError,
    ):
        app.add_exception_handler(error, unstorable)

    @app.exception_handler(handlers.Refused)
    async def console_refused(request: Request, exc: handlers.Refused) -> Response:
        return error_page(request, 400, "The request was refused", exc.message)
