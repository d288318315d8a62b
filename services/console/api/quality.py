"""The contracts and quality team's pages (decision records 0103-0105), on the providers and reporting
services' APIs: the provider quality and risk register (every provider, its score and RAG), one
provider's entry with its local risk review form, the CQC ratings import (the CQC's care directory
CSV, all or nothing, with its report), and the commissioners' reports (coverage gaps, providers by
risk and quality, the decline mix, market share and concentration)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile

from schemas.vocabulary import RiskReason
from services.console import domain, handlers
from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError, segment
from services.console.domain import Permission
from services.console.handlers import Session

if TYPE_CHECKING:
    from services.console.app import Console

RISKS = [("low", "Green (low)"), ("medium", "Amber (medium)"), ("high", "Red (high)")]
REASONS = [r.value for r in RiskReason]


def router(console: Console, sessions: Sessions) -> APIRouter:
    router = APIRouter()
    need, form_of = sessions.need, sessions.form_of
    services = console.services

    @router.get("/quality")
    async def register(request: Request, session: Session = Depends(need(Permission.quality))) -> Response:
        """Every provider's register entry: CQC rating and date, local risk, counts, quality score."""
        entries = await services.providers.get("/quality/register")
        order = {"high": 0, "medium": 1, "low": 2}
        entries.sort(key=lambda e: (order.get(e["local_risk"], 3), float(e["quality_score"])))
        return page(request, "quality.html", session, entries=entries)

    @router.get("/quality/providers/{provider_id}")
    async def provider(
        request: Request, provider_id: str, session: Session = Depends(need(Permission.quality))
    ) -> Response:
        """One provider's entry: the score explained, its history, complaints and plans; the review form."""
        try:
            entry = await services.providers.get(f"/providers/{segment(provider_id)}/quality")
        except ApiError as exc:
            if exc.status != 404:
                raise
            return page(request, "error.html", session, status=404, title="Not found", message=exc.message)
        flash = await handlers.take_flash(console.pool, session)
        return page(
            request,
            "quality_provider.html",
            session,
            entry=entry,
            risks=RISKS,
            reasons=REASONS,
            flash=json.loads(flash) if flash else None,
            done=request.query_params.get("done"),
        )

    @router.post("/quality/providers/{provider_id}/risk-review")
    async def review(
        request: Request, provider_id: str, session: Session = Depends(need(Permission.quality))
    ) -> Response:
        """The local risk review form: the RAG, a reason code and the reviewer's note."""
        form = await form_of(request, session)
        body = {k: str(form.get(k, "")).strip() for k in ("local_risk", "reason", "note")}
        try:
            await services.providers.post(f"/providers/{segment(provider_id)}/quality/risk-reviews", body)
        except ApiError as refused:
            if refused.status >= 500:
                raise
            errors = {str(f.get("field", "")): str(f.get("message", "")) for f in refused.problem.get("fields") or []}
            message = domain.refusal(refused.problem)
            await handlers.flash(console.pool, session, json.dumps({"message": message, "errors": errors}))
            return RedirectResponse(f"/quality/providers/{provider_id}#review", status_code=303)
        return RedirectResponse(f"/quality/providers/{provider_id}?done=review#review", status_code=303)

    @router.get("/quality/import")
    async def import_form(request: Request, session: Session = Depends(need(Permission.quality))) -> Response:
        return page(request, "quality_import.html", session, report=None, problem="")

    @router.post("/quality/import")
    async def import_file(request: Request, session: Session = Depends(need(Permission.quality))) -> Response:
        """The CQC care directory CSV, posted to the providers service; its report shown."""
        form = await form_of(request, session)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return page(
                request, "quality_import.html", session, status=422, report=None, problem="Choose the CQC CSV file"
            )
        data = await upload.read()
        params: dict[str, Any] = {"file_name": upload.filename[:200], "dry_run": str(form.get("dry_run") == "yes")}
        try:
            report = await services.providers.call(
                "POST", "/quality/cqc-imports", content=data, params=params, headers={"Content-Type": "text/csv"}
            )
        except ApiError as refused:
            if refused.status >= 500:
                raise
            return page(
                request,
                "quality_import.html",
                session,
                status=422,
                report=None,
                problem=domain.refusal(refused.problem),
            )
        return page(request, "quality_import.html", session, report=report, problem="")

    @router.get("/quality/reports")
    async def reports(request: Request, session: Session = Depends(need(Permission.reports))) -> Response:
        """The commissioners' reports over a period (default: the last 12 weeks)."""
        params = {k: v for k in ("from", "to") if (v := request.query_params.get(k, "").strip())}
        problem = ""
        try:
            gaps = await services.reporting.get("/reports/coverage-gaps", params=params)
            quality = await services.reporting.get("/reports/provider-quality", params=params)
            mix = await services.reporting.get("/reports/decline-mix", params=params)
            share = await services.reporting.get("/reports/market-share", params=params | {"interval": "month"})
        except ApiError as exc:
            if exc.status != 422:
                raise
            gaps, quality, mix, share, problem = None, None, None, None, exc.message
        return page(
            request,
            "quality_reports.html",
            session,
            gaps=gaps,
            quality=quality,
            mix=mix,
            share=share,
            problem=problem,
            chosen=params,
        )

    return router
