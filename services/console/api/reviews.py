"""The review queue page and a package's review form (decision record 0088), and its funding form
(decision record 0089), on the brokerage's API: ``GET /reviews`` lists running packages whose review
is overdue or due soon, most overdue first; the package page's review form records the outcome (no
change, a change, technology-enabled care in place of some visits, an ending) through
``POST /packages/{id}/reviews``; its funding form records who pays, in up to two dated periods, through
``PUT /packages/{id}/funding``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from schemas.vocabulary import (
    SHARE_FUNDERS,
    STAFF_END_REASONS,
    Funder,
    ReviewOutcome,
    TechnologyEnabledCare,
    TopUpPayer,
)
from services.console import domain, handlers
from services.console.api.pages import TEMPLATES, page, zones
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission, number_or_text
from services.console.handlers import Session
from services.runtime import clock
from services.runtime.numbers import whole_number

if TYPE_CHECKING:
    from services.console.app import Console

VISIT_FIELDS = ("calls_per_day", "minutes_per_call", "carers_per_call", "days_per_week")
REVIEW_CHOICES = {
    "outcomes": [o.value for o in ReviewOutcome],
    "technology": [t.value for t in TechnologyEnabledCare],
    "end": [r.value for r in STAFF_END_REASONS],
    "funders": [f.value for f in Funder],
    "share_funders": [f.value for f in SHARE_FUNDERS],
    "top_up": [t.value for t in TopUpPayer],
}
FUNDING_PERIODS = 2  # the form's periods: "the NHS for four weeks, then the council" needs two
TEMPLATES.env.globals["review_choices"] = REVIEW_CHOICES  # the package page's review form (_review.html)


def _date(form: Mapping[str, Any], field: str) -> str:
    day = domain.date_from_parts(
        form.get(f"{field}-day", ""), form.get(f"{field}-month", ""), form.get(f"{field}-year", "")
    )
    return day.isoformat() if day else ""


def review_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """The review API's body from the form: the change only for an outcome that changes the package,
    the ending only for one that ends it (the API names what is missing or extra)."""
    outcome = str(form.get("outcome", ""))
    body: dict[str, Any] = {"outcome": outcome, "reviewed_on": _date(form, "reviewed_on")}
    if outcome in ("changed", "technology_enabled_care"):
        body["change"] = {
            "hours_per_week": str(form.get("hours_per_week", "")).strip(),
            "visits": {name: number_or_text(str(form.get(name, "")).strip()) for name in VISIT_FIELDS},
            "effective_date": _date(form, "review_effective_date"),
            "discussed_with_person": form.get("discussed_with_person") == "yes",
        }
    if outcome == "technology_enabled_care":
        ticked = form.get("technology") or []  # one box ticked: a string; several: a list
        body["technology"] = [ticked] if isinstance(ticked, str) else list(ticked)
    if outcome == "ended":
        body["end"] = {"reason": form.get("end_reason", ""), "effective_date": _date(form, "review_effective_date")}
    notes = str(form.get("notes", "")).strip()
    if notes:
        body["notes"] = notes
    return body


def funding_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """The funding API's body from the form: each period with a funder (a blank one left out); a
    joint period's shares from its per-cent boxes (blank boxes left out; the API checks the total);
    the calls ticked with the funder paying them whole (decision record 0121)."""
    periods = []
    for i in range(1, FUNDING_PERIODS + 1):
        funder = str(form.get(f"funder_{i}", "")).strip()
        if not funder:
            continue
        period: dict[str, Any] = {"effective_from": _date(form, f"funding_from_{i}"), "funder": funder}
        ticked = form.get(f"calls_{i}") or []  # one box ticked: a string; several: a list
        calls = [ticked] if isinstance(ticked, str) else list(ticked)
        if calls:  # decision 0121: calls another funder pays whole; a missing funder is the API's 422
            call_funder = str(form.get(f"call_funder_{i}", "")).strip()
            period["calls"] = [
                {"call": call, "funder": call_funder} for c in calls if (call := whole_number(c)) is not None
            ]
        if funder == "joint":
            period["shares"] = [
                {"funder": f, "percent": str(form.get(f"share_{i}_{f}", "")).strip()}
                for f in REVIEW_CHOICES["share_funders"]
                if str(form.get(f"share_{i}_{f}", "")).strip()
            ]
        periods.append(period)
    body: dict[str, Any] = {"periods": periods}
    top_up = str(form.get("top_up_paid_by", "")).strip()
    if top_up:
        body["top_up_paid_by"] = top_up
    return body


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter()
    need, form_of = sessions.need, sessions.form_of
    services = console.services

    @router.post("/packages/{package_id}/funding")
    async def record_funding(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.act))
    ) -> Response:
        """The package page's funding form: the whole record, replacing the last (a PUT to the API)."""
        form = await form_of(request, session)
        try:
            await services.brokerage.call("PUT", f"/packages/{package_id}/funding", json=funding_body(form))
        except ApiError as refused:
            if refused.status >= 500:
                raise
            message = domain.refusal(refused.problem)
            errors = {str(f.get("field", "")): str(f.get("message", "")) for f in refused.problem.get("fields") or []}
            await handlers.flash(
                console.pool, session, json.dumps({"message": message, "action": "funding", "errors": errors})
            )
            return RedirectResponse(f"/packages/{package_id}#funding", status_code=303)
        return RedirectResponse(f"/packages/{package_id}?done=funding#funding", status_code=303)

    @router.get("/reviews")
    async def review_queue(
        request: Request, session: Session = Depends(need(Permission.board, Permission.reviews))
    ) -> Response:
        """Running packages whose review is overdue or due within the window (a number of days, the
        brokerage's setting unless ``within`` is given), most overdue first; filter by zone."""
        params: dict[str, Any] = {"limit": 200}
        zone = request.query_params.get("zone") or ""
        within = request.query_params.get("within") or ""
        if zone:
            params["zone"] = zone
        days = domain.review_window_days(within)
        if days is not None:
            params["within_days"] = days
        problem = ""
        try:
            queue = await services.brokerage.get("/reviews", params=params)
        except ApiError as exc:
            if exc.status != 422:
                raise
            queue, problem = {"reviews": [], "total": 0, "counts": {}, "due_by": None}, exc.message
        return page(
            request,
            "reviews.html",
            session,
            queue=queue,
            zones=await zones(console),
            chosen_zone=zone,
            within=within,
            problem=problem,
            today=clock.uk_today(),
        )

    return router
