"""The finance team's pages (decision records 0109-0111), on the brokerage's API: ``/finance`` shows the
weekly commitment by provider and funder (``GET /service-agreements/commitments``) and the latest service
agreement records; ``/finance/export.csv`` hands on the finance system's import file
(``GET /service-agreements/export``). Package ids only: the finance team reads no person's details."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response

from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission
from services.console.handlers import Session
from services.runtime import clock

if TYPE_CHECKING:
    from services.console.app import Console


# The form's words for the API's field names, in the refusals shown at the form's dates.
_LABELS = {"recorded_from": "the first date", "recorded_to": "the last date"}


def _in_words(message: str) -> str:
    """An export refusal in the form's words: a date that is not one asks for a real date as the form
    shows it (the API's parser had said "Input should be a valid date or datetime, ..."), and the
    API's field names become the form's (found by a new user)."""
    if message.startswith("Input should be a valid date"):
        return "Enter a real date, as YYYY-MM-DD"
    for name, label in _LABELS.items():
        message = message.replace(name, label)
    return message


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter()
    need = sessions.need
    brokerage = console.services.brokerage

    async def finance_page(
        request: Request,
        session: Session,
        *,
        status: int = 200,
        export_problems: dict[str, str] | None = None,
        export_values: dict[str, str] | None = None,
    ) -> Response:
        """The finance page: the week's commitment (``week`` in the query, a Monday; this week by
        default; another day is shown as the API's problem, with this week's figures), the import file's
        form (with ``export_problems`` by field, and the dates typed, when an export was refused) and
        the newest records."""
        monday = clock.uk_week_of(clock.uk_today())
        week = request.query_params.get("week") or monday.isoformat()
        problem = ""
        try:
            report = await brokerage.get("/service-agreements/commitments", params={"week": week})
        except ApiError as exc:
            if exc.status != 422:
                raise
            problem = exc.message
            report = await brokerage.get("/service-agreements/commitments", params={"week": monday.isoformat()})
        newest = await brokerage.get("/service-agreements", params={"limit": 20, "newest_first": "true"})
        records: list[dict[str, Any]] = newest["records"]
        first = dt.date.fromisoformat(report["week_commencing"])
        typed = export_values or {}
        return page(
            request,
            "finance.html",
            session,
            status=status,
            report=report,
            records=records,
            problem=problem,
            export_problems=export_problems or {},
            previous_week=(first - dt.timedelta(days=7)).isoformat(),
            next_week=(first + dt.timedelta(days=7)).isoformat(),
            export_from=typed.get("recorded_from", (clock.uk_today() - dt.timedelta(days=6)).isoformat()),
            export_to=typed.get("recorded_to", clock.uk_today().isoformat()),
        )

    @router.get("/finance")
    async def finance_home(request: Request, session: Session = Depends(need(Permission.finance))) -> Response:
        """The finance page (:func:`finance_page`)."""
        return await finance_page(request, session)

    @router.get("/finance/export.csv")
    async def export(request: Request, session: Session = Depends(need(Permission.finance))) -> Response:
        """The import file for the records written from ``recorded_from`` to ``recorded_to`` (UK dates),
        as the brokerage wrote it. A bad date is the API's 422, shown on the finance page (status 422)
        at the field it names, with the dates as typed (found by an attack: a bare text page before)."""
        params = {k: v for k in ("recorded_from", "recorded_to") if (v := request.query_params.get(k))}
        try:
            text = await brokerage.get("/service-agreements/export", params=params, as_text=True)
        except ApiError as exc:
            if exc.status != 422:
                raise
            named = exc.problem.get("fields") or []
            by_field = {
                str(f.get("field")): _in_words(str(f.get("message"))) for f in named if f.get("field") in params
            }
            return await finance_page(
                request, session, status=422, export_problems=by_field or {"": exc.message}, export_values=params
            )
        name = f"service-agreements-{params.get('recorded_from', 'week')}-{params.get('recorded_to', 'today')}.csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router
