"""The console's rules, pure Python: who may see what, sessions' lifetimes, the board's order,
and turning the new-package form into the brokerage API's request (and its answers back into
messages next to the fields). No I/O: unit-tested alone."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from schemas.events import VisitPattern
from schemas.fields import is_decimal_text, plain_text, visible_name
from schemas.vocabulary import Band, CareNeed, Funding, Urgency
from services.runtime import clock, identifiers
from services.runtime.numbers import hours_text, whole_number


class Role(StrEnum):
    broker = "broker"
    senior_broker = "senior_broker"  # a broker with a higher limit in the scheme of delegation
    manager = "manager"  # the brokerage team's manager: a broker's pages, a higher limit
    head_of_service = "head_of_service"  # approves above-rate spending beyond the managers' limit
    ops = "ops"
    admin = "admin"
    safeguarding = "safeguarding"  # the safeguarding team: the concerns queue, nothing else (decision 0106)
    review_officer = "review_officer"  # the review team (decision 0096): the review queue and review outcomes
    finance = "finance"  # the finance team: service agreement records and commitments (decision 0109)
    contracts_quality = "contracts_quality"  # the contracts and quality team: applications and due diligence


class Permission(StrEnum):
    board = "board"  # the live board and package pages (without personal details)
    act = "act"  # request packages, approve/reject exceptions, cancel, re-offer, record starts
    person = "person"  # the person's details on the package page
    operations = "operations"  # event stream, lag, dead letters, KPIs
    staff = "staff"  # staff accounts
    raise_concern = "raise_concern"  # raise a safeguarding concern from a package page
    safeguarding = "safeguarding"  # the safeguarding queue and concerns: their words and personal details
    reviews = "reviews"  # the review queue, a package's page (no personal details) and its review form
    quality = "quality"  # the provider quality and risk register: read, review, import CQC ratings
    reports = "reports"  # the commissioners' reports (market share, declines, quality, coverage)
    finance = "finance"  # the weekly commitment and the finance system's import file (package ids only)
    applications = "applications"  # applications to join the framework and their due diligence (issue 21)
    providers = "providers"  # the framework's providers: status, credentials, coverage requests (admins)
    disclosures = "disclosures"  # the disclosure log: who read which person's details, when (read-only)
    reference = "reference"  # the rate cards and the scheme of delegation's approval limits (read-only)


BROKERAGE_TEAM = (Role.broker, Role.senior_broker, Role.manager, Role.head_of_service)

# Personal details and package actions are the brokerage team's alone; operations and admins
# see the board to follow the work, never the people. What each may approve (the scheme of
# delegation) is the brokerage API's rule, applied to the role the console says it acts as.
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    **{
        role: frozenset(
            {
                Permission.board,
                Permission.act,
                Permission.person,
                Permission.raise_concern,
                Permission.reviews,
                Permission.reference,
            }
        )
        for role in BROKERAGE_TEAM
    },
    # Budget holders answer for the commitment: the finance pages too (the API's table says the same).
    Role.manager: frozenset(
        {
            Permission.board,
            Permission.act,
            Permission.person,
            Permission.finance,
            Permission.raise_concern,
            Permission.reviews,
            Permission.reports,
            Permission.reference,
            # Who read which person's details (the API's table: managers, head of service, admins).
            Permission.disclosures,
        }
    ),
    Role.head_of_service: frozenset(
        {
            Permission.board,
            Permission.act,
            Permission.person,
            Permission.finance,
            Permission.raise_concern,
            Permission.reviews,
            Permission.reports,
            Permission.reference,
            # Who read which person's details (the API's table: managers, head of service, admins).
            Permission.disclosures,
        }
    ),
    Role.ops: frozenset({Permission.board, Permission.operations, Permission.raise_concern, Permission.reports}),
    Role.admin: frozenset(
        {
            Permission.board,
            Permission.operations,
            Permission.staff,
            Permission.raise_concern,
            Permission.reports,
            Permission.providers,
            Permission.disclosures,
            Permission.reference,
        }
    ),
    # The review team (issue 18, decision 0096): its API rights are the reviews queue, recording a
    # review and reading a package - not the board's search, not the person, no other action.
    Role.review_officer: frozenset({Permission.reviews}),
    # Finance sees no person and no board: the records carry package ids only.
    Role.finance: frozenset({Permission.finance}),
    # The contracts and quality team: applications and due diligence, the quality and risk register
    # (decision 0103) and the market reports (decision 0105).
    Role.contracts_quality: frozenset({Permission.applications, Permission.quality, Permission.reports}),
    # The safeguarding team reads concerns and decides on them; it follows no package and sees no board.
    Role.safeguarding: frozenset({Permission.safeguarding}),
}

HOME = {
    **{role: "/board" for role in BROKERAGE_TEAM},
    Role.ops: "/ops",
    Role.admin: "/admin/staff",
    Role.review_officer: "/reviews",
    Role.finance: "/finance",
    Role.contracts_quality: "/applications",
    Role.safeguarding: "/safeguarding",
}
# The roles a console-local account may have (the staff table's check, console migration 0003): the
# safeguarding team signs in through the identity provider only (its role reads personal details of
# concerns: the council's own sign-in, with its second factor, and no password kept here); so do the
# other teams of issue 21 and the review team (the staff table's role check predates their roles).
LOCAL_ACCOUNT_ROLES = (*BROKERAGE_TEAM, Role.ops, Role.admin)

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
    "review_officer": Role.review_officer,
    "finance": Role.finance,
    "contracts_quality": Role.contracts_quality,
    "safeguarding": Role.safeguarding,
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


STAFF_FIELDS = ["username", "display_name", "role", "password"]


def staff_problems(*, username: str, display_name: str, role: str, password: str) -> dict[str, str]:
    """Everything wrong with a new staff account's answers, at once, in the form's order."""
    problems: dict[str, str] = {}
    name = username.strip().lower()
    if not name:
        problems["username"] = "Enter a username"
    elif not USERNAME.match(name):
        problems["username"] = "Username must be 2 to 64 lowercase letters, digits, dots, dashes or underscores"
    if not display_name.strip():
        problems["display_name"] = "Enter the person's name"
    elif len(display_name.strip()) > 200:
        problems["display_name"] = "Name must be 200 characters or fewer"
    if role not in {r.value for r in LOCAL_ACCOUNT_ROLES}:
        problems["role"] = "Select a role"
    if not password:
        problems["password"] = "Enter a first password"
    elif problem := password_problem(password):
        problems["password"] = problem
    return problems


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
# The board's filter for above-rate bids with the first of two approvals (decision records 0123,
# 0133): awaiting_approval packages a manager or head of service can complete.
SECOND_APPROVAL = "second_approval"


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
    "discharge_hospital": "Hospital",
    "discharge_ward": "Ward",
    "discharge_pathway": "Discharge pathway",
    "discharge_medically_fit_on": "Medically fit date",
    "discharge_reablement_potential": "Reablement potential",
    "discharge_nhs_funded_weeks": "Weeks of NHS discharge funding",
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
# Whole numbers of the visit pattern, with the range the brokerage accepts (schemas/events.py VisitPattern).
VISIT_RANGES = {
    "calls_per_day": (1, 6),
    "minutes_per_call": (15, 180),
    "carers_per_call": (1, 2),
    "days_per_week": (1, 7),
}
VISIT_EXAMPLES = {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7}
DATES = {"start_date", "person_date_of_birth", "discharge_medically_fit_on"}
# A hospital discharge's questions (decision records 0097, 0120): asked with the urgency
# hospital_discharge, and only then; blank answers get these messages.
DISCHARGE_REQUIRED = {
    "discharge_hospital": "Select the hospital",
    "discharge_ward": "Enter the ward code",
    "discharge_pathway": "Select the discharge pathway",
    "discharge_medically_fit_on": "Enter the date the person is medically fit",
}
DISCHARGE_FIELDS = (*DISCHARGE_REQUIRED, "discharge_reablement_potential", "discharge_nhs_funded_weeks")
NHS_FUNDED_WEEKS = (0, 8)  # the brokerage's range (services/brokerage/api.py DischargeRequest)
DISCHARGE_FIT_AHEAD_DAYS, DISCHARGE_FIT_BACK_DAYS = 14, 28  # the brokerage's defaults; it checks its own
# The longest answers the brokerage keeps (its API's limits).
MAX_LENGTHS = {"person_full_name": 200, "person_address": 500, "person_care_notes": 5000, "person_email": 254}
MAX_HOURS = Decimal(168)


def form_idempotency_key(value: object) -> str:
    """A form's Idempotency-Key (the hidden field the console puts on the new-package form, a UUID)
    as sent to the brokerage: the same UUID, or a fresh one for anything else - no value, or one
    the console did not make."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(uuid.uuid4())


