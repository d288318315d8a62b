"""The console's rules, pure Python: who may see what, sessions' lifetimes, the board's order,
and turning the new-package form into the brokerage API's request (and its answers back into
messages next to the fields). No I/O: unit-tested alone."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from schemas.vocabulary import CareNeed


class Role(StrEnum):
    broker = "broker"
    senior_broker = "senior_broker"  # a broker with a higher limit in the scheme of delegation
    manager = "manager"  # the brokerage team's manager: a broker's pages, a higher limit
    head_of_service = "head_of_service"  # approves above-rate spending beyond the managers' limit
    ops = "ops"
    admin = "admin"


class Permission(StrEnum):
    board = "board"  # the live board and package pages (without personal details)
    act = "act"  # request packages, approve/reject exceptions, cancel, re-offer, record starts
    person = "person"  # the person's details on the package page
    operations = "operations"  # event stream, lag, dead letters, KPIs
    staff = "staff"  # staff accounts


BROKERAGE_TEAM = (Role.broker, Role.senior_broker, Role.manager, Role.head_of_service)

# Personal details and package actions are the brokerage team's alone; operations and admins
# see the board to follow the work, never the people. What each may approve (the scheme of
# delegation) is the brokerage API's rule, applied to the role the console says it acts as.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    **{role: frozenset({Permission.board, Permission.act, Permission.person}) for role in BROKERAGE_TEAM},
    Role.ops: frozenset({Permission.board, Permission.operations}),
    Role.admin: frozenset({Permission.board, Permission.operations, Permission.staff}),
}

HOME = {**{role: "/board" for role in BROKERAGE_TEAM}, Role.ops: "/ops/stream", Role.admin: "/admin/staff"}

# The identity provider's realm roles (services/runtime/permissions.py) as the console's roles,
# in order of precedence: a session has one role, so someone with several gets the first here
# (the one with the most to decide). provider_staff has none: providers use the portal.
IDP_ROLES: dict[str, Role] = {
    "head_of_service": Role.head_of_service,
    "manager": Role.manager,
    "senior_broker": Role.senior_broker,
    "broker": Role.broker,
    "council_admin": Role.admin,
    "operations": Role.ops,
}


def role_from_idp(roles: object) -> Role | None:
    """The console's role for the identity provider's roles (a list of names from the ID token),
    or None when none of them is a console role (the sign-in is then refused)."""
    names = {r for r in roles if isinstance(r, str)} if isinstance(roles, list | tuple | set | frozenset) else set()
    return next((role for name, role in IDP_ROLES.items() if name in names), None)


def can(role: str | None, permission: Permission) -> bool:
    if role is None:
        return False
    try:
        return permission in PERMISSIONS[Role(role)]
    except ValueError:
        return False


# ---- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPolicy:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    absolute: dt.timedelta = dt.timedelta(hours=12)
    # The console's own password accounts (CONSOLE_LOCAL_ACCOUNTS): off unless an installation has
    # no identity provider. Off, nobody signs in with one and their open sessions end.
    local_accounts: bool = False

    def expires_at(self, *, created_at: dt.datetime, now: dt.datetime) -> dt.datetime:
        """Sliding idle expiry, never past the absolute limit from sign-in."""
        return min(now + self.idle, created_at + self.absolute)


# Sign-in throttling (OWASP ASVS 2.2.1): failed or in-flight attempts within the window, counted
# three ways. A pair (account, address) is refused after a few, so a stranger guessing from their
# address locks out only themselves; an address after more, across accounts (spraying one password
# over many accounts); an account from every address after many more (a distributed attack: only then
# can others delay its owner, and only for the window). A success clears its pair and account counts.
MAX_FAILED_SIGN_INS = 5  # per account and address
MAX_FAILED_SIGN_INS_PER_ADDRESS = 20
MAX_FAILED_SIGN_INS_PER_ACCOUNT = 100
FAILED_SIGN_IN_WINDOW = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class SignInCounts:
    """Failed and in-flight sign-in attempts within the window."""

    pair: int  # this account from this address, since the pair's last success
    address: int  # any account from this address
    account: int  # this account from any address, since its last success

    def throttled(self) -> bool:
        return (
            self.pair >= MAX_FAILED_SIGN_INS
            or self.address >= MAX_FAILED_SIGN_INS_PER_ADDRESS
            or self.account >= MAX_FAILED_SIGN_INS_PER_ACCOUNT
        )


MIN_PASSWORD_LENGTH = 12
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def password_problem(password: str) -> str | None:
    """NCSC/NIST guidance: length over composition rules."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 1000:
        return "Password must be 1,000 characters or fewer"
    return None


