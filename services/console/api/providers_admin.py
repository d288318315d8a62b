"""Administration of the framework's providers (issue 19): the council's administrators see every
provider, suspend, reinstate or record that one left the framework (each decision checked on a
confirmation page first), issue and revoke a provider's API credentials (the token shown once),
and decide providers' requests to change their zones or bands. Every page is one more client of
the providers API: the console keeps none of this."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from services.console import domain
from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.clients import ApiError, segment
from services.console.domain import Permission
from services.console.handlers import Session

if TYPE_CHECKING:
    from services.console.app import Console


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/admin/providers``, ``/admin/providers/{id}`` (status, credentials) and ``/admin/change-requests``."""
    router = APIRouter(include_in_schema=False)
    need, form_of = sessions.need, sessions.form_of
    providers = console.services.providers

    async def provider_page(
        request: Request, session: Session, provider_id: str, status: int = 200, **context: Any
    ) -> Response:
        try:
            provider = await providers.get(f"/providers/{segment(provider_id)}")
        except ApiError as refused:
            if refused.status == 404:
                return page(request, "error.html", session, 404, title="Page not found", message="No such provider")
            raise
        return page(
            request,
            "admin_provider.html",
            session,
            status,
            provider=provider,
            history=await providers.get(f"/providers/{segment(provider_id)}/status-history"),
            credentials=await providers.get(f"/providers/{segment(provider_id)}/credentials"),
            statuses=domain.PROVIDER_STATUS_WORDS,
            **context,
        )

    @router.get("/admin/providers")
    async def list_providers(request: Request, session: Session = Depends(need(Permission.providers))) -> Response:
        rows = await providers.get("/providers")
        pending = await providers.get("/change-requests", params={"status": "pending"})
        return page(request, "admin_providers.html", session, providers=rows, pending=len(pending))

    @router.get("/admin/providers/{provider_id}")
    async def show_provider(
        request: Request, provider_id: str, session: Session = Depends(need(Permission.providers))
    ) -> Response:
        # ?done= names what was just done: only its fixed words are shown (the address is anyone's to write).
        done = domain.PROVIDER_DONE_WORDS.get(request.query_params.get("done") or "")
        return await provider_page(request, session, provider_id, done=done)

    @router.post("/admin/providers/{provider_id}/status")
    async def change_status(
        request: Request, provider_id: str, session: Session = Depends(need(Permission.providers))
    ) -> Response:
        """Two steps: the answers are checked and shown on a confirmation page; the decision is sent
        only with ``confirm=yes`` from that page."""
        form = await form_of(request, session)
        values = {"status": str(form.get("status") or ""), "reason": str(form.get("reason") or "").strip()}
        errors = domain.provider_status_problems(values)
        if errors:
            return await provider_page(request, session, provider_id, 422, errors=errors, values=values)
        if form.get("confirm") != "yes":
            provider = await providers.get(f"/providers/{segment(provider_id)}")
            return page(
                request,
                "admin_provider_confirm.html",
                session,
                provider=provider,
                values=values,
                words=domain.PROVIDER_STATUS_WORDS,
            )
        try:
            await providers.post(f"/providers/{segment(provider_id)}/status", values)
        except ApiError as refused:
            errors = domain.provider_status_refusal(refused.status, refused.problem)
            return await provider_page(request, session, provider_id, refused.status, errors=errors, values=values)
        return RedirectResponse(f"/admin/providers/{segment(provider_id)}?done=status", status_code=303)

    @router.post("/admin/providers/{provider_id}/credentials")
    async def issue_credential(
        request: Request, provider_id: str, session: Session = Depends(need(Permission.providers))
    ) -> Response:
        form = await form_of(request, session)
        label = str(form.get("label") or "").strip()[:100]
        issued = await providers.post(
            f"/providers/{segment(provider_id)}/credentials", {"label": label, "replace": form.get("replace") == "yes"}
        )
        # The token is shown on this page once (never in an address, never stored by the console).
        return await provider_page(request, session, provider_id, issued=issued)

    @router.post("/admin/providers/{provider_id}/credentials/{credential_id}/revoke")
    async def revoke_credential(
        request: Request, provider_id: str, credential_id: str, session: Session = Depends(need(Permission.providers))
    ) -> Response:
        await form_of(request, session)
        await providers.post(f"/providers/{segment(provider_id)}/credentials/{segment(credential_id)}/revoke", {})
        return RedirectResponse(f"/admin/providers/{segment(provider_id)}?done=revoked", status_code=303)

    @router.get("/admin/change-requests")
    async def change_requests(request: Request, session: Session = Depends(need(Permission.providers))) -> Response:
        done = request.query_params.get("done")
        return page(
            request,
            "admin_change_requests.html",
            session,
            requests=await providers.get("/change-requests"),
            done=done if done in ("approve", "reject") else None,
        )

    @router.post("/admin/change-requests/{request_id}/{decision}")
    async def decide(
        request: Request, request_id: int, decision: str, session: Session = Depends(need(Permission.providers))
    ) -> Response:
        form = await form_of(request, session)
        if decision not in ("approve", "reject"):
            return page(request, "error.html", session, 404, title="Page not found", message="No such decision")
        try:
            await providers.post(
                f"/change-requests/{request_id}/{decision}", {"reason": str(form.get("reason") or "").strip()[:500]}
            )
        except ApiError as refused:
            return page(
                request,
                "admin_change_requests.html",
                session,
                refused.status,
                requests=await providers.get("/change-requests"),
                done=None,
                refused=domain.change_request_refusal(refused.status, refused.problem),
            )
        return RedirectResponse(f"/admin/change-requests?done={decision}", status_code=303)

    return router
