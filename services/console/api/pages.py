"""What every page of the console shares: the templates and their filters, the menu (only the pages
the session may open) and :func:`page`, which renders a template with them."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from schemas.vocabulary import reason_words
from services.console import handlers
from services.console.domain import Permission
from services.runtime import clock
from services.runtime.numbers import hours_text

if TYPE_CHECKING:  # the console imports these pages: no import back at run time
    from services.console.app import Console

TEMPLATES = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")


def now() -> dt.datetime:
    """The time now, in UTC: the platform's clock (services.runtime.clock, settable in tests)."""
    return clock.now()


def _when(value: Any) -> str:
    """The console's one filter for timestamps (``| when``): UK local time with GMT/BST."""
    return clock.format_uk(value or None)


def _day(value: Any) -> str:
    """The console's filter for business dates (``| day``): "Thursday 1 April 2027"."""
    if not value:
        return "-"
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    return f"{day:%A} {day.day} {day:%B %Y}"


def _value_words(key: str, value: Any) -> str:
    """One value of a timeline entry's detail in people's words: timestamps (``*_at``) in UK
    local time, business dates (``*_date``, ``*_on``) as days, lists joined, nested records as
    "name value" pairs - never JSON (issue 19: the timeline showed raw JSON)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "periods" and isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return _funding_periods(value)
    if isinstance(value, list | tuple):
        return ", ".join(_value_words(key, v) for v in value) or "-"
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')} {_value_words(str(k), v)}" for k, v in value.items()) or "-"
    try:
        if key.endswith("_at"):
            return _when(value)
        if key.endswith(("_date", "_on")):
            return _day(value)
    except (TypeError, ValueError):
        # A detail named like a time that is not one (found by a new user: "carries_on_at": "7.00",
        # hours, made the package's page a 500) is shown as it is; entries are never rewritten.
        pass
    return str(value).replace("_", " ") if isinstance(value, str) else str(value)


def _funding_periods(periods: list[dict[str, Any]]) -> str:
    """A funding record's periods as a sentence: "NHS discharge from Friday 4 December 2026, then joint
    (council 60%, NHS continuing healthcare 40%) from ..." (found by a new user: the timeline had
    dumped every member of every period)."""

    def one(period: dict[str, Any]) -> str:
        funder = str(period.get("funder", "-")).replace("_", " ")
        shares = [s for s in period.get("shares") or [] if isinstance(s, dict)]
        if len(shares) > 1:
            funder += (
                " ("
                + ", ".join(f"{str(s.get('funder', '-')).replace('_', ' ')} {s.get('percent')}%" for s in shares)
                + ")"
            )
        calls = [c for c in period.get("calls") or [] if isinstance(c, dict)]
        if calls:
            funder += "; " + ", ".join(
                f"call {c.get('call')} paid by {str(c.get('funder', '-')).replace('_', ' ')}" for c in calls
            )
        try:
            since = _day(period.get("effective_from"))
        except (TypeError, ValueError):  # an entry is shown as it is, never rewritten
            since = str(period.get("effective_from"))
        return f"{funder} from {since}"

    return ", then ".join(one(p) for p in periods) or "-"


def _detail(detail: Any) -> str:
    """A timeline entry's detail (``| detail``): its non-empty items as "name value" pairs."""
    if not isinstance(detail, dict):
        return _value_words("", detail)
    items = [(k, v) for k, v in detail.items() if v not in (None, "", [], {})]
    return ", ".join(f"{str(k).replace('_', ' ')} {_value_words(str(k), v)}" for k, v in items)


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["detail"] = _detail
TEMPLATES.env.filters["day"] = _day
TEMPLATES.env.filters["hours"] = lambda v: hours_text(v) if v not in (None, "") else "-"  # 7.00 -> 7, as messages say
TEMPLATES.env.filters["words"] = lambda v: str(v or "-").replace("_", " ")
TEMPLATES.env.filters["reason"] = lambda v: reason_words(str(v)) if v else "-"
TEMPLATES.env.globals["uuid4"] = uuid.uuid4  # a fresh Idempotency-Key per form shown
TEMPLATES.env.filters["pair"] = lambda v: (v, str(v).replace("_", " ").capitalize())  # (value, label) for options


MENU = [
    (Permission.board, "/board", "Board"),
    (Permission.act, "/packages/new", "New package"),
    ((Permission.board, Permission.reviews), "/reviews", "Reviews"),
    (Permission.operations, "/ops", "Overview"),
    (Permission.operations, "/ops/stream", "Live events"),
    (Permission.operations, "/ops/lag", "Consumer lag"),
    (Permission.operations, "/ops/dead-letters", "Dead letters"),
    (Permission.operations, "/ops/kpis", "KPIs"),
    (Permission.staff, "/admin/staff", "Staff accounts"),
    (Permission.providers, "/admin/providers", "Providers"),
    (Permission.providers, "/admin/change-requests", "Coverage requests"),
    (Permission.finance, "/finance", "Finance"),
    (Permission.applications, "/applications", "Applications to join"),
    (Permission.safeguarding, "/safeguarding", "Safeguarding concerns"),
    (Permission.quality, "/quality", "Quality register"),
    (Permission.quality, "/quality/import", "Import CQC ratings"),
    (Permission.reports, "/quality/reports", "Market reports"),
    (Permission.disclosures, "/admin/disclosures", "Disclosure log"),
    (Permission.reference, "/admin/rate-cards", "Rate cards"),
    (Permission.reference, "/admin/approval-limits", "Approval limits"),
]
PORTAL_MENU = [
    ("/portal/offers", "Offers"),
    ("/portal/history", "History"),
    ("/portal/packages", "My packages"),
    ("/portal/profile", "Capacity and call times"),
]
PORTAL_ADMIN_MENU = [("/portal/users", "Users")]  # an organisation's admin users (decision 0126)
# The words by a menu item's count, and the count's id (for tests and assistive technology).
BADGE_WORDS = {
    "/ops": ("problem", "problems", "ops-badge"),
    "/portal/offers": ("new offer", "new offers", "unread-badge"),
}
TEMPLATES.env.globals["badge_words"] = lambda href: BADGE_WORDS.get(href, ("item", "items", "badge"))


def navigation(session: handlers.Session | None, path: str, badges: dict[str, int] | None = None) -> list[dict]:
    """The menu: only the pages the session may open; ``badges``: a count to show by an item
    (operations' overview, while something is wrong)."""
    if session is None:
        return []
    if session.kind == "provider":
        items = PORTAL_MENU + (PORTAL_ADMIN_MENU if session.role == "provider_admin" else [])
    else:
        items = [
            (href, label)
            for needed, href, label in MENU
            if any(session.can(p) for p in (needed if isinstance(needed, tuple) else (needed,)))
        ]
    return [
        {"href": href, "label": label, "current": path == href, "badge": (badges or {}).get(href)}
        for href, label in items
    ]


def page(
    request: Request, template: str, session: handlers.Session | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """A full page: the template with the menu and the session's CSRF token for its forms."""
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "nav": navigation(session, request.url.path, getattr(request.state, "badges", None)),
            "health_banner": getattr(request.state, "health_banner", None),
            "csrf_token": session.csrf_token if session else None,
            **context,
        },
        status_code=status,
    )


async def zones(console: Console) -> list[dict]:
    """The framework's zones, by name (the brokerage's reference data; read once, then kept)."""
    if not console.zones:
        console.zones = sorted(await console.services.brokerage.get("/reference/zones"), key=lambda z: z["name"])
    return console.zones
