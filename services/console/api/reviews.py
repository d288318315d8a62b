"""The review queue page and a package's review form (decision record 0088), on the brokerage's API:
``GET /reviews`` lists running packages whose review is overdue or due soon, most overdue first;
the package page's review form records the outcome (no change, a change, technology-enabled care in
place of some visits, an ending) through ``POST /packages/{id}/reviews``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response

from schemas.vocabulary import STAFF_END_REASONS, ReviewOutcome, TechnologyEnabledCare
from services.console import domain
from services.console.api.pages import TEMPLATES, page, zones
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission
from services.console.handlers import Session
from services.runtime import clock

if TYPE_CHECKING:
    from services.console.app import Console

VISIT_FIELDS = ("calls_per_day", "minutes_per_call", "carers_per_call", "days_per_week")
REVIEW_CHOICES = {
    "outcomes": [o.value for o in ReviewOutcome],
    "technology": [t.value for t in TechnologyEnabledCare],
    "end": [r.value for r in STAFF_END_REASONS],
}
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

        def number(name: str) -> object:
            raw = str(form.get(name, "")).strip()
            return int(raw) if raw.isdigit() else raw

        body["change"] = {
            "hours_per_week": str(form.get("hours_per_week", "")).strip(),
            "visits": {name: number(name) for name in VISIT_FIELDS},
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


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter()
    need = sessions.need
    services = console.services

    @router.get("/reviews")
    async def review_queue(request: Request, session: Session = Depends(need(Permission.board))) -> Response:
        """Running packages whose review is overdue or due within the window (a number of days, the
        brokerage's setting unless ``within`` is given), most overdue first; filter by zone."""
        params: dict[str, Any] = {"limit": 200}
        zone = request.query_params.get("zone") or ""
        within = request.query_params.get("within") or ""
        if zone:
            params["zone"] = zone
        if within.isdigit() and int(within) <= 400:
            params["within_days"] = int(within)
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
