"""The brokerage team's pages: the board (every package, most urgent first, filterable), the new
package form, a package's page (its explanation; the person's details for those allowed, each read
audited by the brokerage) and the actions on it (approve or reject an above-rate bid, cancel,
re-offer, record a hand-back or a start, pause, resume, end or change a running package), all through
the brokerage's API."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from schemas.vocabulary import (
    STAFF_END_REASONS,
    Band,
    CancelReason,
    CareNeed,
    ChangeReason,
    ExceptionDecisionReason,
    Funding,
    HandBackReason,
    PauseReason,
    Urgency,
)
from services.console import domain, handlers
from services.console.api.pages import TEMPLATES, now, page, zones
from services.console.api.reviews import review_body
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission
from services.console.handlers import Session
from services.runtime import clock

# The reason codes each action's form offers (a select; the optional words stay in the brokerage).
REASONS = {
    "cancel": [r.value for r in CancelReason],
    "hand-back": [r.value for r in HandBackReason],
    "decision": [r.value for r in ExceptionDecisionReason],
    "end": [r.value for r in STAFF_END_REASONS],
    "pause": [r.value for r in PauseReason],
    "change": [r.value for r in ChangeReason],
}
# The actions whose refusals are shown next to their form's fields (decision record 0078).
FIELD_ERRORS = ("end", "pause", "resume", "change", "review")
# The change form's date is named apart from the ending's (both forms are on a started package's page).
FORM_FIELDS = {"change": {"effective_date": "change_effective_date"}}
VISIT_FIELDS = ("calls_per_day", "minutes_per_call", "carers_per_call", "days_per_week")


def _change_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """A change to a running package (decision record 0082) from the form: numbers where they are
    numbers (else passed as typed, for the API to name the field), the discussion as a checkbox."""

    def number(name: str) -> object:
        raw = str(form.get(name, "")).strip()
        return int(raw) if raw.isdigit() else raw

    text = str(form.get("reason_text", "")).strip()
    return {
        "hours_per_week": str(form.get("hours_per_week", "")).strip(),
        "visits": {name: number(name) for name in VISIT_FIELDS},
        "reason": form.get("reason", ""),
        "effective_date": _date_field(form, "change_effective_date"),
        "discussed_with_person": form.get("discussed_with_person") == "yes",
        "reason_text": text or None,
    }


def _date_field(form: Mapping[str, Any], field: str) -> str:
    """A GOV.UK date input's three parts as an ISO date; blank when they are not a date (the API
    then names the field)."""
    day = domain.date_from_parts(
        form.get(f"{field}-day", ""), form.get(f"{field}-month", ""), form.get(f"{field}-year", "")
    )
    return day.isoformat() if day else ""


if TYPE_CHECKING:
    from services.console.app import Console


def _parse_time(value: Any) -> dt.datetime | None:
    return None if not value else value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/board``, ``/packages/new``, ``/packages/{id}`` and ``/packages/{id}/{action}``."""
    router = APIRouter(include_in_schema=False)
    services = console.services
    need, form_of = sessions.need, sessions.form_of

    def filters_of(request: Request) -> dict[str, str]:
        """The board's filters from the query string: known values only (anything else is dropped,
        never shown back); ``status`` is one status, ``open`` (the work queue, the default) or ``all``."""
        allowed = {
            "zone": None,
            "band": {b.value for b in Band},
            "urgency": {u.value for u in Urgency},
            "status": {*domain.STATUS_ORDER, "open", "all"},
        }
        chosen = {}
        for name, values in allowed.items():
            value = request.query_params.get(name) or ""
            if value and (values is None or value in values):
                chosen[name] = value
        search = " ".join((request.query_params.get("q") or "").split())[:100]
        if search:
            chosen["q"] = search
        return chosen

    def page_of(request: Request) -> int:
        value = request.query_params.get("page", "1")
        return max(1, min(int(value), 10_000)) if value.isdigit() else 1

    async def board_rows(chosen: dict[str, str], page_number: int) -> tuple[list[dict], int, dict[str, int], str]:
        """A page of the work queue, most urgent first: (rows, total, counts per status, error)."""
        status = chosen.get("status", "open")
        params: dict[str, Any] = {k: v for k, v in chosen.items() if k != "status"}
        if status == "open":
            params["status"] = ",".join(domain.OPEN)
        elif status != "all":
            params["status"] = status
        params |= {"sort": "queue", "limit": domain.BOARD_PAGE, "offset": (page_number - 1) * domain.BOARD_PAGE}
        try:
            answer = await services.brokerage.get("/packages", params=params)
        except ApiError as exc:
            if exc.status not in (403, 422):
                raise
            return [], 0, {}, domain.search_problem(exc.status)
        at = now()
        packages = answer["packages"]
        for p in packages:
            for key in ("requested_at", "placed_at", "unplaced_at", "window_closes_at", "next_reoffer_at"):
                p[key] = _parse_time(p.get(key))
            p["waited"] = domain.waited(p["requested_at"], domain.wait_of(p, at))
            p["waiting"] = p["status"] in domain.WAITING
            p["deadline"] = domain.deadline_of(p, at)
        return packages, answer["total"], answer["counts"], ""

    @router.get("/board")
    async def board(request: Request, session: Session = Depends(need(Permission.board))) -> Response:
        """The broker's work queue: counts per status (each a link), filters, a search by package id,
        NHS number or name (the API audits a person search), a page of 50, the most urgent first."""
        chosen = filters_of(request)
        page_number = page_of(request)
        rows, total, counts, problem = await board_rows(chosen, page_number)
        if request.query_params.get("fragment") == "rows":
            return TEMPLATES.TemplateResponse(request, "_board_rows.html", {"rows": rows})
        pages = max(1, -(-total // domain.BOARD_PAGE))
        return page(
            request,
            "board.html",
            session,
            rows=rows,
            total=total,
            counts=[(s, counts.get(s, 0)) for s in domain.STATUS_ORDER if counts.get(s)],
            open_count=sum(counts.get(s, 0) for s in domain.OPEN),
            chosen=chosen,
            chosen_status=chosen.get("status", "open"),
            search_problem=problem,
            zones=await zones(console),
            bands=[b.value for b in Band],
            urgencies=[u.value for u in Urgency],
            statuses=domain.STATUS_ORDER,
            query=urlencode(chosen),
            page_number=page_number,
            pages=pages,
            link=lambda **changes: "/board?" + urlencode({**chosen, **changes}),
            now=now(),
        )

    def package_form_context(
        values: dict | None = None, errors: dict | None = None, general: list | None = None
    ) -> dict:
        return {
            "values": values or {},
            "errors": errors or {},
            "general_errors": general or [],
            "labels": domain.LABELS,
            "bands": [b.value for b in Band],
            "urgencies": [u.value for u in Urgency],
            "needs": [n.value for n in CareNeed],
            "fundings": [f.value for f in Funding],
        }

    @router.get("/packages/new")
    async def new_package(request: Request, session: Session = Depends(need(Permission.act))) -> Response:
        return page(request, "package_new.html", session, zones=await zones(console), **package_form_context())

    @router.post("/packages/new")
    async def create_package(request: Request, session: Session = Depends(need(Permission.act))) -> Response:
        form = await form_of(request, session)
        request_body, errors = domain.package_request(form)
        general: list[str] = []
        if request_body is not None:
            try:
                created = await services.brokerage.post(
                    "/packages",
                    request_body,
                    headers={"Idempotency-Key": str(form.get("idempotency_key") or uuid.uuid4())},
                )
            except ApiError as refused:
                if refused.status != 422:
                    general = [refused.message]
                else:
                    errors, general = domain.errors_from_api(refused.problem)
            else:
                return RedirectResponse(f"/packages/{created['package_id']}?created=1", status_code=303)
        return page(
            request,
            "package_new.html",
            session,
            400,
            zones=await zones(console),
            idempotency_key=form.get("idempotency_key"),
            **package_form_context(form, errors, general),
        )

    @router.get("/packages/{package_id}")
    async def package_page(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.board))
    ) -> Response:
        try:
            package = await services.brokerage.get(f"/packages/{package_id}")
        except ApiError as missing:
            if missing.status == 404:
                return page(
                    request,
                    "error.html",
                    session,
                    404,
                    title="Page not found",
                    message=f"There is no package {package_id}",
                )
            raise
        try:
            explanation = await services.brokerage.get(f"/packages/{package_id}/explanation")
        except ApiError as not_allowed:  # the decision record has bids' prices: not every role's
            if not_allowed.status != 403:
                raise
            explanation = None
        # A broker's read of the person is audited by the brokerage, with the broker's name.
        person = (
            await services.brokerage.get(f"/packages/{package_id}/person") if session.can(Permission.person) else None
        )
        names = {
            p["provider_id"]: p.get("name", p["provider_id"])
            for p in await services.brokerage.get("/reference/providers")
        }
        # Who pays (decision record 0089): pounds only for roles that see prices (the API's rule).
        funding = await services.brokerage.get(f"/packages/{package_id}/funding")
        refused = await handlers.take_flash(console.pool, session)
        action_errors: dict[str, dict[str, str]] = {}
        if refused and refused.startswith("{"):  # a refusal with its fields (see act below)
            flashed = json.loads(refused)
            refused, action_errors = flashed["message"], {flashed["action"]: flashed["errors"]}
        return page(
            request,
            "package.html",
            session,
            p=package,
            explanation=explanation,
            person=person,
            names=names,
            created=request.query_params.get("created"),
            refused=refused,
            action_errors=action_errors,
            done=request.query_params.get("done"),
            today=clock.uk_today(),
            reasons=REASONS,
            funding=funding,
        )

    def why(form: Mapping[str, Any]) -> dict[str, Any]:
        """A reason code (a select) and, if the broker wrote any, their words (kept in the brokerage)."""
        text = str(form.get("reason_text", "")).strip()
        return {"reason": form.get("reason", ""), "reason_text": text or None}

    # console action -> (API path, body from the form); who acts is the signed-in staff member,
    # sent by the console's client (services/console/clients.py), never in the body.
    ACTIONS = {
        "approve": ("exception/approve", lambda f: why(f)),
        "reject": ("exception/reject", lambda f: why(f)),
        "cancel": ("cancel", lambda f: why(f)),
        "reoffer": ("reoffer", lambda f: {}),
        "hand-back": (
            "hand-back",
            lambda f: {
                **why(f),
                "notice_ends_on": (
                    domain.date_from_parts(
                        f.get("notice_ends_on-day", ""),
                        f.get("notice_ends_on-month", ""),
                        f.get("notice_ends_on-year", ""),
                    )
                    or ""
                ).__str__(),
            },
        ),
        "start": (
            "start",
            lambda f: {
                "started_on": (
                    domain.date_from_parts(
                        f.get("started_on-day", ""), f.get("started_on-month", ""), f.get("started_on-year", "")
                    )
                    or ""
                ).__str__(),
            },
        ),
        "end": ("end", lambda f: {**why(f), "effective_date": _date_field(f, "effective_date")}),
        "pause": ("pause", lambda f: {"reason": f.get("reason", ""), "paused_on": _date_field(f, "paused_on")}),
        "resume": ("resume", lambda f: {"resumed_on": _date_field(f, "resumed_on")}),
        "change": ("changes", _change_body),
        "review": ("reviews", review_body),  # decision record 0088: services/console/api/reviews.py
    }

    @router.post("/packages/{package_id}/{action}")
    async def act(
        request: Request, package_id: uuid.UUID, action: str, session: Session = Depends(need(Permission.act))
    ) -> Response:
        if action not in ACTIONS:
            return page(request, "error.html", session, 404, title="Page not found", message=f"No action {action}")
        form = await form_of(request, session)
        path, body = ACTIONS[action]
        try:
            await services.brokerage.post(f"/packages/{package_id}/{path}", body(form))
        except ApiError as refused:
            # The reason travels in the session, never in the URL (where anyone could write one).
            message = domain.refusal(refused.problem)
            if action in FIELD_ERRORS:  # with each field's complaint, shown next to it
                errors = domain.field_errors(refused.problem)
                errors = {FORM_FIELDS.get(action, {}).get(k, k): v for k, v in errors.items()}
                message = json.dumps({"message": message, "action": action, "errors": errors})
            await handlers.flash(console.pool, session, message)
            return RedirectResponse(f"/packages/{package_id}#actions", status_code=303)
        return RedirectResponse(f"/packages/{package_id}?done={action}", status_code=303)

    return router
