"""Sessions, permissions and CSRF: who is asking, whether they may, and whether a posted form came
from this console. Every page depends on :meth:`Sessions.need` (staff, by permission, domain.PERMISSIONS)
or :meth:`Sessions.provider` (the portal); every form is read through :meth:`Sessions.form_of`, which
checks the session's CSRF token before anything else is read from it. The sign-in forms, which come
before any session, carry a double-submit cookie instead (:data:`SIGN_IN_CSRF_COOKIE`)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request

from services.console import handlers
from services.console.api.errors import Forbidden, NotSignedIn
from services.console.api.pages import now
from services.console.clients import acting_for
from services.console.domain import Permission

if TYPE_CHECKING:
    from services.console.app import Console

SESSION_COOKIE = "console_session"
SIGN_IN_CSRF_COOKIE = "console_sign_in_csrf"
LIST_FIELDS = {"needs", "call_times"}  # checkboxes: always a list, even with one ticked


class Sessions:
    """The request's session (read once per request, from the session cookie) and the page dependencies."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def session_of(self, request: Request) -> handlers.Session | None:
        """The signed-in session (staff or provider), or None; expired and idle sessions are None."""
        if not hasattr(request.state, "session"):
            request.state.session = await handlers.current_session(
                self.console.pool,
                self.console.policy,
                request.cookies.get(SESSION_COOKIE),
                now=now(),
                idp=self.console.oidc if self.console.oidc.issuer else None,
                recheck_after=dt.timedelta(seconds=self.console.settings.idp_recheck_seconds),
            )
        return request.state.session

    def need(self, *permissions: Permission) -> Callable[[Request], Awaitable[handlers.Session]]:
        """A page dependency: a staff session with any of ``permissions`` (NotSignedIn, else Forbidden)."""

        async def dependency(request: Request) -> handlers.Session:
            session = await self.session_of(request)
            if session is None or session.kind != "staff":
                raise NotSignedIn()
            if not any(session.can(p) for p in permissions):
                raise Forbidden()
            acting_for(session.username, session.role)  # the APIs' calls now carry who acts
            return session

        return dependency

    async def provider(self, request: Request) -> handlers.Session:
        """A portal page dependency: a provider's session (NotSignedIn, to the portal's sign-in)."""
        session = await self.session_of(request)
        if session is None or session.kind != "provider":
            raise NotSignedIn(portal=True)
        return session

    async def form_of(self, request: Request, session: handlers.Session | None) -> dict[str, Any]:
        """The posted form, once its CSRF token is the session's (or the sign-in cookie's)."""
        form = await request.form()
        expected = session.csrf_token if session else request.cookies.get(SIGN_IN_CSRF_COOKIE)
        given = str(form.get("csrf_token", "")).encode()  # bytes: compare_digest refuses non-ASCII text
        if not expected or not secrets.compare_digest(given, expected.encode()):
            raise Forbidden(
                "This form has expired or did not come from this console. Go back, reload the page and try again"
            )
        # A NUL character cannot be stored or sent on (decision 0129): the form is refused naming the
        # field, before any service is asked. (Starlette already turns bytes that are not UTF-8 into U+FFFD.)
        for key, value in form.multi_items():
            if "\x00" in key or (isinstance(value, str) and "\x00" in value):
                field = key.replace("\x00", "")
                raise handlers.Refused(
                    f"The answer to {field!r} contains a NUL character, which cannot be kept: remove it and try again",
                    field=field,
                )
        return {k: (form.getlist(k) if len(form.getlist(k)) > 1 or k in LIST_FIELDS else form.get(k)) for k in form}