# ---- the board --------------------------------------------------------------------------------

# The unplaced queue first, then what needs a decision, then what is in flight, then the rest.
STATUS_ORDER = [
    "unplaced",
    "awaiting_approval",
    "offered",
    "requested",
    "placed",
    "started",
    "paused",
    "ended",
    "cancelled",
]
WAITING = {"unplaced", "awaiting_approval", "offered", "requested"}
# The work queue (the board's default): what still needs the brokerage team - waiting for a
# provider, for a decision, or paused in hospital.
OPEN = ["unplaced", "awaiting_approval", "offered", "requested", "paused"]
BOARD_PAGE = 50


def deadline_of(package: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
    """The package's next deadline for the board: ``{"what", "at", "left"}`` - the offer window
    closing, or the next re-offer of an unplaced package - with the time left in words; None
    when it has none."""
    if package["status"] == "offered" and package.get("window_closes_at"):
        what, at = "window closes", package["window_closes_at"]
    elif package["status"] == "unplaced" and package.get("next_reoffer_at"):
        what, at = "offered again", package["next_reoffer_at"]
    else:
        return None
    left = "now" if at <= now else "in " + waited(now, at)
    return {"what": what, "at": at, "left": left}


def search_problem(status: int) -> str:
    """Why the board's search found nothing, in plain words (the API's 403 or 422)."""
    if status == 403:
        return "Your role cannot search by a person's name or NHS number. Search by package reference instead."
    return (
        "Enter the first characters of a package reference, an NHS number (10 digits) "
        "or at least 3 letters of the person's name."
    )


def waited(since: dt.datetime, until: dt.datetime) -> str:
    """A wait clock: '3 d 4 h', '2 h 05 min', '7 min', 'under a minute'."""
    seconds = max(0, int((until - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min" if minutes else "under a minute"


def wait_of(package: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """Until when a package waited: still waiting, or until it was placed (or last went unplaced)."""
    if package["status"] in WAITING:
        return now
    return package.get("placed_at") or now


# ---- the new-package form -----------------------------------------------------------------------

PERSON_FIELDS = ["full_name", "address", "postcode", "phone", "email", "nhs_number", "date_of_birth", "care_notes"]
VISIT_FIELDS = ["calls_per_day", "minutes_per_call", "carers_per_call", "days_per_week"]

# The form's questions, by field id, as the error summary and messages name them.
LABELS = {
    "zone": "Zone",
    "band": "Pricing band",
    "postcode_district": "Postcode district",
    "hours_per_week": "Hours per week",
    "calls_per_day": "Calls a day",
    "minutes_per_call": "Minutes a call",
    "carers_per_call": "Carers a call",
    "days_per_week": "Days a week",
    "needs": "Care needs",
    "urgency": "Urgency",
    "start_date": "Start date",
    "funding": "Funding",
    "person_full_name": "Full name",
    "person_address": "Address",
    "person_postcode": "Postcode",
    "person_phone": "Phone",
    "person_email": "Email",
    "person_nhs_number": "NHS number",
    "person_date_of_birth": "Date of birth",
    "person_care_notes": "Care notes",
}
# Required questions, with the GOV.UK-style message for a blank answer.
REQUIRED = {
    "zone": "Select the zone",
    "band": "Select the pricing band",
    "postcode_district": "Enter the postcode district",
    "hours_per_week": "Enter the hours per week",
    "calls_per_day": "Enter the number of calls a day",
    "minutes_per_call": "Enter the minutes a call",
    "carers_per_call": "Select the carers a call",
    "days_per_week": "Enter the days a week",
    "needs": "Select at least one care need",
    "urgency": "Select the urgency",
    "start_date": "Enter the start date",
    "funding": "Select the funding",
    "person_full_name": "Enter the person's full name",
    "person_address": "Enter the person's address",
    "person_postcode": "Enter the person's postcode",
    "person_nhs_number": "Enter the person's NHS number",
}
WHOLE_NUMBERS = set(VISIT_FIELDS)
DATES = {"start_date", "person_date_of_birth"}


def date_from_parts(day: str, month: str, year: str) -> dt.date | None:
    try:
        return dt.date(int(year), int(month), int(day))
    except (TypeError, ValueError):
        return None


def package_request(form: Mapping[str, str | Sequence[str]]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The brokerage API's request from the form's answers, or the form's own errors (blank
    required answers, numbers and dates that are not numbers or dates). Every rule of the
    package itself is the API's, reported back through :func:`errors_from_api`."""
    errors: dict[str, str] = {}

    def text(field: str) -> str:
        value = form.get(field, "")
        return value.strip() if isinstance(value, str) else ""

    answered_needs = form.get("needs") or []
    needs = [answered_needs] if isinstance(answered_needs, str) else list(answered_needs)
    values: dict[str, object] = {}
    for field in LABELS:
        if field == "needs":
            values[field] = needs
        elif field in DATES:
            parts = [text(f"{field}-{p}") for p in ("day", "month", "year")]
            date = date_from_parts(*parts) if any(parts) else None
            if any(parts) and date is None:
                errors[field] = f"{LABELS[field]} must be a real date"
            values[field] = date and date.isoformat()
        else:
            values[field] = text(field) or None
        if not values[field] and field in REQUIRED and field not in errors:
            errors[field] = REQUIRED[field]
    for field in WHOLE_NUMBERS:
        if values[field] and field not in errors and not str(values[field]).isdigit():
            errors[field] = f"{LABELS[field]} must be a whole number"
    if values["hours_per_week"] and "hours_per_week" not in errors:
        try:
            float(str(values["hours_per_week"]))
        except ValueError:
            errors["hours_per_week"] = "Hours per week must be a number, like 10.5"
    unknown = set(needs) - {n.value for n in CareNeed}
    if unknown:
        errors["needs"] = "Select care needs from the list"
    if errors:
        return None, {f: errors[f] for f in LABELS if f in errors}  # in the form's order, as the summary lists them
    person = {f: values[f"person_{f}"] for f in PERSON_FIELDS if values[f"person_{f}"] is not None}
    request = {
        "zone": values["zone"],
        "band": values["band"],
        "postcode_district": values["postcode_district"],
        "hours_per_week": values["hours_per_week"],
        "visits": {f: int(str(values[f])) for f in VISIT_FIELDS},
        "needs": values["needs"],
        "urgency": values["urgency"],
        "start_date": values["start_date"],
        "funding": values["funding"],
        "person": person,
    }
    return request, {}


def form_field(api_field: str | None) -> str | None:
    """The form's field for a field the API named ('person.postcode' -> 'person_postcode')."""
    if not api_field:
        return None
    if api_field.startswith("person."):
        name = "person_" + api_field.removeprefix("person.")
    elif api_field.startswith("visits."):
        name = api_field.removeprefix("visits.")
    else:
        name = api_field.split(".")[0]
    return name if name in LABELS else None


def errors_from_api(problem: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The brokerage API's 422 as messages next to the fields, plus those about the request as a
    whole (shown in the error summary only). A rule across fields (hours against the visit
    pattern) names the field it is about at the start of its message."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for item in problem.get("fields") or []:
        message = str(item.get("message", "")).removeprefix("Value error, ")
        field = form_field(item.get("field"))
        if field is None:
            field = next((f for f in LABELS if message.startswith(f + " ")), None)
        if field is None:
            general.append(message)
        else:
            by_field.setdefault(
                field, f"{LABELS[field]}: {message}" if not message.startswith(LABELS[field]) else message
            )
    if not by_field and not general:
        general.append(str(problem.get("error") or "The request was refused"))
    return by_field, general


def field_errors(problem: dict[str, Any]) -> dict[str, str]:
    """The API's complaints by request field (``effective_date``, ``reason``...), for the form to
    show each next to its question; a complaint about the package's state is keyed ``status``."""
    errors: dict[str, str] = {}
    for f in problem.get("fields") or []:
        name = str(f.get("field", "")).split(".")[0]
        errors.setdefault(name, str(f.get("message", "")).removeprefix("Value error, "))
    return errors


def refusal(problem: dict[str, Any]) -> str:
    """One line for a refused action: the API's messages about the fields, else its error."""
    fields = problem.get("fields") or []
    message = "; ".join(str(f.get("message", "")).removeprefix("Value error, ") for f in fields)
    return (message or str(problem.get("error") or "The request was refused"))[:300]
