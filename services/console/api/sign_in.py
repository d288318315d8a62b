"""Signing in and out: staff with a username and password (their console account), providers with
their provider API credential (checked by the providers service, kept in the session for the
portal's calls). A session cookie is set on success; the sign-in forms carry a double-submit CSRF
cookie, since no session exists yet. Another way of signing in (an identity provider) belongs here,
ending in :func:`signed_in` like these."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.console import domain, handlers
from services.console.api.pages import now, page
from services.console.api.sessions import SESSION_COOKIE, SIGN_IN_CSRF_COOKIE, Sessions
from services.console.clients import ApiError

if TYPE_CHECKING:
    from services.console.app import Console


def client(request: Request) -> str:
    """The address a request came from, for sign-in throttling (the peer's: behind a proxy, run
    uvicorn with --proxy-headers and --forwarded-allow-ips so this is the user's, not the proxy's)."""
    return request.client.host if request.client else ""


def safe_next(target: str | None, default: str) -> str:
    """Where to go after signing in: only a path on this console, never an open redirect."""
    return (
        target if target and target.startswith("/") and not target.startswith("//") and "\\" not in target else default
    )


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/`` (to the session's home page), ``/sign-in``, ``/sign-out`` and ``/portal/sign-in``."""
    router = APIRouter(include_in_schema=False)
    services = console.services
    session_of, form_of = sessions.session_of, sessions.form_of

    def sign_in_page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        token = request.cookies.get(SIGN_IN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = page(request, template, None, status, sign_in_csrf=token, **context)
        response.set_cookie(
            SIGN_IN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=console.settings.cookie_secure
        )
        return response

    def signed_in(target: str, token: str) -> RedirectResponse:
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=console.settings.cookie_secure,
            max_age=int(console.policy.absolute.total_seconds()),
        )
        response.delete_cookie(SIGN_IN_CSRF_COOKIE)
        return response

    # ---- staff ------------------------------------------------------------------------------------

    @router.get("/")
    async def home(request: Request):
        session = await session_of(request)
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        if session.kind == "provider":
            return RedirectResponse("/portal/offers", status_code=303)
        return RedirectResponse(domain.HOME[domain.Role(session.role)], status_code=303)

    @router.get("/sign-in")
    async def sign_in_form(request: Request, next: str | None = None):
        return sign_in_page(request, "sign_in.html", next=safe_next(next, ""))

    @router.post("/sign-in")
    async def sign_in(request: Request):
        form = await form_of(request, None)
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        errors = {
            k: m
            for k, m in [
                ("username", "Enter your username" if not username.strip() else None),
                ("password", "Enter your password" if not password else None),
            ]
            if m
        }
        if not errors:
            try:
                token = await handlers.sign_in(
                    console.pool,
                    console.policy,
                    username=username,
                    password=password,
                    now=now(),
                    address=client(request),
                )
            except handlers.Refused as refused:
                errors = {"username": refused.message}
            else:
                return signed_in(safe_next(str(form.get("next") or ""), "/"), token)
        return sign_in_page(request, "sign_in.html", 400, errors=errors, username=username, next=form.get("next") or "")

    @router.post("/sign-out")
    async def sign_out(request: Request):
        session = await session_of(request)
        portal = session is not None and session.kind == "provider"
        if session is not None:
            await form_of(request, session)
            await handlers.sign_out(console.pool, session)
        response = RedirectResponse("/portal/sign-in" if portal else "/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---- providers (the portal), with a credential of the providers service's API -----------------

    async def verify_provider(provider_id: str, credential: str) -> bool:
        try:
            me = await services.providers.get("/me", bearer=credential)
        except ApiError as refused:
            if refused.status in (401, 403):
                return False
            raise
        return isinstance(me, dict) and me.get("provider_id") == provider_id

    @router.get("/portal/sign-in")
    async def portal_sign_in_form(request: Request):
        return sign_in_page(request, "portal_sign_in.html")

    @router.post("/portal/sign-in")
    async def portal_sign_in(request: Request):
        form = await form_of(request, None)
        provider_id, credential = str(form.get("provider_id", "")), str(form.get("credential", ""))
        errors = {
            k: m
            for k, m in [
                ("provider_id", "Enter your provider id" if not provider_id.strip() else None),
                ("credential", "Enter your API credential" if not credential else None),
            ]
            if m
        }
        if not errors:
            try:
                token = await handlers.provider_sign_in(
                    console.pool,
                    console.policy,
                    provider_id=provider_id,
                    credential=credential,
                    now=now(),
                    verify=verify_provider,
                    address=client(request),
                )
            except handlers.Refused as refused:
                errors = {"provider_id": refused.message}
            else:
                return signed_in("/portal/offers", token)
        return sign_in_page(request, "portal_sign_in.html", 400, errors=errors, provider_id=provider_id)

    return router