def hours_answer(raw: object) -> Decimal | None:
    """Hours typed into a form as a Decimal, or None unless written in 0-9 with at most a sign and
    a point (decision 0154: ``Decimal()`` alone also reads other scripts' digits, 1_0 and 1e1).
    Both forms that ask for hours (a new package, a change) read them here."""
    text = str(raw).strip()
    return Decimal(text) if is_decimal_text(text) else None


def number_or_text(raw: object) -> int | str:
    """A form's count for an API body: the number when it is a whole number typed in 0-9
    (services/runtime/numbers.py), else the text as typed, so that the API's 422 names the field
    (the APIs take a count only as a JSON number: decision 0153)."""
    number = whole_number(raw)
    return number if number is not None else str(raw)


MAX_CALLS_A_DAY = 6  # the providers service's limit (services/providers/api.py ProfileChange)


def calls_a_day(raw: object) -> tuple[int | None, str | None]:
    """A provider's most calls a day as typed in the portal: ``(the number, None)`` for a whole number
    from 1 to 6, else ``(None, the message for the form)``."""
    number = whole_number(raw)
    if number is None or not 1 <= number <= MAX_CALLS_A_DAY:
        return None, PROFILE_MESSAGES["max_calls_per_day"]
    return number, None


PROFILE_MESSAGES = {
    "weekly_capacity_hours": "Enter your weekly capacity in carer hours, like 40 or 37.5",
    "call_times": "Choose call times from the list",
    "max_calls_per_day": f"Enter a whole number of calls a day, from 1 to {MAX_CALLS_A_DAY}",
}


def profile_refusal(problem: dict[str, Any]) -> dict[str, str]:
    """The portal profile form's messages for the providers service's refusal of ``PATCH /me`` (its
    problem body), by field, in the form's words: nothing a service says is shown in its own."""
    if problem.get("code") == "capacity-below-commitments":
        return {"weekly_capacity_hours": "Capacity cannot go below the hours you have committed and held for bids"}
    named = {str(f.get("field") or "").split(".")[0] for f in problem.get("fields") or []}
    return {f: m for f, m in PROFILE_MESSAGES.items() if f in named} or {
        "weekly_capacity_hours": "Your details could not be saved. Check them and try again"
    }


def visit_number(field: str, raw: object) -> tuple[int | None, str | None]:
    """A visit pattern's field as typed (calls a day, minutes a call, carers a call, days a week):
    ``(the number, None)`` when it is a whole number inside :data:`VISIT_RANGES`, else
    ``(None, the message for the form)``."""
    low, high = VISIT_RANGES[field]
    number = whole_number(raw)
    if number is None:
        return None, f"{LABELS[field]} must be a whole number, like {VISIT_EXAMPLES[field]}"
    if not low <= number <= high:
        return None, f"{LABELS[field]} must be between {low} and {high}"
    return number, None


LAST_PAGE = 10_000  # a list's page number is kept to 1..this; past its end a page is empty


def page_number(text: object) -> int:
    """A list page's number from its query string: 1 for none or anything but 0-9, else kept to
    1..:data:`LAST_PAGE`."""
    asked = whole_number(text)
    return 1 if asked is None else max(1, min(asked, LAST_PAGE))


REVIEW_WINDOW_DAYS = 400  # the review queue's "due within" is at most this many days


def review_window_days(text: object) -> int | None:
    """The review queue's "due within N days" from its query string; None (the brokerage's own
    setting) for none, anything but 0-9, or more than :data:`REVIEW_WINDOW_DAYS`."""
    days = whole_number(text)
    return days if days is not None and days <= REVIEW_WINDOW_DAYS else None


def kpi_period_days(text: str) -> float:
    """The KPI page's period in days from its query string: a number in 0-9 with up to two
    decimals, kept to 0.01..366; 7 for anything else (decision 0154)."""
    if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,2})?", text.strip()):
        return 7.0
    return min(366.0, max(0.01, float(text)))


def date_from_parts(day: object, month: object, year: object) -> dt.date | None:
    """GOV.UK's date input (three boxes) as a date; None unless each box is a whole number in 0-9
    and together they make a real date."""
    parts = [whole_number(part) for part in (year, month, day)]
    if None in parts:
        return None
    try:
        return dt.date(*parts)  # type: ignore[arg-type]
    except (OverflowError, ValueError):
        return None


def _visits_words(calls: int, minutes: int, carers: int, days: int) -> str:
    carer_words = "1 carer" if carers == 1 else f"{carers} carers"
    calls_words = "1 call" if calls == 1 else f"{calls} calls"
    days_words = "1 day" if days == 1 else f"{days} days"
    return f"{calls_words} a day of {minutes} minutes with {carer_words}, {days_words} a week"


def hours_problem(hours: Decimal, visits: Mapping[str, int]) -> str | None:
    """Why carer hours a week do not match the visit pattern, in plain words, or None when they do.
    The rule (tolerance included) is the brokerage's own, applied to the same figures."""
    from services.brokerage.domain import hours_mismatch  # pure: the one place the tolerance lives

    pattern = VisitPattern(**visits)
    if hours_mismatch(hours, pattern) is None:
        return None
    return (
        f"Hours per week must match the visits: {_visits_words(*(visits[f] for f in VISIT_RANGES))} is "
        f"{hours_text(pattern.care_hours_per_week)} hours"
    )


