"""The provider portal: a provider's open offers (bid or decline), its packages and, for the
packages it holds, the person's details; its capacity and call times. Every call is the providers
service's provider-scoped API with the provider's own credential, so the portal can show nothing
the provider could not read itself."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from schemas.vocabulary import DeclineReason
from services.console import domain, handlers
from services.console.api.errors import NotSignedIn
from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.runtime import clock

if TYPE_CHECKING:
    from services.console.app import Console

# The daily call slots a provider may cover (the providers service's vocabulary).
CALL_SLOTS = ["early_morning", "morning", "lunch", "tea", "bed", "night"]


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/portal/offers``, ``/portal/packages``, ``/portal/packages/{id}/person`` and ``/portal/profile``."""
    router = APIRouter(include_in_schema=False)
    services = console.services
    provider, form_of = sessions.provider, sessions.form_of

    async def as_provider(session: handlers.Session, method: str, path: str, body: dict | None = None) -> Any:
        try:
            return await services.providers.call(
                method, path, bearer=session.provider_credential, **({"json": body} if body is not None else {})
            )
        except ApiError as refused:
            if refused.status == 401:  # the credential was revoked or rotated meanwhile
                await handlers.sign_out(console.pool, session)
                raise NotSignedIn(portal=True) from None
            raise

    async def offers_page(
        request: Request,
        session: handlers.Session,
        status: int = 200,
        *,
        failed: dict[str, Any] | None = None,
        refused: str | None = None,
    ) -> Response:
        """The open offers, each with the time left to answer; after a refused answer, that offer's
        form again with the typed answers and each problem next to its question (``failed``:
        ``{"package_id", "answer", "typed", "errors"}``)."""
        offers = await as_provider(session, "GET", "/me/offers?status=open")
        now = clock.now()
        for offer in offers:
            closes = clock.parse_instant(offer.get("window_closes_at"))
            offer["time_left"] = domain.time_left(closes, now) if closes else None
        return page(
            request,
            "portal_offers.html",
            session,
            status,
            offers=offers,
            reasons=[r.value for r in DeclineReason],
            decline_words=domain.DECLINE_WORDS,
            refused=refused or await handlers.take_flash(console.pool, session),
            failed=failed or {},
            done=request.query_params.get("done") if request.query_params.get("done") in ("bid", "decline") else None,
        )

    @router.get("/portal/offers")
    async def portal_offers(request: Request, session: handlers.Session = Depends(provider)) -> Response:
        return await offers_page(request, session)

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
        body: dict[str, Any] = {"call_times": [s for s in form.get("call_times") or [] if s in CALL_SLOTS] or None}
        for field in ("weekly_capacity_hours", "max_calls_per_day"):
            if str(form.get(field) or "").strip():
                body[field] = str(form[field]).strip()
        try:
            await as_provider(session, "PATCH", "/me", body)
        except ApiError as refused:
            fields = refused.problem.get("fields") or []
            errors = {
                str(f.get("field")).split(".")[0]: str(f["message"]).removeprefix("Value error, ") for f in fields
            }
            me = await as_provider(session, "GET", "/me")
            return page(
                request,
                "portal_profile.html",
                session,
                400,
                me=me,
                slots=CALL_SLOTS,
                errors=errors or {"weekly_capacity_hours": refused.message},
            )
        return RedirectResponse("/portal/profile?done=1", status_code=303)

    return router
