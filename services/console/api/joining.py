"""Applications to join the framework and their due diligence (issue 21, decision records
0112-0114), for the contracts and quality team, on the providers service's API:

- ``/applications``: the applications, newest received first (filter by status), and the
  re-opening windows (joining.yaml);
- ``/applications/new``: record an application received through the council's tender portal;
- ``/applications/{id}``: its checklist, each item's latest check and every check; forms to record
  a check, approve (every item passed) or refuse with a reason code.

Every refusal of the API is shown on the form, each field's message next to its question."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from schemas.vocabulary import Band, CareNeed
from services.console import domain
from services.console.api.pages import page, zones
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission
from services.console.handlers import Session

if TYPE_CHECKING:
    from services.console.app import Console

CQC_RATINGS = ["not_yet_rated", "outstanding", "good", "requires_improvement", "inadequate"]
ADAPTERS = ["automatic", "portal", "webhook"]


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter()
    need, form_of = sessions.need, sessions.form_of
    providers = console.services.providers

    async def new_form(
        request: Request, session: Session, values: dict[str, Any], errors: dict[str, str], general: list[str]
    ) -> Response:
        return page(
            request,
            "application_new.html",
            session,
            status=422 if errors or general else 200,
            values=values,
            errors=errors,
            general=general,
            terms=await providers.get("/applications/terms"),
            zone_options=[(z["id"], z["name"]) for z in await zones(console)],
            bands=[b.value for b in Band],
            skills=[c.value for c in CareNeed],
            ratings=CQC_RATINGS,
            adapters=ADAPTERS,
        )

    @router.get("/applications")
    async def applications(request: Request, session: Session = Depends(need(Permission.applications))) -> Response:
        """The applications (``status``: received, approved or refused; default all) and the windows."""
        status = request.query_params.get("status") or ""
        params = {"status": status} if status in ("received", "approved", "refused") else {}
        return page(
            request,
            "applications.html",
            session,
            applications=await providers.get("/applications", params=params),
            terms=await providers.get("/applications/terms"),
            chosen_status=params.get("status", ""),
        )

    @router.get("/applications/new")
    async def application_new(request: Request, session: Session = Depends(need(Permission.applications))) -> Response:
        return await new_form(request, session, {"cqc_rating": "not_yet_rated", "adapter_kind": "automatic"}, {}, [])

    @router.post("/applications/new")
    async def record_application(
        request: Request, session: Session = Depends(need(Permission.applications))
    ) -> Response:
        form = await form_of(request, session)
        try:
            created = await providers.post("/applications", domain.application_body(form))
        except ApiError as refused:
            if refused.status >= 500:
                raise
            errors, general = domain.application_errors(refused.problem)
            return await new_form(request, session, dict(form), errors, general)
        return RedirectResponse(f"/applications/{created['application_id']}", status_code=303)

    async def application_page(
        request: Request, session: Session, application_id: uuid.UUID, errors: dict[str, str], general: list[str]
    ) -> Response:
        return page(
            request,
            "application.html",
            session,
            status=422 if errors or general else 200,
            app=await providers.get(f"/applications/{application_id}"),
            terms=await providers.get("/applications/terms"),
            errors=errors,
            general=general,
            done=request.query_params.get("done", ""),
        )

    @router.get("/applications/{application_id}")
    async def application(
        request: Request, application_id: uuid.UUID, session: Session = Depends(need(Permission.applications))
    ) -> Response:
        return await application_page(request, session, application_id, {}, [])

    async def act(request: Request, session: Session, application_id: uuid.UUID, action: str, body: dict) -> Response:
        try:
            await providers.post(f"/applications/{application_id}/{action}", body)
        except ApiError as refused:
            if refused.status >= 500 or refused.status == 404:
                raise
            errors, general = domain.application_errors(refused.problem)
            return await application_page(request, session, application_id, errors, general)
        return RedirectResponse(f"/applications/{application_id}?done={action}", status_code=303)

    @router.post("/applications/{application_id}/checks")
    async def record_check(
        request: Request, application_id: uuid.UUID, session: Session = Depends(need(Permission.applications))
    ) -> Response:
        """A check of one item: passed or failed, with the evidence's reference; the reviewer is who
        is signed in, the date today (UK)."""
        form = await form_of(request, session)
        body = {
            "item": str(form.get("item") or ""),
            "outcome": str(form.get("outcome") or ""),
            "evidence_reference": str(form.get("evidence_reference") or "").strip(),
        }
        if str(form.get("note") or "").strip():
            body["note"] = str(form.get("note")).strip()
        return await act(request, session, application_id, "checks", body)

    @router.post("/applications/{application_id}/approve")
    async def approve(
        request: Request, application_id: uuid.UUID, session: Session = Depends(need(Permission.applications))
    ) -> Response:
        await form_of(request, session)
        return await act(request, session, application_id, "approve", {})

    @router.post("/applications/{application_id}/refuse")
    async def refuse(
        request: Request, application_id: uuid.UUID, session: Session = Depends(need(Permission.applications))
    ) -> Response:
        form = await form_of(request, session)
        body = {"reason": str(form.get("reason") or "")}
        if str(form.get("note") or "").strip():
            body["note"] = str(form.get("note")).strip()
        return await act(request, session, application_id, "refuse", body)

    return router