def package_request(
    form: Mapping[str, str | Sequence[str]],
    zones: Sequence[Mapping[str, Any]] = (),
    today: dt.date | None = None,
    discharge: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The brokerage API's request from the form's answers, or every problem with them at once, in
    the form's order and in plain words (GOV.UK's error summary): blank required answers, numbers
    and dates that are not, ranges, identifiers (postcode, NHS number, phone, email: the platform's
    own checks, services/runtime/identifiers.py), the district against the zone (``zones``: the
    brokerage's reference data) and the hours against the visits. ``today``: the UK date. With the
    urgency hospital_discharge the discharge's answers too (``discharge``: the brokerage's
    ``GET /reference/hospitals``, its hospitals, wards and pathways; decision records 0097, 0120):
    only pathway 1 is home care, the others refused with their route; without that urgency no
    discharge answer may be given. What the API still refuses comes back through
    :func:`errors_from_api`."""
    today = today or clock.uk_today()
    errors: dict[str, str] = {}

    def text(field: str) -> str:
        value = form.get(field, "")
        return value.strip() if isinstance(value, str) else ""

    answered_needs = form.get("needs") or []
    needs = [answered_needs] if isinstance(answered_needs, str) else list(answered_needs)
    values: dict[str, Any] = {}
    for field in LABELS:
        if field == "needs":
            values[field] = needs
        elif field in DATES:
            parts = [text(f"{field}-{p}") for p in ("day", "month", "year")]
            date = date_from_parts(*parts) if any(parts) else None
            if any(parts) and date is None:
                errors[field] = f"{LABELS[field]} must be a real date"
            values[field] = date
        else:
            values[field] = text(field) or None
        if not values[field] and field in REQUIRED and field not in errors:
            errors[field] = REQUIRED[field]
    discharge_asked = values["urgency"] == "hospital_discharge"
    for field, message in DISCHARGE_REQUIRED.items():
        if discharge_asked and not values[field] and field not in errors:
            errors[field] = message

    def check(field: str, problem: str | None) -> None:
        if problem and field not in errors:
            errors[field] = problem

    visits: dict[str, int] = {}
    for field in VISIT_RANGES:
        raw = values[field]
        if raw and field not in errors:
            number, problem = visit_number(field, raw)
            check(field, problem)
            if number is not None:
                visits[field] = number
    hours: Decimal | None = None
    if values["hours_per_week"] and "hours_per_week" not in errors:
        hours = hours_answer(values["hours_per_week"])
        if hours is None:
            check("hours_per_week", "Hours per week must be a number, like 10.5")
        else:
            if not hours.is_finite() or not 0 < hours <= MAX_HOURS:
                check("hours_per_week", "Hours per week must be more than 0 and no more than 168")
                hours = None
            elif hours.as_tuple().exponent < -2:  # type: ignore[operator]
                check("hours_per_week", "Hours per week can have up to 2 decimal places, like 10.25")
                hours = None
    if hours is not None and len(visits) == len(VISIT_RANGES):
        check("hours_per_week", hours_problem(hours, visits))
    if set(needs) - {n.value for n in CareNeed}:
        check("needs", "Select care needs from the list")
    # A choice from a list is one of the list's: the check page must not show "standard" as an
    # urgency the brokerage then refuses (found by an attack on the form's fields).
    for field, choices in (("band", Band), ("urgency", Urgency), ("funding", Funding)):
        if values[field] and values[field] not in {c.value for c in choices}:
            check(field, REQUIRED[field])

    zone = next((z for z in zones if z.get("id") == values["zone"]), None)
    if zones and values["zone"] and zone is None:
        check("zone", "Select a zone from the list")
    district = None
    if values["postcode_district"]:
        try:
            district = identifiers.normalise_postcode_district(values["postcode_district"])
        except ValueError:
            check("postcode_district", "Enter the postcode district as the first half of a postcode, like LE11")
        else:
            if zone is not None and district not in zone.get("postcode_districts", []):
                check(
                    "postcode_district",
                    f"{district} is not in {zone.get('name', values['zone'])}: choose the zone it is in, "
                    f"or enter one of {', '.join(zone.get('postcode_districts', []))}",
                )
                district = None
    start = values["start_date"]
    if start is not None and start < today - dt.timedelta(days=1):
        check("start_date", "Start date must be today or in the future")
    elif start is not None and start > today + dt.timedelta(days=366):
        check("start_date", "Start date must be within a year from today")

    if values["person_postcode"]:
        try:
            postcode = identifiers.normalise_postcode(values["person_postcode"])
        except ValueError:
            check("person_postcode", "Enter a real postcode, like LE11 3AB")
        else:
            if district and identifiers.postcode_district_of(postcode) != district:
                check(
                    "person_postcode",
                    f"The postcode {postcode} is not in {district}: check the postcode and the postcode district",
                )
    if values["person_nhs_number"]:
        digits = re.sub(r"[\s-]", "", str(values["person_nhs_number"]))
        try:
            identifiers.normalise_nhs_number(values["person_nhs_number"])
        except ValueError:
            check(
                "person_nhs_number",
                "NHS number must be 10 digits, like 485 777 3457"
                if not (len(digits) == 10 and whole_number(digits) is not None)
                else "Enter a real NHS number: check the 10 digits",
            )
    born = values["person_date_of_birth"]
    if born is not None and born > today:
        check("person_date_of_birth", "Date of birth must be in the past")
    elif born is not None and born < dt.date(1900, 1, 1):
        check("person_date_of_birth", "Date of birth must be after 1900")
    if values["person_phone"]:
        try:
            identifiers.normalise_phone(values["person_phone"])
        except ValueError:
            check("person_phone", "Enter a UK phone number, like 01632 960 001")
    if values["person_email"]:
        try:
            identifiers.normalise_email(values["person_email"])
        except ValueError:
            check("person_email", "Enter an email address in the correct format, like name@example.com")
    for field, longest in MAX_LENGTHS.items():
        if values[field] and len(str(values[field])) > longest:
            check(field, f"{LABELS[field].removesuffix(' (optional)')} must be {longest:,} characters or fewer")
    for field, as_name in (("person_full_name", True), ("person_address", False), ("person_care_notes", False)):
        if values[field]:
            check(field, hidden_text_problem(LABELS[field].removesuffix(" (optional)"), values[field], name=as_name))

    discharge_block = _discharge_answers(values, discharge or {}, check, asked=discharge_asked, today=today)

    if errors:
        return None, {f: errors[f] for f in LABELS if f in errors}  # in the form's order, as the summary lists them
    person = {f: values[f"person_{f}"] for f in PERSON_FIELDS if values[f"person_{f}"] is not None}
    if "date_of_birth" in person:
        person["date_of_birth"] = person["date_of_birth"].isoformat()
    request = {
        "zone": values["zone"],
        "band": values["band"],
        "postcode_district": values["postcode_district"],
        "hours_per_week": values["hours_per_week"],
        "visits": visits,
        "needs": values["needs"],
        "urgency": values["urgency"],
        "start_date": values["start_date"].isoformat(),
        "funding": values["funding"],
        "person": person,
    }
    if discharge_block is not None:
        request["discharge"] = discharge_block
    return request, {}


# The check-your-answers page's sections (GOV.UK's pattern: a summary list per section, in the
# form's order; decision record 0132), with the answers each lists.
ANSWER_SECTIONS = (
    ("Where", ("zone", "postcode_district", "band")),
    (
        "The care",
        (
            "urgency",
            "calls_per_day",
            "minutes_per_call",
            "carers_per_call",
            "days_per_week",
            "hours_per_week",
            "needs",
            "start_date",
            "funding",
        ),
    ),
    ("Hospital discharge", DISCHARGE_FIELDS),
    ("The person", tuple(f"person_{f}" for f in PERSON_FIELDS)),
)
ANSWER_WORDS = {
    "carers_per_call": {"1": "One carer", "2": "Two carers (double-handed)"},
    "funding": {"council": "Council", "nhs": "NHS (hospital discharge)"},
    "discharge_reablement_potential": {"yes": "Yes: refer to in-house reablement first if it has room"},
}
NOT_GIVEN = "Not given"


def answer_target(field: str) -> str:
    """The id of a question's first input, where a Change link or an error takes the reader: a
    date's day box, else the field's own id (a radio group's and a checkbox group's first item)."""
    return f"{field}-day" if field in DATES else field


def check_answers(
    form: Mapping[str, str | Sequence[str]],
    zones: Sequence[Mapping[str, Any]] = (),
    discharge: Mapping[str, Any] | None = None,
) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The answers of a request form that :func:`package_request` accepted, for people to check
    before it is sent: ``[(section, [(field, label, words)])]`` in the form's order. Codes in
    words (a zone's and a hospital's names, "One carer", "Hospital discharge"), dates as "3 March
    2027", an optional question left blank as "Not given"; the hospital discharge's section only
    with the urgency hospital_discharge."""

    def text(field: str) -> str:
        value = form.get(field, "")
        return value.strip() if isinstance(value, str) else ""

    zone_names = {z.get("id"): z.get("name") for z in zones}
    hospitals = {h["code"]: h["name"] for h in (discharge or {}).get("hospitals", [])}
    pathways = {str(p["pathway"]): f"{p['pathway']}: {p['means']}" for p in (discharge or {}).get("pathways", [])}
    discharge_asked = text("urgency") == "hospital_discharge"
    sections = []
    for title, fields in ANSWER_SECTIONS:
        if title == "Hospital discharge" and not discharge_asked:
            continue
        rows = []
        for field in fields:
            if field == "needs":
                given = form.get("needs") or []
                needs = [given] if isinstance(given, str) else list(given)
                words = ", ".join(n.replace("_", " ").capitalize() for n in needs)
            elif field in DATES:
                day = date_from_parts(*(text(f"{field}-{p}") for p in ("day", "month", "year")))
                words = f"{day.day} {day:%B %Y}" if day else ""
            else:
                value = text(field)
                if field == "zone":
                    words = zone_names.get(value) or value
                elif field == "discharge_hospital":
                    words = hospitals.get(value) or value
                elif field == "discharge_pathway":
                    words = pathways.get(value) or value
                elif field == "discharge_reablement_potential":
                    words = ANSWER_WORDS[field].get(value, "No")
                elif field in ANSWER_WORDS:
                    words = ANSWER_WORDS[field].get(value, value)
                elif field in ("band", "urgency"):
                    words = value.replace("_", " ").capitalize()
                else:
                    words = value
            rows.append((field, LABELS[field], words or NOT_GIVEN))
        sections.append((title, rows))
    return sections


