"""The console's pages (server-rendered, GOV.UK Design System): the brokerage team's board,
package form and package pages; operations' live stream, lag, dead letters and KPIs; staff
accounts; and the provider portal on the providers service's provider-scoped API.

Every page needs a session with the right permission (domain.PERMISSIONS); every form carries
the session's CSRF token, checked before anything else is read from it. The sign-in forms,
which come before any session, use a double-submit cookie instead.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.templating import Jinja2Templates

from schemas.vocabulary import Band, CareNeed, DeclineReason, Funding, Urgency
from services.console import charts, domain, handlers, operations, repository
from services.console.clients import ApiError, Services, acting_for
from services.console.domain import Permission

SESSION_COOKIE = "console_session"
LIST_FIELDS = {"needs", "call_times"}  # checkboxes: always a list, even with one ticked
SIGN_IN_CSRF_COOKIE = "console_sign_in_csrf"
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


class NotSignedIn(Exception):
    def __init__(self, portal: bool = False) -> None:
        self.portal = portal


class Forbidden(Exception):
    def __init__(self, message: str = "You do not have access to this page") -> None:
        self.message = message


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _when(value: Any) -> str:
    if not value:
        return "-"
    at = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return at.astimezone(dt.UTC).strftime("%d %b %Y %H:%M UTC")


def _parse_time(value: Any) -> dt.datetime | None:
    return None if not value else value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["words"] = lambda v: str(v or "-").replace("_", " ")
TEMPLATES.env.globals["uuid4"] = uuid.uuid4  # a fresh Idempotency-Key per form shown
TEMPLATES.env.filters["pair"] = lambda v: (v, str(v).replace("_", " ").capitalize())  # (value, label) for options


MENU = [
    (Permission.board, "/board", "Board"),
    (Permission.act, "/packages/new", "New package"),
    (Permission.operations, "/ops/stream", "Live events"),
    (Permission.operations, "/ops/lag", "Consumer lag"),
    (Permission.operations, "/ops/dead-letters", "Dead letters"),
    (Permission.operations, "/ops/kpis", "KPIs"),
    (Permission.staff, "/admin/staff", "Staff accounts"),
]
# The daily call slots a provider may cover (the providers service's vocabulary).
CALL_SLOTS = ["early_morning", "morning", "lunch", "tea", "bed", "night"]
PORTAL_MENU = [
    ("/portal/offers", "Offers"),
    ("/portal/packages", "My packages"),
    ("/portal/profile", "Capacity and call times"),
]


def navigation(session: handlers.Session | None, path: str) -> list[dict]:
    """The menu: only the pages the session may open."""
    if session is None:
        return []
    if session.kind == "provider":
        items = PORTAL_MENU
    else:
        items = [(href, label) for permission, href, label in MENU if session.can(permission)]
    return [{"href": href, "label": label, "current": path == href} for href, label in items]


def page(
    request: Request, template: str, session: handlers.Session | None, status: int = 200, **context
) -> HTMLResponse:
    """A full page: the template with the menu and the session's CSRF token for its forms."""
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "nav": navigation(session, request.url.path),
            "csrf_token": session.csrf_token if session else None,
            **context,
        },
        status_code=status,
    )


