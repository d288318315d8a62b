"""The console's error pages: what a person sees when not signed in (sent to sign in), not allowed
(403), at an address that is no page (404), refused by a service (its 4xx, named), or when a
service is down (503). Always a page, never JSON."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse

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


def install(app: FastAPI) -> None:
    """Answer the console's exceptions, and the services' refusals, with pages."""

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if exc.portal:
            return RedirectResponse("/portal/sign-in", status_code=303)
        return RedirectResponse(f"/sign-in?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def no_such_page(request: Request, exc: RequestValidationError):
        # A page address with a malformed part (a package id that is not one): a page, not JSON.
        return error_page(request, 404, "Page not found", "Check the address: there is no such page")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return error_page(request, 403, "You do not have access", exc.message)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable):
        log.warning("a service could not be reached", error=str(exc), path=request.url.path)
        return error_page(
            request,
            503,
            "Sorry, there is a problem with the service",
            "A service the console depends on is not answering. Try again in a few moments.",
        )

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError):
        return error_page(
            request, exc.status if 400 <= exc.status < 500 else 502, "The request was refused", exc.message
        )

    @app.exception_handler(handlers.Refused)
    async def console_refused(request: Request, exc: handlers.Refused):
        return error_page(request, 400, "The request was refused", exc.message)
