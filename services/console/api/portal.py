"""The provider portal: a provider's open offers (bid or decline), its packages and, for the
packages it holds, the person's details; its capacity and call times. Every call is the providers
service's provider-scoped API with the provider's own credential, so the portal can show nothing
the provider could not read itself."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from schemas.vocabulary import DeclineReason
from services.console import domain, handlers
from services.console.api.errors import NotSignedIn
from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError, acting_for_provider_staff
from services.runtime import clock

if TYPE_CHECKING:
    from services.console.app import Console

# The daily call slots a provider may cover (the providers service's vocabulary).
CALL_SLOTS = ["early_morning", "morning", "lunch", "tea", "bed", "night"]
HISTORY_PAGE = 25  # offers a page of the history


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/portal/offers``, ``/portal/packages``, ``/portal/packages/{id}/person`` and ``/portal/profile``."""
    router = APIRouter(include_in_schema=False)
    services = console.services
    provider, form_of = sessions.provider, sessions.form_of

    async def as_provider(
        session: handlers.Session, method: str, path: str, body: dict | None = None, **kwargs: Any
    ) -> Any:
        """A provider-API call for the session: with the organisation's credential, or (a named staff
        user, decision 0126) the console's own account acting for them."""
        if session.provider_credential is None and session.username and session.provider_id:
            acting_for_provider_staff(session.username, session.provider_id)
        try:
            return await services.providers.call(
                method,
                path,
                bearer=session.provider_credential,
                **({"json": body} if body is not None else {}),
                **kwargs,
            )
        except ApiError as refused:
            # The credential was revoked or rotated meanwhile; or the named user was removed.
            if refused.status == 401 or refused.problem.get("code") == "not-a-provider-user":
                await handlers.sign_out(console.pool, session)
                raise NotSignedIn(portal=True) from None
            raise

    async def inbox(request: Request, session: handlers.Session) -> dict[str, Any]:
        """The open offers with when each was first opened, and the menu's count of unread ones."""
        inbox = await as_provider(session, "GET", "/me/inbox")
        now = clock.now()
        for offer in inbox["offers"]:
            closes = clock.parse_instant(offer.get("window_closes_at"))
            offer["time_left"] = domain.time_left(closes, now) if closes else None
        request.state.badges = {"/portal/offers": inbox["unread"]} if inbox["unread"] else {}
        return inbox

    async def offers_page(
        request: Request,
        session: handlers.Session,
        status: int = 200,
        *,
        failed: dict[str, Any] | None = None,
        refused: str | None = None,
        only: str | None = None,
    ) -> Response:
        """The open offers, each with the time left to answer; after a refused answer, that offer's
        form again with the typed answers and each problem next to its question (``failed``:
        ``{"package_id", "answer", "typed", "errors"}``)."""
        offers = (await inbox(request, session))["offers"]
        if only is not None:
            offers = [o for o in offers if o["package_id"] == only]
        return page(
            request,
            "portal_offers.html",
            session,
            status,
            offers=offers,
            only=only,
            reasons=[r.value for r in DeclineReason],
            decline_words=domain.DECLINE_WORDS,
            refused=refused or await handlers.take_flash(console.pool, session),
            failed=failed or {},
            done=request.query_params.get("done") if request.query_params.get("done") in ("bid", "decline") else None,
        )

    @router.get("/portal/offers")
    async def portal_offers(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        return await offers_page(request, session)

    @router.get("/portal/offers/{package_id}")
    async def portal_offer(
        request: Request, package_id: uuid.UUID, session: handlers.Session = Depends(provider)
    ) -> Response:
        """One offer, opened: marked read for the organisation (decision 0127), then shown to answer."""
        try:
            await as_provider(session, "POST", f"/me/offers/{package_id}/open")
        except ApiError as refused:
            if refused.status != 404:
                raise
            return page(
                request,
                "error.html",
                session,
                404,
                title="Page not found",
                message="This package was not offered to you",
            )
        return await offers_page(request, session, only=str(package_id))

    @router.get("/portal/history")
    async def portal_history(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        """The answered and settled offers, newest first, a page at a time (the API's cursor)."""
        cursor = request.query_params.get("cursor")
        query = {"limit": str(HISTORY_PAGE)} | ({"cursor": cursor} if cursor else {})
        entries, following = await as_provider(session, "GET", "/me/history", params=query, with_next=True)
        await inbox(request, session)  # the menu's unread count
        next_cursor = parse_qs(urlsplit(following).query).get("cursor", [None])[0] if following else None
        for entry in entries:
            entry["words"] = domain.history_words(entry)
        return page(
            request,
            "portal_history.html",
            session,
            entries=entries,
            next_cursor=next_cursor,
            first_page=cursor is None,
            decline_words=domain.DECLINE_WORDS,
        )

    # ---- the organisation's named users: its admin users (decision 0126) ----------------------------

    async def users_page(request: Request, session: handlers.Session, status: int = 200, **context: Any) -> Response:
        try:
            users = await as_provider(session, "GET", "/me/users")
        except ApiError as refused:
            if refused.status != 403:
                raise
            return page(
                request,
                "error.html",
                session,
                403,
                title="You cannot manage your organisation's users",
                message="Only your organisation's admin users add and remove its users.",
            )
        await inbox(request, session)
        return page(request, "portal_users.html", session, status, users=users, **context)

    @router.get("/portal/users")
    async def portal_users(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        done = request.query_params.get("done")
        return await users_page(request, session, done=done if done in ("added", "removed") else None)

    @router.post("/portal/users")
    async def portal_add_user(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        form = await form_of(request, session)
        typed = {k: str(form.get(k) or "").strip() for k in ("username", "name", "role")}
        errors = domain.provider_user_problems(typed)
        if not errors:
            try:
                await as_provider(session, "POST", "/me/users", typed)
            except ApiError as refused:
                errors = domain.provider_user_refusal(refused.status, refused.problem)
        if errors:
            return await users_page(
                request, session, 400 if not errors.get("status") else 409, errors=errors, typed=typed
            )
        return RedirectResponse("/portal/users?done=added", status_code=303)

    @router.get("/portal/users/{user_id}/remove")
    async def portal_confirm_removal(
        request: Request, user_id: uuid.UUID, session: handlers.Session = Depends(provider)
    ) -> Response:
        """Check before a consequential action: the user's name and what removing them does."""
        users = await as_provider(session, "GET", "/me/users")
        user = next((u for u in users if u["user_id"] == str(user_id)), None)
        if user is None:
            return page(request, "error.html", session, 404, title="Page not found", message="No such user of yours")
        await inbox(request, session)
        return page(request, "portal_user_remove.html", session, user=user)

    @router.post("/portal/users/{user_id}/remove")
    async def portal_remove_user(
        request: Request, user_id: uuid.UUID, session: handlers.Session = Depends(provider)
    ) -> Response:
        await form_of(request, session)
        try:
            await as_provider(session, "POST", f"/me/users/{user_id}/remove")
        except ApiError as refused:
            if refused.status not in (404, 409):
                raise
            return await users_page(
                request,
                session,
                refused.status,
                refused_removal=domain.provider_user_refusal(refused.status, refused.problem).get("status"),
            )
        return RedirectResponse("/portal/users?done=removed", status_code=303)

    @router.post("/portal/offers/{package_id}/{answer}")
    async def portal_answer(
        request: Request, package_id: uuid.UUID, answer: str, session: handlers.Session = Depends(provider)
    ) -> Response:
        form = await form_of(request, session)
        if answer not in ("bid", "decline"):
            return page(request, "error.html", session, 404, title="Page not found", message=f"No answer {answer}")
        values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
        errors, status = domain.portal_answer_problems(answer, values), 422
        if not errors:
            body = domain.portal_answer_body(answer, values)
            try:
                await as_provider(session, "POST", f"/me/offers/{package_id}/open")  # answering is opening
                await as_provider(session, "POST", f"/me/offers/{package_id}/{answer}", body)
            except ApiError as refused:
                errors, status = domain.portal_refusal(answer, refused.status, refused.problem), refused.status
        if errors:
            failed = {"package_id": str(package_id), "answer": answer, "typed": values, "errors": errors}
            return await offers_page(request, session, status, failed=failed)
        return RedirectResponse(f"/portal/offers?done={answer}", status_code=303)

    @router.get("/portal/packages")
    async def portal_packages(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        return page(
            request, "portal_packages.html", session, packages=await as_provider(session, "GET", "/me/packages")
        )

    @router.get("/portal/packages/{package_id}/person")
    async def portal_person(
        request: Request, package_id: uuid.UUID, session: handlers.Session = Depends(provider)
    ) -> Response:
        try:
            person = await as_provider(session, "GET", f"/me/packages/{package_id}/person")
        except ApiError as refused:
            return page(
                request,
                "error.html",
                session,
                refused.status if refused.status in (403, 404) else 400,
                title="You cannot see this person's details",
                message=refused.message,
            )
        return page(request, "portal_person.html", session, person=person, package_id=package_id)

    @router.get("/portal/profile")
    async def portal_profile(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        me = await as_provider(session, "GET", "/me")
        return page(
            request,
            "portal_profile.html",
            session,
            me=me,
            slots=CALL_SLOTS,
            done=request.query_params.get("done") == "1",
        )

    @router.post("/portal/profile")
    async def portal_update_profile(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        form = await form_of(request, session)
        ticked = [str(s) for s in form.get("call_times") or []]
        typed = {
            "weekly_capacity_hours": str(form.get("weekly_capacity_hours") or ""),
            "call_times": ticked,
            "max_calls_per_day": str(form.get("max_calls_per_day") or ""),
        }
        # No slot ticked: any call time (the form's hint), which the API takes as null.
        body: dict[str, Any] = {"call_times": ticked or None}
        errors: dict[str, str] = {}
        if any(s not in CALL_SLOTS for s in ticked):
            errors["call_times"] = "Choose call times from the list"
        if capacity := str(form.get("weekly_capacity_hours") or "").strip():
            body["weekly_capacity_hours"] = capacity
        if calls := str(form.get("max_calls_per_day") or "").strip():
            number, problem = domain.calls_a_day(calls)
            if problem:  # said in the form's words, not the API's ("Input should be a valid integer")
                errors["max_calls_per_day"] = problem
            body["max_calls_per_day"] = number
        if not errors:
            try:
                await as_provider(session, "PATCH", "/me", body)
            except ApiError as refused:
                errors = domain.profile_refusal(refused.problem)
        if errors:
            me = await as_provider(session, "GET", "/me")
            return page(
                request,
                "portal_profile.html",
                session,
                400,
                me=me,
                slots=CALL_SLOTS,
                errors=errors,
                typed=typed,
            )
        return RedirectResponse("/portal/profile?done=1", status_code=303)

    return router