def build_router(console) -> APIRouter:
    """``console`` carries the pool, the session policy, the service clients and the Kafka bootstrap."""
    router = APIRouter(include_in_schema=False)
    services: Services = console.services

    # ---- sessions, permissions, CSRF ------------------------------------------------------

    async def session_of(request: Request) -> handlers.Session | None:
        if not hasattr(request.state, "session"):
            request.state.session = await handlers.current_session(
                console.pool, console.policy, request.cookies.get(SESSION_COOKIE), now=_now()
            )
        return request.state.session

    def need(permission: Permission):
        async def dependency(request: Request) -> handlers.Session:
            session = await session_of(request)
            if session is None or session.kind != "staff":
                raise NotSignedIn()
            if not session.can(permission):
                raise Forbidden()
            acting_for(session.username, session.role)  # the APIs' calls now carry who acts
            return session

        return dependency

    async def provider(request: Request) -> handlers.Session:
        session = await session_of(request)
        if session is None or session.kind != "provider":
            raise NotSignedIn(portal=True)
        return session

    async def form_of(request: Request, session: handlers.Session | None) -> dict[str, Any]:
        """The posted form, once its CSRF token is the session's (or the sign-in cookie's)."""
        form = await request.form()
        expected = session.csrf_token if session else request.cookies.get(SIGN_IN_CSRF_COOKIE)
        given = str(form.get("csrf_token", "")).encode()  # bytes: compare_digest refuses non-ASCII text
        if not expected or not secrets.compare_digest(given, expected.encode()):
            raise Forbidden(
                "This form has expired or did not come from this console. Go back, reload the page and try again"
            )
        return {k: (form.getlist(k) if len(form.getlist(k)) > 1 or k in LIST_FIELDS else form.get(k)) for k in form}

    def sign_in_page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        token = request.cookies.get(SIGN_IN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = page(request, template, None, status, sign_in_csrf=token, **context)
        response.set_cookie(
            SIGN_IN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=console.settings.cookie_secure
        )
        return response

    def signed_in(target: str, token: str) -> RedirectResponse:
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=console.settings.cookie_secure,
            max_age=int(console.policy.absolute.total_seconds()),
        )
        response.delete_cookie(SIGN_IN_CSRF_COOKIE)
        return response

    def safe_next(target: str | None, default: str) -> str:
        # Only a path on this console: never an open redirect.
        return (
            target
            if target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            else default
        )

    # ---- signing in and out -----------------------------------------------------------------

    @router.get("/")
    async def home(request: Request):
        session = await session_of(request)
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        if session.kind == "provider":
            return RedirectResponse("/portal/offers", status_code=303)
        return RedirectResponse(domain.HOME[domain.Role(session.role)], status_code=303)

    @router.get("/sign-in")
    async def sign_in_form(request: Request, next: str | None = None):
        return sign_in_page(request, "sign_in.html", next=safe_next(next, ""))

    @router.post("/sign-in")
    async def sign_in(request: Request):
        form = await form_of(request, None)
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        errors = {
            k: m
            for k, m in [
                ("username", "Enter your username" if not username.strip() else None),
                ("password", "Enter your password" if not password else None),
            ]
            if m
        }
        if not errors:
            try:
                token = await handlers.sign_in(
                    console.pool, console.policy, username=username, password=password, now=_now()
                )
            except handlers.Refused as refused:
                errors = {"username": refused.message}
            else:
                return signed_in(safe_next(str(form.get("next") or ""), "/"), token)
        return sign_in_page(request, "sign_in.html", 400, errors=errors, username=username, next=form.get("next") or "")

    @router.post("/sign-out")
    async def sign_out(request: Request):
        session = await session_of(request)
        portal = session is not None and session.kind == "provider"
        if session is not None:
            await form_of(request, session)
            await handlers.sign_out(console.pool, session)
        response = RedirectResponse("/portal/sign-in" if portal else "/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ---- the brokerage team -------------------------------------------------------------------

    async def zones() -> list[dict]:
        if not console.zones:
            console.zones = sorted(await services.brokerage.get("/reference/zones"), key=lambda z: z["name"])
        return console.zones

    def filters_of(request: Request) -> dict[str, str]:
        allowed = {
            "zone": None,
            "band": {b.value for b in Band},
            "urgency": {u.value for u in Urgency},
            "status": set(domain.STATUS_ORDER),
        }
        chosen = {}
        for name, values in allowed.items():
            value = request.query_params.get(name) or ""
            if value and (values is None or value in values):
                chosen[name] = value
        return chosen

    async def board_rows(chosen: dict[str, str]) -> list[dict]:
        packages = (await services.brokerage.get("/packages", params=chosen | {"limit": 1000}))["packages"]
        now = _now()
        for p in packages:
            for key in ("requested_at", "placed_at", "unplaced_at", "window_closes_at"):
                p[key] = _parse_time(p.get(key))
            p["waited"] = domain.waited(p["requested_at"], domain.wait_of(p, now))
            p["waiting"] = p["status"] in domain.WAITING
        return domain.board_order(packages)

    @router.get("/board")
    async def board(request: Request, session=Depends(need(Permission.board))):
        chosen = filters_of(request)
        rows = await board_rows(chosen)
        if request.query_params.get("fragment") == "rows":
            return TEMPLATES.TemplateResponse(request, "_board_rows.html", {"rows": rows})
        return page(
            request,
            "board.html",
            session,
            rows=rows,
            chosen=chosen,
            zones=await zones(),
            bands=[b.value for b in Band],
            urgencies=[u.value for u in Urgency],
            statuses=domain.STATUS_ORDER,
            query=urlencode(chosen),
            now=_now(),
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
    async def new_package(request: Request, session=Depends(need(Permission.act))):
        return page(request, "package_new.html", session, zones=await zones(), **package_form_context())

    @router.post("/packages/new")
    async def create_package(request: Request, session=Depends(need(Permission.act))):
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
            zones=await zones(),
            idempotency_key=form.get("idempotency_key"),
            **package_form_context(form, errors, general),
        )

    @router.get("/packages/{package_id}")
    async def package_page(request: Request, package_id: uuid.UUID, session=Depends(need(Permission.board))):
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
        return page(
            request,
            "package.html",
            session,
            p=package,
            explanation=explanation,
            person=person,
            names=names,
            created=request.query_params.get("created"),
            refused=request.query_params.get("refused"),
            done=request.query_params.get("done"),
            today=dt.date.today(),
        )

    # console action -> (API path, body from the form); who acts is the signed-in staff member,
    # sent by the console's client (services/console/clients.py), never in the body.
    ACTIONS = {
        "approve": ("exception/approve", lambda f: {"reason": f.get("reason", "")}),
        "reject": ("exception/reject", lambda f: {"reason": f.get("reason", "")}),
        "cancel": ("cancel", lambda f: {"reason": f.get("reason", "")}),
        "reoffer": ("reoffer", lambda f: {}),
        "hand-back": (
            "hand-back",
            lambda f: {
                "reason": f.get("reason", ""),
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
    }

    @router.post("/packages/{package_id}/{action}")
    async def act(request: Request, package_id: uuid.UUID, action: str, session=Depends(need(Permission.act))):
        if action not in ACTIONS:
            return page(request, "error.html", session, 404, title="Page not found", message=f"No action {action}")
        form = await form_of(request, session)
        path, body = ACTIONS[action]
        try:
            await services.brokerage.post(f"/packages/{package_id}/{path}", body(form))
        except ApiError as refused:
            return RedirectResponse(
                f"/packages/{package_id}?refused={quote(domain.refusal(refused.problem))}#actions", status_code=303
            )
        return RedirectResponse(f"/packages/{package_id}?done={action}", status_code=303)

    # ---- operations -----------------------------------------------------------------------------

    @router.get("/ops/stream")
    async def stream_page(request: Request, session=Depends(need(Permission.operations))):
        chosen = {k: v for k in ("zone", "type") if (v := request.query_params.get(k))}
        return page(
            request,
            "stream.html",
            session,
            chosen=chosen,
            query=urlencode(chosen),
            zones=await zones(),
            types=operations.event_types(),
        )

    @router.get("/ops/stream/events", response_class=EventSourceResponse)
    async def stream_events(
        request: Request, zone: str | None = None, type: str | None = None, session=Depends(need(Permission.operations))
    ):
        stopping = {"client": False}

        def stop() -> bool:
            return stopping["client"] or console.stopping()

        async for line in operations.live_lines(
            console.settings.kafka_bootstrap_servers, stop=stop, zone=zone or None, event_type=type or None
        ):
            if await request.is_disconnected():
                stopping["client"] = True
                continue
            if line is None:
                yield ServerSentEvent(comment="waiting")
            else:
                yield ServerSentEvent(event="line", data=line.__dict__)
        return

    @router.get("/ops/lag")
    async def lag_page(request: Request, session=Depends(need(Permission.operations))):
        rows = await operations.lag(console.settings.kafka_bootstrap_servers)
        return page(request, "lag.html", session, rows=rows, total=sum(r["lag"] for r in rows), now=_now())

    @router.get("/ops/dead-letters")
    async def dead_letters_page(request: Request, session=Depends(need(Permission.operations))):
        letters = await operations.letters(console.settings.kafka_bootstrap_servers)
        return page(
            request, "dead_letters.html", session, letters=letters, replayed=request.query_params.get("replayed")
        )

    @router.post("/ops/dead-letters/{letter_id}/replay")
    async def replay_letter(request: Request, letter_id: str, session=Depends(need(Permission.operations))):
        await form_of(request, session)
        try:
            await operations.replay(console.settings.kafka_bootstrap_servers, letter_id)
        except LookupError as unknown:
            return page(request, "error.html", session, 404, title="Page not found", message=str(unknown))
        return RedirectResponse(f"/ops/dead-letters?replayed={quote(letter_id)}", status_code=303)

    @router.get("/ops/kpis")
    async def kpis_page(request: Request, session=Depends(need(Permission.operations))):
        try:
            days = min(366.0, max(0.01, float(request.query_params.get("days", "7"))))
        except ValueError:
            days = 7.0
        figures = await operations.key_figures(console.settings.kafka_bootstrap_servers, days=days, now=_now())
        return page(request, "kpis.html", session, k=figures, days=days, charts=kpi_charts(figures))

    # ---- staff accounts -------------------------------------------------------------------------

    async def staff_page(request, session, status=200, **context):
        async with console.pool.acquire() as conn:
            staff = await repository.list_staff(conn)
        return page(
            request, "staff.html", session, status, staff=staff, roles=[r.value for r in domain.Role], **context
        )

    @router.get("/admin/staff")
    async def staff(request: Request, session=Depends(need(Permission.staff))):
        return await staff_page(request, session, added=request.query_params.get("added"))

    @router.post("/admin/staff")
    async def add_staff(request: Request, session=Depends(need(Permission.staff))):
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
        except handlers.Refused as refused:
            return await staff_page(
                request, session, 400, errors={refused.field or "username": refused.message}, values=form
            )
        return RedirectResponse(
            f"/admin/staff?added={quote(str(form.get('username', '')).strip().lower())}", status_code=303
        )

    @router.post("/admin/staff/{username}/active")
    async def set_active(request: Request, username: str, session=Depends(need(Permission.staff))):
        form = await form_of(request, session)
        if username == session.username:
            raise Forbidden("You cannot deactivate your own account")
        await handlers.set_active(console.pool, username, form.get("active") == "true")
        return RedirectResponse("/admin/staff", status_code=303)

    # ---- the provider portal (the providers service's provider-scoped API) ------------------------

    async def verify_provider(provider_id: str, credential: str) -> bool:
        try:
            me = await services.providers.get("/me", bearer=credential)
        except ApiError as refused:
            if refused.status in (401, 403):
                return False
            raise
        return isinstance(me, dict) and me.get("provider_id") == provider_id

    @router.get("/portal/sign-in")
    async def portal_sign_in_form(request: Request):
        return sign_in_page(request, "portal_sign_in.html")

    @router.post("/portal/sign-in")
    async def portal_sign_in(request: Request):
        form = await form_of(request, None)
        provider_id, credential = str(form.get("provider_id", "")), str(form.get("credential", ""))
        errors = {
            k: m
            for k, m in [
                ("provider_id", "Enter your provider id" if not provider_id.strip() else None),
                ("credential", "Enter your API credential" if not credential else None),
            ]
            if m
        }
        if not errors:
            try:
                token = await handlers.provider_sign_in(
                    console.pool,
                    console.policy,
                    provider_id=provider_id,
                    credential=credential,
                    now=_now(),
                    verify=verify_provider,
                )
            except handlers.Refused as refused:
                errors = {"provider_id": refused.message}
            else:
                return signed_in("/portal/offers", token)
        return sign_in_page(request, "portal_sign_in.html", 400, errors=errors, provider_id=provider_id)

    async def as_provider(session: handlers.Session, method: str, path: str, body: dict | None = None):
        try:
            return await services.providers.call(
                method, path, bearer=session.provider_credential, **({"json": body} if body is not None else {})
            )
        except ApiError as refused:
            if refused.status == 401:  # the credential was revoked or rotated meanwhile
                await handlers.sign_out(console.pool, session)
                raise NotSignedIn(portal=True) from None
            raise

    @router.get("/portal/offers")
    async def portal_offers(request: Request, session=Depends(provider)):
        offers = await as_provider(session, "GET", "/me/offers?status=open")
        return page(
            request,
            "portal_offers.html",
            session,
            offers=offers,
            reasons=[r.value for r in DeclineReason],
            refused=request.query_params.get("refused"),
            done=request.query_params.get("done"),
        )

    @router.post("/portal/offers/{package_id}/{answer}")
    async def portal_answer(request: Request, package_id: uuid.UUID, answer: str, session=Depends(provider)):
        form = await form_of(request, session)
        if answer == "bid":
            start = domain.date_from_parts(
                form.get("earliest_start-day", ""),
                form.get("earliest_start-month", ""),
                form.get("earliest_start-year", ""),
            )
            body = {
                "rate": str(form.get("rate", "")).strip().lstrip("£"),
                "earliest_start": start.isoformat() if start else "",
            }
        elif answer == "decline":
            body = {"reason": form.get("reason", ""), "text": str(form.get("text", "")).strip()}
        else:
            return page(request, "error.html", session, 404, title="Page not found", message=f"No answer {answer}")
        try:
            await as_provider(session, "POST", f"/me/offers/{package_id}/{answer}", body)
        except ApiError as refused:
            return RedirectResponse(f"/portal/offers?refused={quote(domain.refusal(refused.problem))}", status_code=303)
        return RedirectResponse(f"/portal/offers?done={answer}", status_code=303)

    @router.get("/portal/packages")
    async def portal_packages(request: Request, session=Depends(provider)):
        return page(
            request, "portal_packages.html", session, packages=await as_provider(session, "GET", "/me/packages")
        )

    @router.get("/portal/packages/{package_id}/person")
    async def portal_person(request: Request, package_id: uuid.UUID, session=Depends(provider)):
        try:
            person = await as_provider(session, "GET", f"/me/packages/{package_id}/person")
        except ApiError as refused:
            return page(
                request,
                "error.html",
                session,
                refused.status if refused.status in (403, 404) else 400,
                title="You cannot see this person's details",
                message=refused.message,
            )
        return page(request, "portal_person.html", session, person=person, package_id=package_id)

    @router.get("/portal/profile")
    async def portal_profile(request: Request, session=Depends(provider)):
        me = await as_provider(session, "GET", "/me")
        return page(
            request, "portal_profile.html", session, me=me, slots=CALL_SLOTS, done=request.query_params.get("done")
        )

    @router.post("/portal/profile")
    async def portal_update_profile(request: Request, session=Depends(provider)):
        form = await form_of(request, session)
        body: dict[str, Any] = {"call_times": [s for s in form.get("call_times") or [] if s in CALL_SLOTS] or None}
        for field in ("weekly_capacity_hours", "max_calls_per_day"):
            if str(form.get(field) or "").strip():
                body[field] = str(form[field]).strip()
        try:
            await as_provider(session, "PATCH", "/me", body)
        except ApiError as refused:
            fields = refused.problem.get("fields") or []
            errors = {
                str(f.get("field")).split(".")[0]: str(f["message"]).removeprefix("Value error, ") for f in fields
            }
            me = await as_provider(session, "GET", "/me")
            return page(
                request,
                "portal_profile.html",
                session,
                400,
                me=me,
                slots=CALL_SLOTS,
                errors=errors or {"weekly_capacity_hours": refused.message},
            )
        return RedirectResponse("/portal/profile?done=1", status_code=303)

    return router


def kpi_charts(k: dict) -> dict[str, Any]:
    """The dashboard's four charts from ``homecare kpis``' figures."""
    slowest = max((r["p90_s"] or 0 for r in k["time_to_place"]["by_urgency"].values()), default=0)
    scale, unit = (3600, "h") if slowest >= 3 * 3600 else (60, "min") if slowest >= 180 else (1, "s")
    by_urgency = [
        (
            u.replace("_", " "),
            {
                "median": (r["median_s"] or 0) / scale,
                "90th percentile": max(0.0, ((r["p90_s"] or 0) - (r["median_s"] or 0)) / scale),
            },
        )
        for u, r in k["time_to_place"]["by_urgency"].items()
    ]
    unplaced = [(f"{r['zone']} ({r['band']})", {"hours a week": float(r["hours"])}) for r in k["unplaced_queue"]]
    # Concentration reads best by rank (names are in the table below the chart): the largest
    # provider's share, the next two, and everyone else.
    ranks = ["largest provider", "second", "third", "all others"]
    shares = []
    for zone, r in k["concentration_by_zone"].items():
        ordered = sorted(r["shares_percent"].values(), reverse=True)
        # strict=False: a zone may have fewer than three providers (the ranks are then cut short).
        shares.append((zone, dict(zip(ranks, [*ordered[:3], sum(ordered[3:])], strict=False))))
    reasons = sorted({r for row in k["declines_by_band"].values() for r in row})
    declines = [(band, {r: float(n) for r, n in row.items()}) for band, row in k["declines_by_band"].items()]
    return {
        "time_to_place": charts.bars(
            "chart-time",
            f"Time to place by urgency in {unit}: the median, then on to the 90th percentile",
            by_urgency,
            unit=f" {unit}",
            series=["median", "90th percentile"],
        ),
        "unplaced": charts.bars("chart-unplaced", "Unplaced hours a week by zone and band", unplaced, unit=" h"),
        "shares": charts.bars(
            "chart-shares", "Share of placed hours per zone by provider rank, percent", shares, unit="%", series=ranks
        ),
        "declines": charts.bars("chart-declines", "Decline reasons by band", declines, series=reasons),
    }
