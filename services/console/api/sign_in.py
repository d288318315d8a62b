"""Signing in and out: staff through the identity provider (OpenID Connect, authorization code
with PKCE: :mod:`services.console.oidc`) or, where an installation has none and enables them
(CONSOLE_LOCAL_ACCOUNTS), with a console account's username and password; providers with their
provider API credential (checked by the providers service, kept sealed in the session for the
portal's calls). A session cookie is set on success; the sign-in forms carry a double-submit CSRF
cookie, since no session exists yet. Signing out of a session begun at the identity provider ends
the session there too."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from services.console import domain, handlers
from services.console.api.errors import error_page
from services.console.api.pages import now, page
from services.console.api.sessions import SESSION_COOKIE, SIGN_IN_CSRF_COOKIE, Sessions
from services.console.clients import ApiError, acting_for_provider_staff
from services.console.oidc import SignInFailed
from services.runtime.logging import get_logger

if TYPE_CHECKING:
    from services.console.app import Console


log = get_logger(__name__)
# The random key of a sign-in on its way through the identity provider (handlers.begin_oidc_sign_in).
# SameSite=Lax: the identity provider's redirect back is a top-level navigation, which carries it.
OIDC_FLOW_COOKIE = "console_oidc_sign_in"
CALLBACK = "/sign-in/callback"
PORTAL_HOME = "/portal/offers"


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

    def sign_in_page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
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
    async def home(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        if session.kind == "provider":
            return RedirectResponse("/portal/offers", status_code=303)
        if session.role is None:  # a staff session always has a role; none is no way in
            return RedirectResponse("/sign-in", status_code=303)
        return RedirectResponse(domain.HOME[domain.Role(session.role)], status_code=303)

    oidc = console.oidc
    local_accounts = console.policy.local_accounts

    def base_url(request: Request) -> str:
        """The console's address as browsers reach it (CONSOLE_PUBLIC_URL, else the request's)."""
        return (console.settings.public_url or str(request.base_url)).rstrip("/")

    def staff_sign_in_page(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        return sign_in_page(
            request,
            "sign_in.html",
            status,
            oidc_name=oidc.provider_name if oidc.configured else None,
            local_accounts=local_accounts,
            **context,
        )

    def sign_in_failed(request: Request, failed: SignInFailed) -> HTMLResponse:
        # The reason code only: never the code, a token, or what the identity provider described.
        log.warning("staff sign-in through the identity provider refused", reason=failed.reason)
        response = error_page(request, failed.status, "You could not be signed in", failed.message)
        response.delete_cookie(OIDC_FLOW_COOKIE, path="/sign-in")
        return response

    @router.get("/sign-in")
    async def sign_in_form(request: Request, next: str | None = None) -> Response:
        """Staff sign-in: "Sign in with <provider>" (and the password form where local accounts are on)."""
        return staff_sign_in_page(request, next=safe_next(next, ""))

    @router.get("/portal/sign-in/start")
    async def portal_sign_in_start(request: Request) -> Response:
        """A provider's named staff user signs in through the identity provider (decision 0126): the
        same flow as staff, coming back to the portal."""
        return await sign_in_start(request, next=PORTAL_HOME)

    @router.get("/sign-in/start")
    async def sign_in_start(request: Request, next: str | None = None) -> Response:
        """To the identity provider's sign-in page, with a new state, nonce and PKCE challenge (S256),
        kept server-side under a random key in a short-lived cookie."""
        if not oidc.configured:
            return error_page(
                request, 404, "Page not found", "This console does not sign in through an identity provider"
            )
        try:
            authorization = await oidc.authorization(base_url(request) + CALLBACK)
        except SignInFailed as failed:
            return sign_in_failed(request, failed)
        key = await handlers.begin_oidc_sign_in(
            console.pool,
            state=authorization.state,
            nonce=authorization.nonce,
            code_verifier=authorization.code_verifier,
            next=safe_next(next, ""),
            now=now(),
        )
        response = RedirectResponse(authorization.url, status_code=303)
        response.set_cookie(
            OIDC_FLOW_COOKIE,
            key,
            max_age=handlers.SIGN_IN_FLOW_MINUTES * 60,
            path="/sign-in",
            httponly=True,
            samesite="lax",
            secure=console.settings.cookie_secure,
        )
        return response

    @router.get(CALLBACK)
    async def sign_in_callback(
        request: Request, code: str | None = None, state: str | None = None, error: str | None = None
    ) -> Response:
        """The identity provider's answer: the sign-in begun in this browser (used once), the same
        state, the code exchanged (with the verifier) for an ID token that must be valid, for this
        console and this sign-in's nonce, and a console role from its roles; then a staff session.
        Anything else is an error page with a plain message (oidc.SignInFailed), logged by reason."""
        pending = await handlers.take_oidc_sign_in(console.pool, request.cookies.get(OIDC_FLOW_COOKIE))
        try:
            if error is not None:
                known = error if error in IDP_ERRORS else "other"
                raise SignInFailed(f"idp_error:{known}", IDP_ERRORS.get(error, IDP_ERRORS["other"]))
            if pending is None:
                raise SignInFailed(
                    "no_sign_in_in_progress",
                    "This sign-in has expired or was not started in this browser. Go back to the sign-in page and "
                    "try again.",
                )
            if not state or not secrets.compare_digest(state.encode(), pending.state.encode()):
                raise SignInFailed(
                    "state_mismatch",
                    "This sign-in did not come from this browser's request. Go back to the sign-in page and try again.",
                )
            if not code:
                raise SignInFailed(
                    "no_code", "The sign-in service sent no answer. Go back to the sign-in page and try again."
                )
            tokens = await oidc.exchange(
                code, code_verifier=pending.code_verifier, redirect_uri=base_url(request) + CALLBACK
            )
            if pending.next == PORTAL_HOME:
                identity = await oidc.provider_staff_identity(tokens["id_token"], nonce=pending.nonce)
                assert identity.provider_id is not None  # provider_staff_identity refuses a token without one
                member = await provider_membership(identity.username, identity.provider_id)
                token = await handlers.portal_oidc_sign_in(
                    console.pool,
                    console.policy,
                    identity,
                    provider_id=member["provider_id"],
                    portal_role="provider_admin" if member["user"]["role"] == "admin" else "provider_staff",
                    id_token=tokens["id_token"],
                    refresh_token=tokens.get("refresh_token"),
                    now=now(),
                )
                log.info("provider staff signed in through the identity provider", provider=member["provider_id"])
                response = signed_in(PORTAL_HOME, token)
                response.delete_cookie(OIDC_FLOW_COOKIE, path="/sign-in")
                return response
            identity = await oidc.identity(tokens["id_token"], nonce=pending.nonce)
        except SignInFailed as failed:
            return sign_in_failed(request, failed)
        assert identity.role is not None  # oidc.identity refuses anyone without a console role
        token = await handlers.oidc_sign_in(
            console.pool,
            console.policy,
            identity,
            id_token=tokens["id_token"],
            refresh_token=tokens.get("refresh_token"),
            now=now(),
        )
        log.info("staff signed in through the identity provider", user=identity.username, role=identity.role.value)
        response = signed_in(safe_next(pending.next, "/"), token)
        response.delete_cookie(OIDC_FLOW_COOKIE, path="/sign-in")
        return response

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        """A console account's username and password: only where local accounts are on; refused (403)
        otherwise, before the form is read."""
        if not local_accounts:
            return error_page(request, 403, "You could not be signed in", handlers.LOCAL_ACCOUNTS_OFF)
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
        return staff_sign_in_page(request, 400, errors=errors, username=username, next=form.get("next") or "")

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        """Ends the console's session; for a session begun at the identity provider, its session there
        too (RP-initiated logout: to its end_session_endpoint with id_token_hint, back to /sign-in)."""
        session = await session_of(request)
        portal = session is not None and session.kind == "provider"
        target = "/portal/sign-in" if portal else "/sign-in"
        if session is not None:
            await form_of(request, session)
            await handlers.sign_out(console.pool, session)
            if session.id_token is not None:
                ended = await oidc.end_session_url(
                    id_token=session.id_token, post_logout_redirect_uri=base_url(request) + target
                )
                target = ended or target
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---- providers (the portal), with a credential of the providers service's API -----------------

    async def provider_membership(username: str, provider_id: str) -> dict[str, Any]:
        """A named provider staff user's membership of the provider their token names, as the
        providers service says (``GET /me`` acting for them); SignInFailed when they are not its user."""
        acting_for_provider_staff(username, provider_id)
        try:
            me = await services.providers.get("/me")
        except ApiError as refused:
            if refused.status in (401, 403):
                raise SignInFailed(
                    "not_a_provider_user",
                    "Your account is not a user of the provider it names. Ask your organisation's admin user to "
                    "add you; if your account names the wrong provider, ask the council's administrators.",
                    403,
                ) from None
            raise
        if not isinstance(me, dict) or not isinstance(me.get("user"), dict):
            raise SignInFailed("not_a_provider_user", "Your account is not a provider's user.", 403)
        return me

    async def verify_provider(provider_id: str, credential: str) -> bool:
        try:
            me = await services.providers.get("/me", bearer=credential)
        except ApiError as refused:
            if refused.status in (401, 403):
                return False
            raise
        return isinstance(me, dict) and me.get("provider_id") == provider_id

    @router.get("/portal/sign-in")
    async def portal_sign_in_form(request: Request) -> Response:
        return sign_in_page(request, "portal_sign_in.html", oidc_name=oidc.provider_name if oidc.configured else None)

    @router.post("/portal/sign-in")
    async def portal_sign_in(request: Request) -> Response:
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
        return sign_in_page(
            request,
            "portal_sign_in.html",
            400,
            errors=errors,
            provider_id=provider_id,
            oidc_name=oidc.provider_name if oidc.configured else None,
        )

    return router


# The identity provider's error codes (RFC 6749 4.1.2.1, OpenID Connect Core 3.1.2.6) as plain words;
# its error_description is never shown (it is the identity provider's text, sent through the URL).
IDP_ERRORS = {
    "access_denied": "The sign-in service did not sign you in. Go back to the sign-in page and try again.",
    "login_required": "You need to sign in with the sign-in service. Go back to the sign-in page and try again.",
    "temporarily_unavailable": "The sign-in service is not available at the moment. Try again in a few minutes.",
    "server_error": "The sign-in service had a problem. Try again in a few minutes.",
    "other": "The sign-in service could not sign you in. Go back to the sign-in page and try again, or ask your "
    "administrator.",
}