def carried_answers(form: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    """The request form's answers as (name, value) pairs for hidden fields of the check page, so the
    answers travel with the form and are kept nowhere else (decision record 0132): every answer but
    the CSRF token (the page adds the session's) and the Change button's."""
    pairs = []
    for name, value in form.items():
        if name in ("csrf_token", "change"):
            continue
        for item in [value] if isinstance(value, str) else list(value):
            pairs.append((name, str(item)))
    return pairs


def _discharge_answers(
    values: Mapping[str, Any],
    reference: Mapping[str, Any],
    check: Callable[[str, str | None], None],
    *,
    asked: bool,
    today: dt.date,
) -> dict[str, Any] | None:
    """The request's ``discharge`` block from the answers (decision records 0097, 0120), problems
    reported through ``check``; None when the urgency is not hospital_discharge (then any discharge
    answer is a problem of the urgency: the two go together)."""
    given = [f for f in DISCHARGE_FIELDS if values[f] and f != "discharge_nhs_funded_weeks"]
    if not asked:
        if given:
            check("urgency", "Select Hospital discharge as the urgency, or remove the hospital discharge answers")
        return None
    hospitals = {h["code"]: h for h in reference.get("hospitals", [])}
    hospital = values["discharge_hospital"]
    if hospital and hospitals and hospital not in hospitals:
        check("discharge_hospital", "Select the hospital from the list")
    ward = (values["discharge_ward"] or "").upper()
    if ward and hospital in hospitals and ward not in hospitals[hospital]["wards"]:
        check(
            "discharge_ward",
            f"{ward} is not a ward of {hospitals[hospital]['name']}: "
            f"enter one of {', '.join(hospitals[hospital]['wards'])}",
        )
    pathway = values["discharge_pathway"]
    routes = {str(p["pathway"]): p for p in reference.get("pathways", [])}
    if pathway and pathway != "1":
        route = routes.get(str(pathway))
        check(
            "discharge_pathway",
            f"Pathway {pathway} is {route['means']}, not care at home: {route['route']}"
            if route
            else "Select pathway 1: only home with support is brokered as home care",
        )
    fit = values["discharge_medically_fit_on"]
    start = values["start_date"]
    if fit is not None and fit > today + dt.timedelta(days=DISCHARGE_FIT_AHEAD_DAYS):
        check(
            "discharge_medically_fit_on",
            f"Medically fit date must be within {DISCHARGE_FIT_AHEAD_DAYS} days from today",
        )
    elif fit is not None and fit < today - dt.timedelta(days=DISCHARGE_FIT_BACK_DAYS):
        check(
            "discharge_medically_fit_on", f"Medically fit date must be within the last {DISCHARGE_FIT_BACK_DAYS} days"
        )
    elif fit is not None and start is not None and start < fit:
        check("start_date", "Start date must be on or after the date the person is medically fit")
    weeks_text = values["discharge_nhs_funded_weeks"] or "4"
    low, high = NHS_FUNDED_WEEKS
    weeks = whole_number(weeks_text)
    if weeks is None or not low <= weeks <= high:
        check(
            "discharge_nhs_funded_weeks", f"Weeks of NHS discharge funding must be a whole number from {low} to {high}"
        )
        weeks = 0
    if not (hospital and ward and pathway and fit):
        return None
    return {
        "hospital": hospital,
        "ward": ward,
        "pathway": number_or_text(pathway),
        "medically_fit_on": fit.isoformat(),
        "reablement_potential": values["discharge_reablement_potential"] == "yes",
        "nhs_funded_weeks": weeks,
    }


def form_field(api_field: str | None) -> str | None:
    """The form's field for a field the API named ('person.postcode' -> 'person_postcode')."""
    if not api_field:
        return None
    if api_field.startswith("person."):
        name = "person_" + api_field.removeprefix("person.")
    elif api_field.startswith("visits."):
        name = api_field.removeprefix("visits.")
    elif api_field == "discharge":  # the urgency hospital_discharge without the block (decision 0120)
        name = "discharge_hospital"
    elif api_field.startswith("discharge."):
        name = "discharge_" + api_field.removeprefix("discharge.")
    else:
        name = api_field.split(".")[0]
    return name if name in LABELS else None


# What the console says when the brokerage refuses a field it had already checked (the API's own
# words are for programmers; a person reads these). Keyed by the form's field: the code.
REFUSED_FIELDS = {
    "zone": "Select a zone from the list",
    "band": "Select the pricing band",
    "postcode_district": "Check the postcode district: it must be one of the zone's districts, like LE11",
    "hours_per_week": "Hours per week must match the visits (calls x minutes x carers x days)",
    "needs": "Select care needs from the list",
    "urgency": "Select the urgency",
    "start_date": "Start date must be today or within a year from today",
    "funding": "Select the funding",
    "discharge_hospital": "Select the hospital from the list",
    "discharge_ward": "Enter a ward code of that hospital, like W17",
    "discharge_pathway": "Select pathway 1: only home with support is brokered as home care",
    "discharge_medically_fit_on": "Medically fit date must be within 14 days ahead or 28 days back",
    "discharge_nhs_funded_weeks": "Weeks of NHS discharge funding must be a whole number from 0 to 8",
    "person_postcode": "Check the postcode: it must be a real postcode in the postcode district",
    "person_nhs_number": "Enter a real NHS number: check the 10 digits",
    "person_date_of_birth": "Date of birth must be a real date in the past",
    "person_phone": "Enter a UK phone number, like 01632 960 001",
    "person_email": "Enter an email address in the correct format, like name@example.com",
}
REFUSED_GENERAL = "The package could not be requested. Check the answers and try again."


def hidden_text_problem(label: str, text: str, *, name: bool = False) -> str | None:
    """What the form says of typed words the APIs would refuse for characters that do not show
    or that reorder the text (schemas/fields.py ``FreeText``; a ``name``: ``DisplayName``;
    decisions 0155, 0156), usually pasted in with the words; None when there are none."""
    try:
        (visible_name if name else plain_text)(text)
    except ValueError:
        return f"The answer to '{label}' has characters that do not show, often pasted in with the words: type it again"
    return None


def errors_from_api(problem: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The brokerage API's 422 as the console's own messages next to the fields, plus one about the
    request as a whole (shown in the error summary only). Only the field the API names is read,
    never its words: a field the console has no message for is a general problem."""
    by_field: dict[str, str] = {}
    general: list[str] = []
    for item in problem.get("fields") or []:
        field = form_field(item.get("field"))
        if field is None and "does not match the visit pattern" in str(item.get("message", "")):
            field = "hours_per_week"  # the API's rule across fields, reported on the body
        if field is not None:
            by_field.setdefault(field, REFUSED_FIELDS.get(field, f"Check the answer to '{LABELS[field]}'"))
        elif REFUSED_GENERAL not in general:
            general.append(REFUSED_GENERAL)
    if not by_field and not general:
        general.append(REFUSED_GENERAL)
    return {f: by_field[f] for f in LABELS if f in by_field}, general


# ---- the package page's actions ------------------------------------------------------------------

# Each action's questions in the page's order: (the form's field, the element the error summary links to).
ACTION_QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "reoffer": [],
    "cancel": [("reason", "cancel-reason"), ("reason_text", "cancel-reason-text")],
    "start": [("started_on", "started_on-day")],
    "hand-back": [
        ("notice_ends_on", "notice_ends_on-day"),
        ("reason", "hand-back-reason"),
        ("reason_text", "hand-back-reason-text"),
    ],
    "pause": [("reason", "pause-reason"), ("paused_on", "paused_on-day")],
    "resume": [("resumed_on", "resumed_on-day")],
    "end": [("reason", "end-reason"), ("effective_date", "effective_date-day"), ("reason_text", "end-reason-text")],
    "change": [
        *[(f, f) for f in VISIT_FIELDS],
        ("hours_per_week", "hours_per_week"),
        ("reason", "change-reason"),
        ("change_effective_date", "change_effective_date-day"),
        ("discussed_with_person", "discussed_with_person"),
        ("reason_text", "change-reason-text"),
    ],
    "decision": [("decision", "decision"), ("reason", "decision-reason"), ("reason_text", "decision-reason-text")],
}
# The blank answers each action cannot do without, and what to ask for.
REQUIRED_ANSWERS: dict[tuple[str, str], str] = {
    ("cancel", "reason"): "Select why the package is cancelled",
    ("start", "started_on"): "Enter the day care started",
    ("hand-back", "notice_ends_on"): "Enter the provider's last day of care",
    ("hand-back", "reason"): "Select why the provider is handing the package back",
    ("pause", "reason"): "Select why the visits pause",
    ("pause", "paused_on"): "Enter the first day without visits",
    ("resume", "resumed_on"): "Enter the day the visits start again",
    ("end", "reason"): "Select why the package ends",
    ("end", "effective_date"): "Enter the first day without care",
    ("change", "reason"): "Select why the package changes",
    ("change", "change_effective_date"): "Enter the first day of the new visits",
    ("decision", "decision"): "Select whether to approve or refuse the above-rate bid",
    ("decision", "reason"): "Select the reason for your decision",
}
# The dates of the actions' forms, as a message names them.
DATE_NAMES = {
    "started_on": "The day care started",
    "notice_ends_on": "The provider's last day of care",
    "paused_on": "The first day without visits",
    "resumed_on": "The day the visits start again",
    "effective_date": "The first day without care",
    "change_effective_date": "The first day of the new visits",
}
NOT_DISCUSSED = "Confirm that the reduction was discussed with the person or their family"
MAX_REASON_TEXT = 1000
# What the page says when an action is done (``?done=`` is a code: anything else shows nothing).
DONE = {
    "approve": "The above-rate bid was approved: the package is placed with the bidder.",
    "first-approval": "Your approval was recorded as the first of two: the package waits for a second approver.",
    "reject": "The above-rate bid was refused: the package is unplaced.",
    "cancel": "The package was cancelled.",
    "reoffer": "The package is being offered to providers again.",
    "hand-back": "The hand-back was recorded: the package is being offered again.",
    "start": "The start of care was recorded.",
    "pause": "The package is paused.",
    "resume": "The visits start again.",
    "end": "The package was ended.",
    "change": "The change was offered to the provider.",
    "concern": "Your concern went to the safeguarding team. Only they can read it.",
}


def _date_answer(form: Mapping[str, Any], field: str) -> tuple[dt.date | None, bool]:
    """A GOV.UK date input's answer: (the date or None, whether anything was typed at all)."""
    parts = [str(form.get(f"{field}-{p}") or "").strip() for p in ("day", "month", "year")]
    return date_from_parts(*parts), any(parts)


def action_problems(
    action: str, form: Mapping[str, Any], *, package: Mapping[str, Any], today: dt.date
) -> dict[str, str]:
    """Everything wrong with an action's answers that the console can tell before asking the
    brokerage, at once, in the page's order (``ACTION_QUESTIONS``): blank answers, dates that are
    not dates or fall before the care started (``package``: the brokerage's view of it) or, for a
    start or a pause, in the future (``today``: the UK date), notes too long, and for a change the
    visits and hours (as the new-package form checks them)."""
    problems: dict[str, str] = {}
    for field, _ in ACTION_QUESTIONS.get(action, []):
        if field in DATE_NAMES:
            day, typed = _date_answer(form, field)
            if not typed and (action, field) in REQUIRED_ANSWERS:
                problems[field] = REQUIRED_ANSWERS[(action, field)]
            elif typed and day is None:
                problems[field] = f"{DATE_NAMES[field]} must be a real date"
        elif field == "reason_text":
            if len(str(form.get(field) or "").strip()) > MAX_REASON_TEXT:
                problems[field] = f"Notes must be {MAX_REASON_TEXT:,} characters or fewer"
            elif hidden := hidden_text_problem("Notes", str(form.get(field) or "").strip()):
                problems[field] = hidden
        elif not str(form.get(field) or "").strip() and (action, field) in REQUIRED_ANSWERS:
            problems[field] = REQUIRED_ANSWERS[(action, field)]
    started = _as_date(package.get("started_on"))
    paused = _as_date(package.get("paused_on"))
    for field in ("started_on", "paused_on"):
        day, _ = _date_answer(form, field)
        if field not in problems and day is not None and day > today and action in ("start", "pause"):
            problems[field] = f"{DATE_NAMES[field]} must be today or in the past"
    for field in ("paused_on", "effective_date", "change_effective_date"):
        day, _ = _date_answer(form, field)
        if field not in problems and day is not None and started is not None and day < started:
            problems[field] = f"{DATE_NAMES[field]} must be on or after the day care started ({started:%-d %B %Y})"
    day, _ = _date_answer(form, "resumed_on")
    if action == "resume" and "resumed_on" not in problems and day and paused and day < paused:
        problems["resumed_on"] = f"{DATE_NAMES['resumed_on']} must be on or after the pause began ({paused:%-d %B %Y})"
    if action == "change":
        problems |= _change_problems(form, package, problems)
    order = [f for f, _ in ACTION_QUESTIONS.get(action, [])]
    return {f: problems[f] for f in order if f in problems}


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _change_problems(form: Mapping[str, Any], package: Mapping[str, Any], found: Mapping[str, str]) -> dict[str, str]:
    problems: dict[str, str] = {}
    visits: dict[str, int] = {}
    for field in VISIT_RANGES:
        raw = str(form.get(field) or "").strip()
        if not raw:
            problems[field] = REQUIRED[field]
        else:
            number, problem = visit_number(field, raw)
            if problem:
                problems[field] = problem
            if number is not None:
                visits[field] = number
    raw_hours = str(form.get("hours_per_week") or "").strip()
    hours = hours_answer(raw_hours) if raw_hours else None
    if raw_hours and hours is None:
        problems["hours_per_week"] = "Hours per week must be a number, like 10.5"
    if not raw_hours:
        problems["hours_per_week"] = REQUIRED["hours_per_week"]
    elif hours is not None and (not hours.is_finite() or not 0 < hours <= MAX_HOURS):
        problems["hours_per_week"] = "Hours per week must be more than 0 and no more than 168"
    elif hours is not None and len(visits) == len(VISIT_RANGES):
        mismatch = hours_problem(hours, visits)
        if mismatch:
            problems["hours_per_week"] = mismatch
        else:
            before = (package.get("package") or {}).get("hours_per_week")
            if before and hours < Decimal(str(before)) and form.get("discussed_with_person") != "yes":
                problems["discussed_with_person"] = NOT_DISCUSSED
    return {k: v for k, v in problems.items() if k not in found}


# The brokerage's refusals, read by the field it names and the kind of rule it states (a code),
# never shown in its own words: the kinds, by a phrase each refusal of that kind carries.
# The brokerage's problem codes for a running package's refusals (services/runtime/problems.py
# TYPES) as the console's kinds of refusal: the console branches on codes, never on the API's words.
_REFUSAL_KINDS = {
    "date-before-start": "before_start",
    "date-before-pause": "before_pause",
    "date-in-future": "future",
    "date-too-far-back": "too_old",
    "date-too-far-ahead": "too_far_ahead",
    "hours-mismatch": "mismatch",
    "change-changes-nothing": "unchanged",
    "reduction-not-discussed": "not_discussed",
}
_DATE_REFUSALS = {
    "before_start": "{name} must be on or after the day care started",
    "before_pause": "{name} must be on or after the day the pause began",
    "future": "{name} must be today or in the past",
    "too_old": "{name} is too far in the past: the brokerage records dates only a few days back",
    "too_far_ahead": "{name} is too far ahead",
}
_CHANGE_REFUSALS = {
    "mismatch": ("hours_per_week", "Hours per week must match the visits (calls x minutes x carers x days)"),
    "unchanged": ("hours_per_week", "Change the hours or the visits: the change leaves them as they are"),
    "not_discussed": ("discussed_with_person", NOT_DISCUSSED),
}
# An action's form field for the field the API names, where they differ.
API_TO_FORM = {"change": {"effective_date": "change_effective_date", "visits": "hours_per_week"}}


def action_refusal(action: str, status: int, problem: Mapping[str, Any], now_status: str) -> dict[str, str]:
    """The brokerage's refusal of an action (its status and problem) in the console's words, by
    form field; ``status`` for a refusal about the package as a whole (``now_status``: the
    package's status as it is now). Unknown fields and kinds get a general message, never the
    API's text."""
    if status == 409:
        return {
            "status": f"This cannot be done now: the package is {now_status.replace('_', ' ')}. "
            "The page shows it as it is now."
        }
    if status == 403:
        return {"status": "Your role cannot do this"}
    problems: dict[str, str] = {}
    questions = {f for f, _ in ACTION_QUESTIONS.get(action, [])}
    kind = _REFUSAL_KINDS.get(str(problem.get("code") or ""))
    for item in problem.get("errors") or problem.get("fields") or []:
        api_field = str(item.get("field") or "").split(".")[0]
        field = API_TO_FORM.get(action, {}).get(api_field, api_field)
        if kind in _CHANGE_REFUSALS and action == "change":
            field, message = _CHANGE_REFUSALS[kind]
        elif field in DATE_NAMES and field in questions:
            message = _DATE_REFUSALS.get(kind or "", "{name} must be a real date").format(name=DATE_NAMES[field])
        elif field == "reason" and field in questions:
            message = REQUIRED_ANSWERS.get((action, "reason"), "Select a reason from the list")
        elif field in questions and field in LABELS:
            message = f"Check the answer to '{LABELS[field]}'"
        else:
            field, message = "status", "This could not be recorded. Check the answers and try again."
        problems.setdefault(field, message)
    if not problems:
        problems["status"] = "This could not be recorded. Check the answers and try again."
    order = ["status", *[f for f, _ in ACTION_QUESTIONS.get(action, [])]]
    return {f: problems[f] for f in order if f in problems}


def action_links(action: str) -> dict[str, str]:
    """The element the error summary links to for each of an action's fields."""
    return dict(ACTION_QUESTIONS.get(action, []))


def refusal(problem: dict[str, Any]) -> str:
    """One line for a refused action: the API's messages about the fields, else its error."""
    fields = problem.get("fields") or []
    message = "; ".join(str(f.get("message", "")).removeprefix("Value error, ") for f in fields)
    return (message or str(problem.get("error") or "The request was refused"))[:300]


# ---- above-rate approvals (the scheme of delegation, decision record 0052) -----------------------

PENNY = Decimal("0.01")
# The brokerage team's roles as a sentence names an approver.
APPROVER_WORDS = {
    "broker": "a broker",
    "senior_broker": "a senior broker",
    "manager": "a manager",
    "head_of_service": "the head of service",
}


@dataclass(frozen=True)
class FirstApproval:
    """A first approval of the bid awaiting a decision (decision record 0123): who, under which
    role's limit (per cent above the band rate; None: no limit), whether it covered the bid, when (UTC)."""

    approver: str
    role: str
    limit_percent: Decimal | None
    within_limit: bool
    approved_at: Any


@dataclass(frozen=True)
class AboveRate:
    """The facts of an above-rate bid awaiting a decision: pounds per hour and carer hours a week,
    and the first approval already recorded for it, if any."""

    provider_id: str
    hourly_rate: Decimal
    band_rate: Decimal
    hours_per_week: Decimal
    approvals: tuple[FirstApproval, ...] = ()

    @property
    def above_per_hour(self) -> Decimal:
        return self.hourly_rate - self.band_rate

    @property
    def above_percent(self) -> Decimal:
        """Per cent above the band rate, as the scheme of delegation measures it (unrounded)."""
        return self.above_per_hour / self.band_rate * 100 if self.band_rate else Decimal("Infinity")

    @property
    def weekly_cost(self) -> Decimal:
        return (self.hourly_rate * self.hours_per_week).quantize(PENNY)

    @property
    def weekly_at_band_rate(self) -> Decimal:
        return (self.band_rate * self.hours_per_week).quantize(PENNY)

    @property
    def weekly_difference(self) -> Decimal:
        return self.weekly_cost - self.weekly_at_band_rate


def _percent(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def above_rate_of(record: Mapping[str, Any] | None, hours_per_week: object) -> AboveRate | None:
    """The exception awaiting a decision in the brokerage's decision record (its ``exceptions``:
    the one without a decision), with the first approvals of that bid (its ``approvals``), or None.
    The bid is the best one above the rate at the time the exception was raised."""
    waiting = [e for e in (record or {}).get("exceptions") or [] if e.get("decision") is None]
    if not waiting:
        return None
    e = waiting[-1]
    rate = Decimal(str(e["hourly_rate"]))
    approvals = tuple(
        FirstApproval(
            a["approver"],
            a["approver_role"],
            _percent(a.get("limit_percent")),
            bool(a["within_limit"]),
            a["approved_at"],
        )
        for a in e.get("approvals") or []
        if a.get("step") == "first" and a["provider_id"] == e["provider_id"] and Decimal(str(a["hourly_rate"])) == rate
    )
    return AboveRate(e["provider_id"], rate, Decimal(str(e["band_rate"])), Decimal(str(hours_per_week)), approvals)


@dataclass(frozen=True)
class Authority:
    """What the signed-in member of staff may do with an above-rate bid, under the scheme of
    delegation as the brokerage applies it (decision records 0052 and 0123)."""

    limit_percent: Decimal | None  # their role's limit, per cent above the band rate; None: no limit
    listed: bool  # the scheme names their role (a role it does not name may approve nothing above the rate)
    own_request: bool  # they requested the package: nobody approves their own
    within_limit: bool
    approvers: list[str]  # the roles whose limit covers the bid
    already_approved: bool = False  # they recorded the first approval: the second is someone else's
    approvals_needed: int = 1  # two beyond the scheme's two_approvals_above_percent
    first_below_limit: bool = False  # the scheme lets an approver below the limit record a first approval
    earlier: tuple[FirstApproval, ...] = ()

    @property
    def outcome(self) -> str | None:
        """What approving would do: "place" (the package is placed), "first" (the first of two
        approvals: the package waits), or None (the brokerage would refuse it)."""
        if self.own_request or self.already_approved or not self.listed:
            return None
        signed = len(self.earlier) + 1
        if signed >= self.approvals_needed and (self.within_limit or any(a.within_limit for a in self.earlier)):
            return "place"
        if not self.earlier and (self.approvals_needed == 2 or self.first_below_limit):
            return "first"
        return None

    @property
    def may_approve(self) -> bool:
        return self.outcome is not None

    @property
    def waits_for(self) -> str:
        """Who the package would wait for after this person's first approval: "approver_within_limit"
        or "second_approver"."""
        covered = self.within_limit or any(a.within_limit for a in self.earlier)
        return "second_approver" if covered else "approver_within_limit"


def approval_authority(
    *,
    role: str | None,
    username: str | None,
    requested_by: str | None,
    bid: AboveRate,
    limits: Mapping[str, Any],
    second_approver: Mapping[str, Any] | None = None,
) -> Authority:
    """The scheme of delegation (``limits``: role -> per cent above the band rate, None for no
    limit; ``second_approver``: its first_approval_below_limit and two_approvals_above_percent;
    deploy/reference/delegation.yaml, served by the brokerage) applied to ``bid`` for the signed-in
    ``role``, with the first approvals already recorded, and nobody approving their own request or
    twice: the brokerage's own rule (services/brokerage/domain.py approval_step), shown before anyone
    tries."""

    def covers(limit: object) -> bool:
        return limit is None or bid.above_percent <= Decimal(str(limit))

    second = second_approver or {}
    always = _percent(second.get("two_approvals_above_percent"))
    listed = role in limits
    limit = limits.get(role) if listed and role else None
    return Authority(
        limit_percent=None if limit is None else Decimal(str(limit)),
        listed=listed,
        own_request=bool(username) and username == requested_by,
        within_limit=listed and covers(limit),
        approvers=[r for r in APPROVER_WORDS if r in limits and covers(limits[r])],
        already_approved=bool(username) and any(a.approver == username for a in bid.approvals),
        approvals_needed=2 if always is not None and bid.above_percent > always else 1,
        first_below_limit=bool(second.get("first_approval_below_limit")),
        earlier=bid.approvals,
    )


def approvers_words(roles: Sequence[str]) -> str:
    """["manager", "head_of_service"] -> "a manager or the head of service"."""
    words = [APPROVER_WORDS.get(r, r.replace("_", " ")) for r in roles]
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 2 else words) or "nobody in the scheme"


def limit_words(limit_percent: object) -> str:
    """A role's limit as people read it: "up to 5% above the band rate", or "no limit"."""
    if limit_percent is None:
        return "no limit"
    return f"up to {Decimal(str(limit_percent)).normalize():f}% above the band rate"


def still_needed(authority: Authority, approvers: str) -> str:
    """What the bid still needs before it is placed, in words (the decision and package pages)."""
    if authority.earlier:
        if any(a.within_limit for a in authority.earlier):
            return "A second approval by someone else in the scheme of delegation."
        return f"A second approval by someone else whose limit covers it: {approvers}."
    if authority.approvals_needed == 2:
        return f"Two approvals by different people, at least one of them {approvers}."
    return f"One approval by {approvers}."


# ---- operations' health at a glance ------------------------------------------------------------

# A consumer group is behind when a partition has this many events not yet processed, or its
# oldest unprocessed event is this old (seconds): the alerting rules' figures (deploy/monitoring).
LAG_EVENTS = 100
LAG_AGE_SECONDS = 60.0
HEALTH_TTL = dt.timedelta(seconds=15)  # the overview and the menu's badge read Kafka at most this often


def lagging_groups(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The consumer groups with a partition behind the threshold, by name."""
    behind = {
        r["group"]
        for r in rows
        if (r.get("lag") or 0) >= LAG_EVENTS or (r.get("oldest_unprocessed_age_s") or 0) >= LAG_AGE_SECONDS
    }
    return sorted(behind)


@dataclass(frozen=True)
class Health:
    """What operations must see at once: each a count (None: could not be read) and where its detail is."""

    at: dt.datetime
    dead_letters: int | None
    failed_notifications: int | None
    lagging: list[str] | None  # consumer groups behind the threshold
    services: list[dict[str, Any]]  # {"name", "ready": bool, "problem": str | None}
    # What the counts were read from, for the lag and dead-letter pages (None: could not be read).
    lag_rows: list[dict[str, Any]] | None = None
    letters: list[tuple[int, int, Any]] | None = None  # (partition, offset, DeadLetter), oldest first

    @property
    def not_ready(self) -> list[str]:
        return [s["name"] for s in self.services if not s["ready"]]

    def problems(self) -> list[dict[str, Any]]:
        """Each thing that is wrong (or could not be checked): {"count", "words", "href"}."""
        found: list[dict[str, Any]] = []
        for count, one, many, href in (
            (self.dead_letters, "dead letter", "dead letters", "/ops/dead-letters"),
            (self.failed_notifications, "failed notification", "failed notifications", "/ops/notifications"),
            (
                None if self.lagging is None else len(self.lagging),
                "consumer group behind",
                "consumer groups behind",
                "/ops/lag?behind=1",
            ),
            (len(self.not_ready), "service not ready", "services not ready", "/ops#services"),
        ):
            if count is None:
                found.append({"count": None, "words": f"{many} could not be checked", "href": href})
            elif count:
                found.append({"count": count, "words": f"{count} {one if count == 1 else many}", "href": href})
        return found


# ---- applications to join the framework (issue 21, decision records 0112-0114) --------------------


def application_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """The providers API's application from the new-application form (the API names what is wrong):
    ticked boxes as lists, the receipt date from its three boxes, the adapter's kind and address."""

    def ticked(name: str) -> list[str]:
        value = form.get(name) or []
        return [value] if isinstance(value, str) else list(value)

    received = date_from_parts(form.get("received_on-day"), form.get("received_on-month"), form.get("received_on-year"))
    adapter: dict[str, Any] = {"kind": str(form.get("adapter_kind") or "automatic")}
    if str(form.get("webhook_url") or "").strip():
        adapter["webhook_url"] = str(form.get("webhook_url")).strip()
    return {
        "provider_id": str(form.get("provider_id") or "").strip().lower(),
        "name": str(form.get("name") or "").strip(),
        "zones": ticked("zones"),
        "bands": ticked("bands"),
        "skills": ticked("skills"),
        "double_handed": form.get("double_handed") == "yes",
        "weekly_capacity_hours": str(form.get("weekly_capacity_hours") or "").strip(),
        "cqc_location_id": str(form.get("cqc_location_id") or "").strip(),
        "cqc_rating": str(form.get("cqc_rating") or "not_yet_rated"),
        "adapter": adapter,
        "tender_reference": str(form.get("tender_reference") or "").strip(),
        "received_on": received.isoformat() if received else "",
    }


def application_errors(problem: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The API's refusal as the form's errors: ``({form field: message}, [messages about no field])``.
    ``zones.1`` is the zones question, ``adapter.webhook_url`` the address box; a checklist item
    (``checklist.insurance``) or a refusal with no field is a general message."""
    errors: dict[str, str] = {}
    general: list[str] = []
    for f in problem.get("errors") or []:
        field, detail = str(f.get("field") or ""), str(f.get("detail") or "").removeprefix("Value error, ")
        name = "webhook_url" if field.startswith("adapter") else field.split(".")[0]
        if not field or name == "checklist":
            general.append(detail)
        else:
            errors.setdefault(name, detail)
    if not errors and not general:
        general.append(str(problem.get("detail") or problem.get("error") or "The request was refused"))
    return errors, general


# ---- safeguarding concerns (decision records 0106-0108) -------------------------------------------

CONCERN_CATEGORIES = [
    "neglect",
    "physical",
    "psychological",
    "financial_or_material",
    "sexual",
    "domestic",
    "organisational",
    "discriminatory",
    "modern_slavery",
    "self_neglect",
]
PAUSE_REASONS = ["immediate_risk", "organisational_enquiry", "provider_investigation", "whistleblowing"]
CONCERN_OUTCOMES = [
    "threshold_not_met",
    "transferred_to_locality",
    "no_risk_identified",
    "risk_removed",
    "risk_reduced",
    "risk_remains",
]
MAX_CONCERN_DETAILS = 5000
MAX_ADULT_AT_RISK = 200


def concern_request(
    form: Mapping[str, Any], package: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The providers API's concern body from the package page's form, or every problem at once (in the
    form's order). The subject is the package and, when ticked, the provider it is placed with."""
    problems: dict[str, str] = {}
    category = str(form.get("category", ""))
    details = str(form.get("details", "")).strip()
    adult = str(form.get("adult_at_risk", "")).strip()
    if category not in CONCERN_CATEGORIES:
        problems["category"] = "Select what kind of harm or neglect it is"
    if not details:
        problems["details"] = "Describe what happened or what you saw"
    elif len(details) > MAX_CONCERN_DETAILS:
        problems["details"] = f"The description must be {MAX_CONCERN_DETAILS} characters or fewer"
    if len(adult) > MAX_ADULT_AT_RISK:
        problems["adult_at_risk"] = f"The name must be {MAX_ADULT_AT_RISK} characters or fewer"
    if problems:
        return None, problems
    subject: dict[str, Any] = {"package_id": str(package["package_id"])}
    if form.get("about_provider") == "yes" and package.get("provider_id"):
        subject["provider_id"] = package["provider_id"]
    body: dict[str, Any] = {
        "subject": subject,
        "category": category,
        "details": details,
        "immediate_risk": form.get("immediate_risk") == "yes",
    }
    if adult:
        body["adult_at_risk"] = adult
    return body, {}


# ---- the provider portal's answers (issue 19: an inbox, a safe decline) -------------------------

DECLINE_WORDS = {
    "capacity": "We do not have the capacity",
    "geography": "We do not cover where the person lives",
    "call_times": "We cannot make the call times",
    "skills": "We do not have the skills the person needs",
    "price": "We cannot deliver it at the band rate",
    "other": "Another reason (say why below)",
}
_RATE = re.compile(r"^\d{1,3}(\.\d{1,2})?\Z", re.ASCII)  # 0-9 alone (decision 0154)


def time_left(closes_at: dt.datetime, now: dt.datetime) -> str:
    """The time left to answer an offer, in words: "3 h 05 min left", "closed"."""
    return "closed" if closes_at <= now else f"{waited(now, closes_at)} left"


def portal_answer_problems(answer: str, values: Mapping[str, str]) -> dict[str, str]:
    """Every problem with a bid or decline typed in the portal, by field, before the provider API
    is asked: a decline needs a reason chosen (no default: a slip of the mouse must not decline
    for "capacity"), "other" needs the words; a bid needs a rate in pounds and pence and a real date."""
    problems: dict[str, str] = {}
    if answer == "decline":
        reason = values.get("reason", "")
        if reason not in DECLINE_WORDS:
            problems["reason"] = "Select why you are declining this offer"
        elif reason == "other" and not values.get("text", "").strip():
            problems["text"] = "Say why you are declining: you chose 'another reason'"
        return problems
    rate = values.get("rate", "").strip().lstrip("£")
    if not rate:
        problems["rate"] = "Enter your hourly rate"
    elif not _RATE.match(rate) or Decimal(rate) <= 0:
        problems["rate"] = "Enter the hourly rate in pounds and pence, like 19.95"
    if (
        date_from_parts(
            values.get("earliest_start-day"), values.get("earliest_start-month"), values.get("earliest_start-year")
        )
        is None
    ):
        problems["earliest_start"] = "Enter the earliest start as a real date, like 27 3 2027"
    return problems


def portal_answer_body(answer: str, values: Mapping[str, str]) -> dict[str, str]:
    """The provider API's body for an answer whose :func:`portal_answer_problems` were none."""
    if answer == "decline":
        return {"reason": values["reason"], "text": values.get("text", "").strip()}
    start = date_from_parts(
        values.get("earliest_start-day"), values.get("earliest_start-month"), values.get("earliest_start-year")
    )
    return {"rate": values["rate"].strip().lstrip("£"), "earliest_start": start.isoformat() if start else ""}


# The provider API's refusals of an answer (problem codes, services/runtime/problems.py) in the
# portal's words: about the offer as a whole ("status"), or about a field.
_PORTAL_REFUSALS = {
    "offer-closed": ("status", "This offer has closed: answers are no longer taken"),
    "already-answered": ("status", "You have already answered this offer"),
    "automatic-adapter": ("status", "Your organisation answers offers automatically: ask your administrator"),
    "capacity-short": ("status", "You do not have enough free hours for this package: update your capacity first"),
    "invalid-date": ("earliest_start", "The earliest start must be from today and within the dates the offer allows"),
}


def portal_refusal(answer: str, status: int, problem: Mapping[str, Any]) -> dict[str, str]:
    """The provider API's refusal of a bid or decline, by field, from its problem code (never its words)."""
    code = str(problem.get("code") or "")
    if status == 404:
        return {"status": "This package was not offered to you"}
    if code in _PORTAL_REFUSALS:
        field, message = _PORTAL_REFUSALS[code]
        return {field: message}
    fields = {str(f.get("field") or "").split(".")[0] for f in problem.get("errors") or problem.get("fields") or []}
    if status == 422 and "rate" in fields:
        return {"rate": "Enter the hourly rate in pounds and pence, like 19.95"}
    if status == 422 and "reason" in fields:
        return {"reason": "Select why you are declining this offer"}
    return {"status": "Your answer could not be sent. Check it and try again."}


# ---- the portal's history and its named users (decisions 0126, 0127) ------------------------------

# Why an offer closed (the closing notice's reason codes, schemas/adapters.py OfferClosedReason).
CLOSED_WORDS = {
    "placed_with_you": "Placed with you",
    "placed_elsewhere": "Placed with another provider",
    "window_ended": "The time to answer ended",
    "round_closed_early": "Closed early: the outcome could no longer change",
    "package_cancelled": "Withdrawn: the council cancelled the package",
    "package_unplaced": "Withdrawn: no placement this round; the package waits to be offered again",
}


def history_words(entry: Mapping[str, Any]) -> dict[str, str]:
    """A history entry's answer and outcome in the portal's words: ``answer`` ("Bid £19.95 an hour",
    "Declined: ..."), ``outcome`` (a tag's words), ``colour`` (the GOV.UK tag colour) and ``detail``
    (why it closed, or a lost bid's rank, never the winner's price)."""
    if entry.get("answer") == "bid":
        answer = f"Bid £{entry.get('hourly_rate')} an hour"
    elif entry.get("answer") == "declined":
        reason = str(entry.get("decline_reason") or "")
        answer = "Declined: " + DECLINE_WORDS.get(reason, reason.replace("_", " ")).removesuffix(" (say why below)")
    else:
        answer = "Not answered"
    outcome = str(entry.get("outcome") or "")
    tag, colour = {
        "won": ("Won", "green"),
        "lost": ("Lost", "orange"),
        "closed": ("Closed", "grey"),
        "declined": ("Declined", "grey"),
        "unanswered": ("Not answered in time", "red"),
        "awaiting": ("Awaiting the award", "blue"),
    }.get(outcome, (outcome.replace("_", " ").capitalize(), "grey"))
    detail = ""
    if outcome == "lost" and entry.get("rank"):
        detail = f"Your bid ranked {entry['rank']} of {entry.get('ranked_bids') or entry['rank']}"
    elif entry.get("closed_reason"):
        detail = CLOSED_WORDS.get(str(entry["closed_reason"]), str(entry["closed_reason"]).replace("_", " "))
    return {"answer": answer, "outcome": tag, "colour": colour, "detail": detail}


PROVIDER_USER_ROLES = {
    "staff": "Staff: answers offers",
    "admin": "Admin: answers offers and adds or removes users",
}
_PORTAL_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")


def provider_user_problems(values: Mapping[str, str]) -> dict[str, str]:
    """Every problem with a new user's answers in the portal, in the form's order."""
    problems: dict[str, str] = {}
    if not _PORTAL_USERNAME.match(values.get("username", "")):
        problems["username"] = (
            "Enter their username at the sign-in service, like sam.carer or sam@agency.example (no spaces)"
        )
    name = values.get("name", "")
    if not name:
        problems["name"] = "Enter their name, as it should be shown with their answers"
    elif len(name) > 200:
        problems["name"] = "The name must be 200 characters or fewer"
    if values.get("role") not in PROVIDER_USER_ROLES:
        problems["role"] = "Select what they may do"
    return problems


def provider_user_refusal(status: int, problem: Mapping[str, Any]) -> dict[str, str]:
    """The provider API's refusal of adding or removing a user, in the portal's words from its code."""
    code = problem.get("code")
    if code == "user-exists":
        return {"username": "That person is already a provider's user: they must be removed there first"}
    if code == "own-user":
        return {"status": "You cannot remove yourself: ask another admin user of your organisation"}
    if status == 404:
        return {"status": "That user is no longer one of your organisation's users"}
    if status == 422:
        # The field the API names, in the form's words (found by an attack: a name holding a direction
        # override was the API's 422 naming name, and the page said only "could not be made").
        words = {
            "username": "Enter their username at the sign-in service, like sam.carer or sam@agency.example (no spaces)",
            "name": "Enter their name in letters people can see, up to 200 characters (no control or direction marks)",
            "role": "Select what they may do",
        }
        named = {str(f.get("field") or "") for f in problem.get("errors") or problem.get("fields") or []}
        found = {field: words[field] for field in words if field in named}
        if found:
            return found
    return {"status": "The change could not be made. Check the answers and try again."}


# ---- administration of the framework's providers (issue 19) ---------------------------------------

PROVIDER_STATUS_WORDS = {
    "active": "Active on the framework (reinstate)",
    "suspended": "Suspended: no new offers; its packages stay with it",
    "left": "Left the framework: its packages are offered again (final)",
}
PROVIDER_DONE_WORDS = {"status": "The provider's status was changed.", "revoked": "The credential was revoked."}


def provider_status_problems(values: Mapping[str, str]) -> dict[str, str]:
    """Every problem with a provider status decision, in the form's order, before the API is asked."""
    problems: dict[str, str] = {}
    if values.get("status") not in PROVIDER_STATUS_WORDS:
        problems["status"] = "Select the provider's new status"
    reason = values.get("reason", "")
    if not reason:
        problems["reason"] = "Say why: it is kept in the provider's status history"
    elif len(reason) > 500:
        problems["reason"] = "The reason must be 500 characters or fewer"
    return problems


def provider_status_refusal(status: int, problem: Mapping[str, Any]) -> dict[str, str]:
    """The providers API's refusal of a status change, in the console's words from its code."""
    if problem.get("code") == "status-not-allowed":
        return {"status": "The provider's status cannot change that way (a provider that left cannot come back)"}
    return {"status": "The change could not be recorded. Check the answers and try again."}


def change_request_refusal(status: int, problem: Mapping[str, Any]) -> str:
    """The providers API's refusal of a coverage decision, from its code."""
    if problem.get("code") == "change-request-decided":
        return "This request was already decided: the list shows it as it is now."
    return "The decision could not be recorded. Try again."


# ---- the disclosure log, rate cards and approval limits (read-only admin pages) -----------------

DISCLOSURES_PER_PAGE = 50
READERS = {"staff": "Brokerage staff", "provider": "Providers"}


def disclosed_words(fields: Sequence[str]) -> str:
    """The fields a disclosure showed, in people's words: "NHS number, Full name", or "a search by
    NHS number" for a person search that found the package (``search:<field>``, decision 0083)."""
    words = []
    for f in fields:
        kind, _, searched = str(f).partition(":")
        if kind == "search" and searched:
            label = LABELS.get(f"person_{searched}", searched.replace("_", " "))
            words.append(f"A search by {label if label.isupper() or label.startswith('NHS') else label.lower()}")
        else:
            words.append(LABELS.get(f"person_{f}", str(f).replace("_", " ").capitalize()))
    return ", ".join(words) or "-"


def _day_answer(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def disclosure_filters(query: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The disclosure log page's filters (its query string) as the brokerage API's parameters
    (GET /disclosures), every problem at once in plain words (field -> message, in the form's order),
    and the answers as typed. Dates are UK dates written YYYY-MM-DD; 50 rows a page."""
    values = {k: str(query.get(k) or "").strip() for k in ("package", "reader", "who", "from", "to", "page")}
    params: dict[str, Any] = {}
    problems: dict[str, str] = {}
    if values["package"]:
        try:
            params["package_id"] = str(uuid.UUID(values["package"]))
        except ValueError:
            problems["package"] = "Enter the package's full reference, like 6f1c2a52-8c1e-4a55-9d6b-1f6f0c1d2e3a"
    if values["reader"] in READERS:
        params["reader"] = values["reader"]
    if values["who"]:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}", values["who"]):
            params["who"] = values["who"]
        else:
            problems["who"] = "Enter a username or a provider's id, without spaces"
    days: dict[str, dt.date] = {}
    for field, name in (("from", "from"), ("to", "to")):
        if values[field]:
            day = _day_answer(values[field])
            if day is None:
                problems[field] = f"Enter the {name} date as year-month-day, like 2026-03-27"
            else:
                days[field] = day
                params[field] = day.isoformat()
    if "from" in days and "to" in days and days["from"] > days["to"]:
        problems["to"] = "The to date must be the same as or after the from date"
    page = page_number(values["page"])
    params |= {"limit": DISCLOSURES_PER_PAGE, "offset": (page - 1) * DISCLOSURES_PER_PAGE}
    values["page"] = str(page)
    return params, problems, values


def rate_card_rows(cards: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The bands (columns, in the framework's order: urban, fringe, rural, isolated first) and one row
    per rate card, newest first, as the brokerage serves them (GET /reference/rate-cards)."""
    order = ["urban", "fringe", "rural", "isolated"]
    bands = sorted(
        {b for c in cards for b in c.get("rates", {})}, key=lambda b: (order.index(b) if b in order else 9, b)
    )
    return bands, [dict(c) for c in cards]


def limit_rows(scheme: Mapping[str, Any], role: str | None) -> list[dict[str, Any]]:
    """The scheme of delegation as rows (role, its limit in words, whether it is the signed-in role's),
    highest limit last, "no limit" at the end."""
    limits = scheme.get("limits_percent") or {}
    api_role = {"admin": "council_admin", "ops": "operations"}.get(str(role), role)

    def order(item: tuple[str, Any]) -> tuple[int, Decimal]:
        return (1, Decimal(0)) if item[1] is None else (0, Decimal(str(item[1])))

    return [{"role": r, "words": limit_words(v), "mine": r == api_role} for r, v in sorted(limits.items(), key=order)]
