"""Safeguarding concerns in the console (decision records 0106-0108), on the providers service's API:

- the package page's "raise a concern" form (the brokerage team, operations, administrators) posts to
  ``POST /packages/{id}/concern``, which sends ``POST /concerns``: the raiser reads nothing back;
- the safeguarding team's queue (``GET /safeguarding``: open concerns first, immediate risk first, no
  words) and each concern's page (``GET /safeguarding/{id}``: its words, who decided what, who read
  it - every read audited by the providers service), with the forms that pause the provider's new
  offers pending the enquiry and record the outcome, which lifts the pause.

Nothing here is logged, and the concern's words are never put in an address."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from services.console import domain
from services.console.api.pages import TEMPLATES, page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission
from services.console.handlers import Session

if TYPE_CHECKING:
    from services.console.app import Console

DONE = {
    "paused": "New offers to the provider are paused until this concern's outcome.",
    "closed": "The outcome was recorded: the concern is closed and its pause of new offers lifted.",
}
CHOICES = {
    "categories": domain.CONCERN_CATEGORIES,
    "pause_reasons": domain.PAUSE_REASONS,
    "outcomes": domain.CONCERN_OUTCOMES,
}

TEMPLATES.env.globals["concern_choices"] = CHOICES  # the package page's concern form (_concern_form.html)


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter()
    need, form_of = sessions.need, sessions.form_of
    services = console.services

    @router.post("/packages/{package_id}/concern")
    async def raise_concern(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.raise_concern))
    ) -> Response:
        """The package page's form: refused answers come back on a page of their own, kept as typed."""
        form = await form_of(request, session)
        try:
            package = await services.brokerage.get(f"/packages/{package_id}")
        except ApiError as missing:
            if missing.status != 404:
                raise
            return page(request, "error.html", session, 404, title="Page not found", message="There is no package")
        body, problems = domain.concern_request(form, package)
        if body is not None:
            try:
                await services.providers.post("/concerns", body)
            except ApiError as refused:
                if refused.status >= 500 or refused.status in (401, 403):
                    raise
                problems = {
                    str(f.get("field", "")).split(".")[0] or "details": str(f.get("message", ""))
                    for f in refused.problem.get("fields") or []
                } or {"details": domain.refusal(refused.problem)}
            else:
                return RedirectResponse(f"/packages/{package_id}?done=concern", status_code=303)
        return page(
            request,
            "concern_new.html",
            session,
            400,
            p=package,
            values={k: v for k, v in form.items() if k != "csrf_token"},
            errors=problems,
            choices=CHOICES,
        )

    @router.get("/safeguarding")
    async def queue(request: Request, session: Session = Depends(need(Permission.safeguarding))) -> Response:
        """The safeguarding queue: open concerns (immediate risk first, then oldest), or closed, or all."""
        status = request.query_params.get("status") or "open"
        if status not in ("open", "closed", "all"):
            status = "open"
        found = await services.providers.get("/concerns", params={"status": status, "limit": 500})
        return page(request, "safeguarding.html", session, queue=found, chosen=status)

    async def concern_page(
        request: Request, session: Session, concern_id: uuid.UUID, status: int = 200, **context: Any
    ) -> Response:
        try:
            concern = await services.providers.get(f"/concerns/{concern_id}")  # audited by the providers service
        except ApiError as missing:
            if missing.status != 404:
                raise
            return page(request, "error.html", session, 404, title="Page not found", message="There is no such concern")
        done = DONE.get(request.query_params.get("done") or "")
        return page(request, "concern.html", session, status, c=concern, choices=CHOICES, done=done, **context)

    @router.get("/safeguarding/{concern_id}")
    async def concern(
        request: Request, concern_id: uuid.UUID, session: Session = Depends(need(Permission.safeguarding))
    ) -> Response:
        return await concern_page(request, session, concern_id)

    async def decide(request: Request, session: Session, concern_id: uuid.UUID, action: str) -> Response:
        form = await form_of(request, session)
        field, choices = ("reason", domain.PAUSE_REASONS) if action == "pause" else ("outcome", domain.CONCERN_OUTCOMES)
        value = str(form.get(field, ""))
        if value not in choices:
            message = "Select why new offers are paused" if action == "pause" else "Select the concern's outcome"
            return await concern_page(request, session, concern_id, 400, errors={field: message}, failed=action)
        try:
            await services.providers.post(f"/concerns/{concern_id}/{action}", {field: value})
        except ApiError as refused:
            if refused.status >= 500 or refused.status in (401, 403):
                raise
            return await concern_page(
                request, session, concern_id, 409, errors={field: domain.refusal(refused.problem)}, failed=action
            )
        done = "paused" if action == "pause" else "closed"
        return RedirectResponse(f"/safeguarding/{concern_id}?done={done}", status_code=303)

    @router.post("/safeguarding/{concern_id}/pause")
    async def pause(
        request: Request, concern_id: uuid.UUID, session: Session = Depends(need(Permission.safeguarding))
    ) -> Response:
        return await decide(request, session, concern_id, "pause")

    @router.post("/safeguarding/{concern_id}/outcome")
    async def outcome(
        request: Request, concern_id: uuid.UUID, session: Session = Depends(need(Permission.safeguarding))
    ) -> Response:
        return await decide(request, session, concern_id, "outcome")

    return router
