"""The brokerage team's pages: the board (every package, most urgent first, filterable), the new
package form, a package's page (its explanation; the person's details for those allowed, each read
audited by the brokerage) and the actions on it (approve or reject an above-rate bid, cancel,
re-offer, record a hand-back or a start, pause, resume, end or change a running package), all through
the brokerage's API."""

from __future__ import annotations

import datetime as dt
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
from services.console import domain
from services.console.api.errors import Forbidden
from services.console.api.pages import TEMPLATES, now, page, zones
from services.console.api.reviews import review_body
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission, number_or_text
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
VISIT_FIELDS = ("calls_per_day", "minutes_per_call", "carers_per_call", "days_per_week")


def _change_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """A change to a running package (decision record 0082) from the form: numbers where they are
    numbers (else passed as typed, for the API to name the field), the discussion as a checkbox."""
    text = str(form.get("reason_text", "")).strip()
    return {
        "hours_per_week": str(form.get("hours_per_week", "")).strip(),
        "visits": {name: number_or_text(str(form.get(name, "")).strip()) for name in VISIT_FIELDS},
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
            "status": {*domain.STATUS_ORDER, "open", "all", domain.SECOND_APPROVAL},
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
        return domain.page_number(request.query_params.get("page", "1"))

    async def board_rows(chosen: dict[str, str], page_number: int) -> tuple[list[dict], int, dict[str, int], str]:
        """A page of the work queue, most urgent first: (rows, total, counts per status - and
        :data:`domain.SECOND_APPROVAL`'s, the above-rate bids awaiting a second approval - error)."""
        status = chosen.get("status", "open")
        params: dict[str, Any] = {k: v for k, v in chosen.items() if k != "status"}
        if status == "open":
            params["status"] = ",".join(domain.OPEN)
        elif status == domain.SECOND_APPROVAL:
            params |= {"status": "awaiting_approval", "awaiting_second_approval": "true"}
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
        counts = {**answer["counts"], domain.SECOND_APPROVAL: answer.get("awaiting_second_approval", 0)}
        return packages, answer["total"], counts, ""

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
            second_approvals=counts.get(domain.SECOND_APPROVAL, 0),
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

    async def discharge_reference() -> dict:
        """The Discharge Hub's codes and pathways (the brokerage's GET /reference/hospitals, decision
        records 0097 and 0120): read once, then kept, like the zones."""
        if console.discharge is None:
            console.discharge = await services.brokerage.get("/reference/hospitals")
        return console.discharge

    def package_form_context(
        values: dict | None = None,
        errors: dict | None = None,
        general: list | None = None,
        discharge: Mapping[str, Any] | None = None,
    ) -> dict:
        reference = discharge or {}
        return {
            "hospitals": [(h["code"], h["name"]) for h in reference.get("hospitals", [])],
            "pathways": [
                (str(p["pathway"]), f"{p['pathway']}: {p['means']}" + ("" if p["brokered"] else " (not home care)"))
                for p in sorted(reference.get("pathways", []), key=lambda p: (not p["brokered"], p["pathway"]))
            ],
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
        return page(
            request,
            "package_new.html",
            session,
            zones=await zones(console),
            **package_form_context(discharge=await discharge_reference()),
        )

    def package_form(request: Request, session: Session, status: int, form: dict, **context: Any) -> Response:
        return page(
            request,
            "package_new.html",
            session,
            status,
            idempotency_key=domain.form_idempotency_key(form.get("idempotency_key")),
            **context,
        )

    @router.post("/packages/new")
    async def check_package(request: Request, session: Session = Depends(need(Permission.act))) -> Response:
        """The request form's answers: every problem at once on the form (400), or, when there is
        none, the check-your-answers page (GOV.UK's pattern; decision record 0132) - each answer with
        a Change button back to its question and "Send request". Nothing is sent to the brokerage
        here, and the answers are kept nowhere: they travel in the check page's hidden fields. A
        Change (``change``: the question) shows the form again with every answer as given."""
        form = await form_of(request, session)
        reference = await discharge_reference()
        known = await zones(console)
        if form.get("change"):
            return package_form(
                request, session, 200, form, zones=known, **package_form_context(form, discharge=reference)
            )
        request_body, errors = domain.package_request(form, known, discharge=reference)
        if request_body is None:
            return package_form(
                request, session, 400, form, zones=known, **package_form_context(form, errors, None, reference)
            )
        return page(
            request,
            "package_check.html",
            session,
            sections=domain.check_answers(form, known, reference),
            carried=domain.carried_answers(form),
            target=domain.answer_target,
        )

    @router.get("/packages/new/send")
    async def send_without_answers(session: Session = Depends(need(Permission.act))) -> Response:
        """The address of a sent request opened again (a reload, a bookmark): the answers are not
        kept anywhere (decision record 0132), so the form, empty."""
        return RedirectResponse("/packages/new", status_code=303)

    @router.post("/packages/new/send")
    async def create_package(request: Request, session: Session = Depends(need(Permission.act))) -> Response:
        """The checked answers sent to the brokerage (``POST /packages``, with the form's
        Idempotency-Key: a second press sends nothing twice): the new package's page (303), or the
        form with the answers and every problem the brokerage still found (400)."""
        form = await form_of(request, session)
        reference = await discharge_reference()
        known = await zones(console)
        request_body, errors = domain.package_request(form, known, discharge=reference)
        general: list[str] = []
        # The form's own key, made when it was first shown: a key that is no UUID was not made by
        # the console (an attack's "€uro" was a 500, a newline a 503): a fresh one instead.
        key = domain.form_idempotency_key(form.get("idempotency_key"))
        form = {**form, "idempotency_key": key}
        if request_body is not None:
            try:
                created = await services.brokerage.post("/packages", request_body, headers={"Idempotency-Key": key})
            except ApiError as refused:
                if refused.status == 422 and refused.problem.get("code") == "idempotency-key-reused":
                    # Sent before with other answers (the browser's Back, then Send): a new key to try again.
                    general = ["This form was sent before with other answers. Check the answers and send them again."]
                    form["idempotency_key"] = str(uuid.uuid4())
                elif refused.status == 422:
                    errors, general = domain.errors_from_api(refused.problem)
                else:
                    raise
            else:
                return RedirectResponse(f"/packages/{created['package_id']}?created=1", status_code=303)
        return package_form(
            request, session, 400, form, zones=known, **package_form_context(form, errors, general, reference)
        )

    async def package_of(package_id: uuid.UUID) -> dict | None:
        """The brokerage's view of the package, or None when there is none."""
        try:
            return await services.brokerage.get(f"/packages/{package_id}")
        except ApiError as missing:
            if missing.status == 404:
                return None
            raise

    async def explanation_of(package_id: uuid.UUID) -> dict | None:
        try:
            return await services.brokerage.get(f"/packages/{package_id}/explanation")
        except ApiError as not_allowed:  # the decision record has bids' prices: not every role's
            if not_allowed.status != 403:
                raise
            return None

    async def provider_names() -> dict[str, str]:
        try:
            registry = await services.brokerage.get("/reference/providers")
        except ApiError as not_allowed:  # a review officer reads packages, not the registry: ids shown
            if not_allowed.status != 403:
                raise
            return {}
        return {p["provider_id"]: p.get("name", p["provider_id"]) for p in registry}

    def no_package(request: Request, session: Session, package_id: uuid.UUID) -> Response:
        return page(
            request, "error.html", session, 404, title="Page not found", message=f"There is no package {package_id}"
        )

    async def package_view(
        request: Request,
        session: Session,
        package: dict,
        status: int = 200,
        *,
        action: str | None = None,
        problems: Mapping[str, str] | None = None,
        answers: Mapping[str, Any] | None = None,
    ) -> Response:
        """The package page; after a refused ``action``, with its ``problems`` in an error summary
        at the top (every one, in the page's order, each linked to its field) and the ``answers``
        as typed, so nothing is lost."""
        package_id = package["package_id"]
        explanation = await explanation_of(package_id)
        # A broker's read of the person is audited by the brokerage, with the broker's name.
        person = (
            await services.brokerage.get(f"/packages/{package_id}/person") if session.can(Permission.person) else None
        )
        names = await provider_names()
        problems = dict(problems or {})
        hours = (package.get("package") or {}).get("hours_per_week") or 0
        # Who pays (decision record 0089): pounds only for roles that see prices (the API's rule).
        try:
            funding = await services.brokerage.get(f"/packages/{package_id}/funding")
        except ApiError as not_allowed:  # not a review officer's to read (services/runtime/permissions.py)
            if not_allowed.status != 403:
                raise
            funding = None
        # Which provider's named user answered each offer (decision 0126): the brokerage team's and the
        # administrators' (the permission table); the name stays in the providers service, never on events.
        try:
            answerers = {
                (a["provider_id"], a["offer_round"]): a["answered_by"]["name"]
                for a in await services.providers.get(f"/packages/{package_id}/answers")
                if a.get("answered_by")
            }
        except ApiError as not_allowed:
            if not_allowed.status != 403:
                raise
            answerers = {}
        return page(
            request,
            "package.html",
            session,
            status,
            p=package,
            answered_by={f"{pid}:{round_}": name for (pid, round_), name in answerers.items()},
            explanation=explanation,
            above=domain.above_rate_of((explanation or {}).get("record"), hours),
            person=person,
            names=names,
            created=request.query_params.get("created") == "1",
            done=domain.DONE.get(request.query_params.get("done") or ""),
            failed=action,
            action_errors={action: {k: v for k, v in problems.items() if k != "status"}} if action else {},
            state_errors=[problems["status"]] if "status" in problems else [],
            action_values={action: dict(answers or {})} if action else {},
            links=domain.action_links(action) if action else {},
            errors=problems,  # the title says "Error:" while there are any
            today=clock.uk_today(),
            reasons=REASONS,
            funding=funding,
        )

    @router.get("/packages/{package_id}")
    async def package_page(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.board, Permission.reviews))
    ) -> Response:
        package = await package_of(package_id)
        if package is None:
            return no_package(request, session, package_id)
        return await package_view(request, session, package)

    def why(form: Mapping[str, Any]) -> dict[str, Any]:
        """A reason code (a select) and, if the broker wrote any, their words (kept in the brokerage)."""
        text = str(form.get("reason_text", "")).strip()
        return {"reason": form.get("reason", ""), "reason_text": text or None}

    # console action -> (API path, body from the form); who acts is the signed-in staff member,
    # sent by the console's client (services/console/clients.py), never in the body. Approving or
    # refusing an above-rate bid has its own pages (decision_page below).
    ACTIONS = {
        "cancel": ("cancel", lambda f: why(f)),
        "reoffer": ("reoffer", lambda f: {}),
        "hand-back": ("hand-back", lambda f: {**why(f), "notice_ends_on": _date_field(f, "notice_ends_on")}),
        "start": ("start", lambda f: {"started_on": _date_field(f, "started_on")}),
        "end": ("end", lambda f: {**why(f), "effective_date": _date_field(f, "effective_date")}),
        "pause": ("pause", lambda f: {"reason": f.get("reason", ""), "paused_on": _date_field(f, "paused_on")}),
        "resume": ("resume", lambda f: {"resumed_on": _date_field(f, "resumed_on")}),
        "change": ("changes", _change_body),
        "review": ("reviews", review_body),  # decision record 0088: services/console/api/reviews.py
    }

    # ---- above-rate bids: the facts, the signed-in role's limit, a decision, a confirmation ----

    async def decision_facts(package_id: uuid.UUID, session: Session) -> dict[str, Any] | None:
        """What the decision pages show, or None when no above-rate bid awaits a decision."""
        package = await package_of(package_id)
        if package is None or package["status"] != "awaiting_approval":
            return None
        explanation = await explanation_of(package_id)
        above = domain.above_rate_of((explanation or {}).get("record"), package["package"]["hours_per_week"])
        if above is None:
            return None
        scheme = await services.brokerage.get("/reference/delegation")
        authority = domain.approval_authority(
            role=session.role,
            username=session.username,
            requested_by=package.get("requested_by"),
            bid=above,
            limits=scheme["limits_percent"],
            second_approver=scheme.get("second_approver"),
        )
        approvers = domain.approvers_words(authority.approvers)
        return {
            "p": package,
            "above": above,
            "authority": authority,
            "scheme": scheme,
            "approvers": approvers,
            "still_needed": domain.still_needed(authority, approvers),
            "limit_words": domain.limit_words,
            "bidder": (await provider_names()).get(above.provider_id, above.provider_id),
            "decision_reasons": REASONS["decision"],
        }

    def decision_answers(form: Mapping[str, Any], authority: domain.Authority) -> tuple[dict[str, str], dict]:
        answers = {
            "decision": str(form.get("decision") or ""),
            "reason": str(form.get("reason") or ""),
            "reason_text": str(form.get("reason_text") or "").strip(),
        }
        problems = domain.action_problems("decision", answers, package={}, today=clock.uk_today())
        if answers["decision"] and answers["decision"] not in ("approve", "reject"):
            problems["decision"] = domain.REQUIRED_ANSWERS[("decision", "decision")]
        if answers["reason"] and answers["reason"] not in REASONS["decision"]:
            problems["reason"] = domain.REQUIRED_ANSWERS[("decision", "reason")]
        if answers["decision"] == "approve" and not authority.may_approve:
            problems["decision"] = (
                "You requested this package: someone else in the team must approve it"
                if authority.own_request
                else "You have already approved this bid: the second approval must be someone else's"
                if authority.already_approved
                else "This bid is beyond your approval limit: refuse it, or ask someone who may approve it"
            )
        order = [f for f, _ in domain.ACTION_QUESTIONS["decision"]]
        return {f: problems[f] for f in order if f in problems}, answers

    def decision_page(request: Request, session: Session, facts: dict, status: int = 200, **context: Any) -> Response:
        context.setdefault("answers", {})
        context.setdefault("errors", {})
        return page(
            request,
            "decision.html",
            session,
            status,
            links=domain.action_links("decision"),
            **facts,
            **context,
        )

    def nothing_to_decide(request: Request, session: Session, package_id: uuid.UUID) -> Response:
        return page(
            request,
            "error.html",
            session,
            404,
            title="No above-rate bid awaits a decision",
            message="This package has no above-rate bid waiting for a decision. Its page shows where it is now.",
            back=f"/packages/{package_id}",
        )

    @router.get("/packages/{package_id}/decision")
    async def decision(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.act))
    ) -> Response:
        """Decide on an above-rate bid: the bidder, the rate against the band rate (pounds per
        hour), the weekly cost and the difference, the signed-in role's limit in the scheme of
        delegation and who else must approve when it is beyond it; then a confirmation step."""
        facts = await decision_facts(package_id, session)
        if facts is None:
            return nothing_to_decide(request, session, package_id)
        return decision_page(request, session, facts)

    @router.post("/packages/{package_id}/decision")
    async def check_decision(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.act))
    ) -> Response:
        """The decision's answers: every problem at once, else the page to check and confirm them."""
        form = await form_of(request, session)
        facts = await decision_facts(package_id, session)
        if facts is None:
            return nothing_to_decide(request, session, package_id)
        problems, answers = decision_answers(form, facts["authority"])
        if form.get("change"):  # back from the check page to change an answer: as it was
            return decision_page(request, session, facts, answers=answers)
        if problems:
            return decision_page(request, session, facts, 400, errors=problems, answers=answers)
        return page(request, "decision_confirm.html", session, answers=answers, **facts)

    @router.post("/packages/{package_id}/decision/confirm")
    async def confirm_decision(
        request: Request, package_id: uuid.UUID, session: Session = Depends(need(Permission.act))
    ) -> Response:
        """The confirmed decision, sent to the brokerage (which applies the same limit and the
        rule that nobody approves their own request: a refusal comes back as the page's error)."""
        form = await form_of(request, session)
        facts = await decision_facts(package_id, session)
        if facts is None:
            return nothing_to_decide(request, session, package_id)
        problems, answers = decision_answers(form, facts["authority"])
        if not problems:
            verb = answers["decision"]
            body = {"reason": answers["reason"], "reason_text": answers["reason_text"] or None}
            try:
                done = await services.brokerage.post(f"/packages/{package_id}/exception/{verb}", body)
            except ApiError as refused:
                if refused.status not in (403, 409, 422):
                    raise
                problems = (
                    {
                        "decision": "The brokerage did not accept the approval: it is beyond your limit, "
                        "or you requested the package"
                    }
                    if refused.status == 403
                    else {"decision": "You have already approved this bid: the second approval must be someone else's"}
                    if refused.problem.get("code") == "already-approved"
                    else domain.action_refusal("decision", refused.status, refused.problem, "changed")
                )
            else:
                # Still awaiting approval after an approval: it was the first of two (decision record 0123).
                if verb == "approve" and (done or {}).get("status") == "awaiting_approval":
                    verb = "first-approval"
                return RedirectResponse(f"/packages/{package_id}?done={verb}", status_code=303)
        return decision_page(request, session, facts, 400, errors=problems, answers=answers)

    # Last: /packages/{id}/decision above is a page of its own, not an action.
    @router.post("/packages/{package_id}/{action}")
    async def act(
        request: Request,
        package_id: uuid.UUID,
        action: str,
        session: Session = Depends(need(Permission.act, Permission.reviews)),
    ) -> Response:
        """An action on the package. Every problem the console can see is shown at once without
        asking the brokerage; what the brokerage still refuses is shown the same way, in the
        console's words (domain.action_refusal). Either way the page comes back with the answers
        as typed and the error summary at the top (GOV.UK's pattern); nothing goes in the URL."""
        if action not in ACTIONS:
            return page(request, "error.html", session, 404, title="Page not found", message="There is no such page")
        # A review officer records reviews and nothing else (decision 0096).
        if not session.can(Permission.reviews if action == "review" else Permission.act):
            raise Forbidden()
        form = await form_of(request, session)
        package = await package_of(package_id)
        if package is None:
            return no_package(request, session, package_id)
        problems = domain.action_problems(action, form, package=package, today=clock.uk_today())
        if not problems:
            path, body = ACTIONS[action]
            try:
                await services.brokerage.post(f"/packages/{package_id}/{path}", body(form))
            except ApiError as refused:
                if refused.status not in (403, 409, 422):
                    raise
                package = await package_of(package_id) or package
                problems = domain.action_refusal(action, refused.status, refused.problem, package["status"])
            else:
                return RedirectResponse(f"/packages/{package_id}?done={action}", status_code=303)
        return await package_view(request, session, package, 400, action=action, problems=problems, answers=form)

    return router
