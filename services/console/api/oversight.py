"""Read-only pages for those who answer for the service (issue 19's admin pages):

- ``/admin/disclosures``: the disclosure log, who was shown which person's details and when
  (the brokerage's ``GET /disclosures``: managers, the head of service and administrators), filtered
  by package, reader, who and UK dates, 50 rows a page, times in UK local time;
- ``/admin/rate-cards``: every rate card of the reference data, each band's hourly rate with the
  card's version and start, and the one in force (``GET /reference/rate-cards``);
- ``/admin/approval-limits``: the scheme of delegation (``GET /reference/delegation``) with the
  signed-in role's own limit and when a second approver is needed (decision records 0052, 0123).

Nothing here changes anything: the log is the audit schema's, the rest reference data in files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response

from services.console import domain
from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError
from services.console.domain import Permission
from services.console.handlers import Session

if TYPE_CHECKING:
    from services.console.app import Console


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    need = sessions.need
    brokerage = console.services.brokerage

    async def provider_names() -> dict[str, str]:
        return {p["provider_id"]: p.get("name", p["provider_id"]) for p in await brokerage.get("/reference/providers")}

    @router.get("/admin/disclosures")
    async def disclosures(request: Request, session: Session = Depends(need(Permission.disclosures))) -> Response:
        """The disclosure log, newest first. Filters in the query string (package, reader, who,
        from, to: UK dates YYYY-MM-DD; page): every problem at once (400) with the answers kept."""
        params, problems, values = domain.disclosure_filters(request.query_params)
        log: dict = {"disclosures": [], "total": 0}
        if not problems:
            try:
                log = await brokerage.get("/disclosures", params=params)
            except ApiError as refused:
                if refused.status != 422:
                    raise
                problems = {"from": "The from date must be the same as or before the to date"}
        number = int(values["page"])
        pages = max(1, -(-int(log["total"]) // domain.DISCLOSURES_PER_PAGE))
        filters = {k: v for k, v in values.items() if v and k != "page"}
        return page(
            request,
            "disclosures.html",
            session,
            400 if problems else 200,
            log=log,
            errors=problems,
            values=values,
            filters=filters,
            page_number=number,
            pages=pages,
            readers=domain.READERS,
            names=await provider_names(),
            disclosed_words=domain.disclosed_words,
        )

    @router.get("/admin/rate-cards")
    async def rate_cards(request: Request, session: Session = Depends(need(Permission.reference))) -> Response:
        """Every rate card (pounds per hour by band), newest first, the one in force marked."""
        served = await brokerage.get("/reference/rate-cards")
        bands, cards = domain.rate_card_rows(served["rate_cards"])
        return page(request, "rate_cards.html", session, bands=bands, cards=cards, in_force=served["in_force"])

    @router.get("/admin/approval-limits")
    async def approval_limits(request: Request, session: Session = Depends(need(Permission.reference))) -> Response:
        """The scheme of delegation: each role's limit (per cent above the band rate), the signed-in
        role's own first, and when an above-rate bid takes a second approver."""
        scheme = await brokerage.get("/reference/delegation")
        rows = domain.limit_rows(scheme, session.role)
        mine = next((r for r in rows if r["mine"]), None)
        return page(
            request,
            "approval_limits.html",
            session,
            scheme=scheme,
            rows=rows,
            mine=mine,
            second=scheme.get("second_approver") or {},
        )

    return router
