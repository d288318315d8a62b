"""Administration: the console's staff accounts (add one with a role; deactivate or reactivate one,
never one's own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from services.console import domain, handlers, repository
from services.console.api.errors import Forbidden
from services.console.api.pages import page
from services.console.api.sessions import Sessions
from services.console.domain import Permission
from services.console.handlers import Session

if TYPE_CHECKING:
    from services.console.app import Console


def router(console: Console, sessions: Sessions) -> APIRouter:
    """``/admin/staff`` and ``/admin/staff/{username}/active``."""
    router = APIRouter(include_in_schema=False)
    need, form_of = sessions.need, sessions.form_of

    async def staff_page(request: Request, session: Session, status: int = 200, **context: Any) -> Response:
        async with console.pool.acquire() as conn:
            staff = await repository.list_staff(conn)
        # ?added= names an account just made: shown only when it is one (the address is anyone's to write).
        added = request.query_params.get("added")
        context["added"] = added if added in {s["username"] for s in staff} else None
        return page(
            request,
            "staff.html",
            session,
            status,
            staff=staff,
            roles=[r.value for r in domain.LOCAL_ACCOUNT_ROLES],
            local_accounts=console.policy.local_accounts,
            provider_name=console.oidc.provider_name,
            **context,
        )

    @router.get("/admin/staff")
    async def staff(request: Request, session: Session = Depends(need(Permission.staff))) -> Response:
        return await staff_page(request, session)

    @router.post("/admin/staff")
    async def add_staff(request: Request, session: Session = Depends(need(Permission.staff))) -> Response:
        if not console.policy.local_accounts:
            raise Forbidden("This console's own accounts are off: staff are added at the identity provider")
        form = await form_of(request, session)
        try:
            await handlers.add_staff(
                console.pool,
                username=str(form.get("username", "")),
                display_name=str(form.get("display_name", "")),
                role=str(form.get("role", "")),
                password=str(form.get("password", "")),
                created_by=session.username,
            )
        except handlers.Refused as refused:  # every problem at once, in the form's order, the answers kept
            return await staff_page(
                request, session, 400, errors=refused.problems or {"username": refused.message}, values=form
            )
        return RedirectResponse(
            f"/admin/staff?added={quote(str(form.get('username', '')).strip().lower())}", status_code=303
        )

    @router.post("/admin/staff/{username}/active")
    async def set_active(
        request: Request, username: str, session: Session = Depends(need(Permission.staff))
    ) -> Response:
        form = await form_of(request, session)
        if username == session.username:
            raise Forbidden("You cannot deactivate your own account")
        await handlers.set_active(console.pool, username, form.get("active") == "true")
        return RedirectResponse("/admin/staff", status_code=303)

    return router
