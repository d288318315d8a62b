"""Providers' rules: the automatic adapter's decision and capacity bookkeeping. No I/O.

An automatic adapter answers an offer the way the provider told it to: it bids at the
framework rate (plus the provider's premium for the band, if it set one) when the package
fits its zones, bands, skills, package size, call times and free capacity; otherwise it
declines with the reason code from the framework's fixed list.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import re
import secrets
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from schemas.events import PackageSpec, ProviderProfile
from schemas.fields import escaped
from schemas.vocabulary import DeclineReason
from services.runtime import permissions
from services.runtime.fields import DIGITS_0_TO_9
from services.runtime.reference import JoiningTerms, ReopeningWindow

AdapterKind = Literal["automatic", "webhook", "portal"]
# The daily call slots of home care rounds; a provider says which it can cover.
CallSlot = Literal["early_morning", "morning", "lunch", "tea", "bed", "night"]


class AutomaticRules(BaseModel):
    """A provider's adapter (kept in its registry entry): its kind, and the automatic adapter's rules.

    ``webhook``: offers are POSTed to ``webhook_url``; ``portal``: staff answer in the provider API.
    Either way the provider answers through ``POST /me/offers/{package_id}/bid|decline``."""

    kind: AdapterKind = "automatic"
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description="Where offers are POSTed (https in production)",
    )
    call_times: list[CallSlot] | None = Field(default=None, description="Call slots it covers (unset: any)")
    max_package_hours: Annotated[Decimal, Field(gt=0), DIGITS_0_TO_9] = Decimal(42)
    max_calls_per_day: StrictInt = Field(default=4, ge=1, le=6)
    premium_percent: dict[str, Annotated[Decimal, DIGITS_0_TO_9]] = Field(default_factory=dict)
    lead_days: StrictInt = Field(default=0, ge=0, le=28, description="Days' notice it needs before a start")
    covers_adjacent_zones: StrictBool = Field(default=False, description="Takes work just outside its zones when asked")


@dataclass(frozen=True)
class Bid:
    hourly_rate: Decimal
    earliest_start: dt.date


@dataclass(frozen=True)
class Decline:
    reason: DeclineReason
    text: str


def free_hours(profile: ProviderProfile, held_hours: Decimal) -> Decimal:
    """Capacity not yet committed to placements nor held for outstanding bids."""
    return profile.weekly_capacity_hours - profile.committed_hours - held_hours


def automatic_answer(
    profile: ProviderProfile,
    rules: AutomaticRules,
    package: PackageSpec,
    band_rate: Decimal,
    held_hours: Decimal,
    today: dt.date,
    *,
    neighbouring: frozenset[str] = frozenset(),
) -> Bid | Decline:
    """``neighbouring``: the zones next to the package's zone (an escalated offer may come from there)."""
    declined = standing_decline(profile, rules, package, neighbouring=neighbouring)
    if declined is not None:
        return declined
    if free_hours(profile, held_hours) < package.hours_per_week:
        return Decline(DeclineReason.capacity, "no free capacity for the hours")
    premium = rules.premium_percent.get(package.band.value, Decimal(0))
    rate = (band_rate * (1 + Decimal(premium) / 100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    earliest = max(package.start_date, today + dt.timedelta(days=rules.lead_days))
    return Bid(hourly_rate=rate, earliest_start=earliest)


def standing_decline(
    profile: ProviderProfile, rules: AutomaticRules, package: PackageSpec, *, neighbouring: frozenset[str] = frozenset()
) -> Decline | None:
    """The adapter's declines that do not depend on the provider's caseload (everything but free
    capacity), in the order it checks them; None when only capacity could still decline. The
    policy simulator uses it to know an answer in advance."""
    if profile.status != "active":
        return Decline(DeclineReason.other, f"provider is {profile.status}")
    nearby = rules.covers_adjacent_zones and bool(set(profile.zones) & neighbouring)
    if package.zone not in profile.zones and not nearby:
        return Decline(DeclineReason.geography, f"does not cover {package.zone}")
    if package.band not in profile.bands:
        return Decline(DeclineReason.geography, f"does not cover {package.band} areas")
    missing = sorted(set(package.needs) - set(profile.skills))
    if missing or (package.visits.double_handed and not profile.double_handed):
        what = ", ".join(missing) if missing else "double-handed calls"
        return Decline(DeclineReason.skills, f"cannot meet: {what}")
    if package.visits.calls_per_day > max_calls(rules):
        return Decline(DeclineReason.call_times, f"covers at most {max_calls(rules)} calls a day")
    if package.hours_per_week > rules.max_package_hours:
        return Decline(DeclineReason.capacity, f"takes packages up to {rules.max_package_hours} h/week")
    return None


def automatic_change_answer(
    profile: ProviderProfile,
    rules: AutomaticRules,
    changed: PackageSpec,
    previous_hours: Decimal,
    held_hours: Decimal,
    *,
    neighbouring: frozenset[str] = frozenset(),
) -> Decline | None:
    """An automatic adapter's answer to a change of a package it holds (decision record 0082): None to
    accept, else the decline. It takes the changed package on the rules it would offer it on (zones,
    bands, skills, calls a day, package size), and an increase only with free capacity for the extra
    hours - a reduction always fits."""
    declined = standing_decline(profile, rules, changed, neighbouring=neighbouring)
    if declined is not None:
        return declined
    extra = changed.hours_per_week - previous_hours
    if extra > 0 and free_hours(profile, held_hours) < extra:
        return Decline(DeclineReason.capacity, f"no free capacity for {extra} more hours a week")
    return None


def committed_after_change(committed: Decimal, placement_hours: Decimal, previous: Decimal, new: Decimal) -> Decimal:
    """A provider's committed hours (carer hours per week) after a change its live placement accepted:
    moved by the difference. A change made for other hours than the placement's (a stale or replayed
    one) moves nothing. Committed hours stay the sum of the live placements' current hours."""
    if placement_hours != previous:
        return committed
    return committed + (new - previous)


class StatusRefused(ValueError):
    """A change of framework membership the rules do not allow (HTTP 409)."""


def check_status_change(provider_id: str, current: str, new: str) -> None:
    """Suspended <-> active as often as the council decides; leaving the framework is final."""
    if current == "left":
        raise StatusRefused(f"provider {provider_id} left the framework; it cannot become {new}")
    if current == new:
        raise StatusRefused(f"provider {provider_id} is already {new}")


def max_calls(rules: AutomaticRules) -> int:
    """Calls a day it can make: its own limit, and no more than the call slots it covers."""
    return (
        rules.max_calls_per_day
        if rules.call_times is None
        else min(rules.max_calls_per_day, len(set(rules.call_times)))
    )


# ---- joining the framework (decision records 0112-0114) -----------------------------------


class RefusalReason(StrEnum):
    """Why the council refused an application to join the framework (a code; the words stay in the
    application's note)."""

    due_diligence_failed = "due_diligence_failed"  # an item of the checklist failed
    not_cqc_registered = "not_cqc_registered"  # no CQC registration for personal care
    quality_concerns = "quality_concerns"  # CQC rating or inspection findings below the framework's standard
    insufficient_insurance = "insufficient_insurance"
    references_unsatisfactory = "references_unsatisfactory"
    no_need_in_zones = "no_need_in_zones"  # supply in the zones it applied for meets demand
    incomplete_application = "incomplete_application"
    withdrawn_by_provider = "withdrawn_by_provider"


CheckOutcome = Literal["passed", "failed"]
ItemState = Literal["passed", "failed", "missing"]
# A new provider joins as Supplementary: the Prime tier is awarded by the tender per zone
# (004:967-968); the council may make it Prime later. Its local risk is "medium" until the
# contracts and quality team reviews it (decision record 0113).
JOINING_TIER = "supplementary"
JOINING_LOCAL_RISK = "medium"


class JoiningRefused(ValueError):
    """A joining step the rules refuse: an HTTP ``status`` with a problem ``code`` and the request
    ``field`` at fault (services/runtime/problems.py)."""

    def __init__(self, message: str, *, code: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.field, self.status = code, field, status


def window_for(terms: JoiningTerms, received_on: dt.date, today: dt.date) -> ReopeningWindow:
    """The re-opening window an application received on ``received_on`` (a UK date, the tender
    portal's receipt) falls in. Raises :class:`JoiningRefused` (422, ``received_on``) for a date
    after ``today`` or outside every window, naming the windows either side (decision 0114)."""
    if received_on > today:
        raise JoiningRefused(
            f"received_on {received_on} is after today ({today}, UK)", code="invalid-date", field="received_on"
        )
    for window in terms.windows:
        if window.contains(received_on):
            return window
    before = [w for w in terms.windows if w.closes_on < received_on]
    after = [w for w in terms.windows if w.opens_on > received_on]
    around = []
    if before:
        around.append(f"the last window before it, {before[-1].id}, closed on {before[-1].closes_on}")
    if after:
        around.append(f"the next, {after[0].id}, opens on {after[0].opens_on}")
    raise JoiningRefused(
        f"received_on {received_on} is outside the framework's re-opening windows"
        + (f": {'; '.join(around)}" if around else " (none is configured)"),
        code="outside-window",
        field="received_on",
    )


def unknown_zones(zones: Iterable[str], known: Iterable[str]) -> None:
    """Raises :class:`JoiningRefused` (422, ``zones``) naming the first zone the framework does not have."""
    names = set(known)
    for i, zone in enumerate(zones):
        if zone not in names:
            raise JoiningRefused(f"no zone {zone!r} in the framework", code="unknown-zone", field=f"zones.{i}")


def check_review(terms: JoiningTerms, item: str, reviewed_on: dt.date, received_on: dt.date, today: dt.date) -> None:
    """A due-diligence check being recorded: an item of the configured checklist (else 422 ``item``),
    reviewed on a UK date from the application's receipt up to today (else 422 ``reviewed_on``)."""
    if item not in terms.item_ids():
        raise JoiningRefused(
            f"no checklist item {item!r}; the checklist is: {', '.join(terms.item_ids())}",
            code="invalid-request",
            field="item",
        )
    if reviewed_on > today:
        raise JoiningRefused(
            f"reviewed_on {reviewed_on} is after today ({today}, UK)", code="invalid-date", field="reviewed_on"
        )
    if reviewed_on < received_on:
        raise JoiningRefused(
            f"reviewed_on {reviewed_on} is before the application was received ({received_on})",
            code="invalid-date",
            field="reviewed_on",
        )


def checklist_state(terms: JoiningTerms, latest: Mapping[str, CheckOutcome]) -> dict[str, ItemState]:
    """Each configured item's state from its latest check (``latest``: item -> outcome), in the
    checklist's order; an item never checked is missing. Checks of items no longer configured are
    left out (they neither help nor block an approval)."""
    return {item: latest.get(item, "missing") for item in terms.item_ids()}


def check_approval(terms: JoiningTerms, latest: Mapping[str, CheckOutcome], cqc_rating: str) -> None:
    """An approval needs every configured item's latest check passed. Raises :class:`JoiningRefused`
    (422, code ``checklist-incomplete``) naming the first item missing or failed as the field
    ``checklist.<item>``, and every such item in the message (decision record 0113); then 422
    ``cqc_rating`` for a provider rated Inadequate, whom the brokerage would never offer to (its
    screening excludes Inadequate: services/brokerage/domain.py)."""
    blocking = [(item, state) for item, state in checklist_state(terms, latest).items() if state != "passed"]
    if blocking:
        raise JoiningRefused(
            "the due-diligence checklist is not complete: "
            + ", ".join(f"{item} is {state}" for item, state in blocking),
            code="checklist-incomplete",
            field=f"checklist.{blocking[0][0]}",
        )
    if cqc_rating == "inadequate":
        raise JoiningRefused(
            "a provider rated Inadequate by the CQC cannot join the framework",
            code="invalid-request",
            field="cqc_rating",
        )


def check_undecided(application_id: object, status: str) -> None:
    """Checks, approvals and refusals are for a received application only (409 once decided)."""
    if status != "received":
        raise JoiningRefused(
            f"application {application_id} was already {status}", code="application-decided", status=409
        )


def joining_entry(application: Mapping[str, Any]) -> dict[str, Any]:
    """The registry entry of an approved application, in the seed's shape (repository.insert_provider):
    active, Supplementary, its zones, bands, skills, capacity, CQC rating and adapter; nothing
    committed yet and no hand-backs."""
    return {
        "provider_id": application["provider_id"],
        "name": application["name"],
        "tier": JOINING_TIER,
        "status": "active",
        "zones": list(application["zones"]),
        "bands": list(application["bands"]),
        "skills": list(application["skills"]),
        "double_handed": application["double_handed"],
        "cqc_rating": application["cqc_rating"],
        "local_risk": JOINING_LOCAL_RISK,
        "hand_backs_12m": 0,
        "hand_back_dates": [],
        "weekly_capacity_hours": application["weekly_capacity_hours"],
        "committed_hours": 0,
        "adapter": application["adapter"],
    }


# ---- provider API credentials -------------------------------------------------------------
# A token is ``hcp_<credential id>_<secret>``: the id finds the row, the secret is 256 random bits
# of which only a SHA-256 is stored (no password-hashing cost is needed for a secret nobody chose).

TOKEN_PREFIX = permissions.PROVIDER_TOKEN_PREFIX.removesuffix("_")  # "hcp": one place says how a token begins


@dataclass(frozen=True)
class IssuedCredential:
    credential_id: str
    token: str
    secret_sha256: str


def issue_credential() -> IssuedCredential:
    credential_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedCredential(credential_id, f"{TOKEN_PREFIX}_{credential_id}_{secret}", secret_digest(secret))


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(credential id, secret) of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(secret_digest(secret), stored_sha256)


# ---- safeguarding concerns (decision records 0106-0108) ------------------------------------
# Fixed vocabularies: a concern's category, a pause's reason and an enquiry's outcome are codes, so
# what can be counted and shown outside the safeguarding team never carries anyone's words.


class ConcernCategory(StrEnum):
    """The categories of abuse and neglect of the Care Act 2014's statutory guidance (para 14.17),
    which the council's safeguarding enquiries use (004:702, 004:805)."""

    physical = "physical"
    domestic = "domestic"
    sexual = "sexual"
    psychological = "psychological"
    financial_or_material = "financial_or_material"
    modern_slavery = "modern_slavery"
    discriminatory = "discriminatory"
    organisational = "organisational"
    neglect = "neglect"
    self_neglect = "self_neglect"


class OfferPauseReason(StrEnum):
    """Why the safeguarding team paused new offers to a provider pending the enquiry."""

    immediate_risk = "immediate_risk"  # identify and take steps to address any immediate risk (004:742)
    organisational_enquiry = "organisational_enquiry"  # a large-scale organisational enquiry (004:815-816)
    provider_investigation = "provider_investigation"  # the provider's internal investigation first (004:755)
    whistleblowing = "whistleblowing"  # a whistle-blower's report needing visits (004:756)


class ConcernOutcome(StrEnum):
    """How a concern ended: the Safeguarding Adults Team's own outcomes (004:822, Table 1) and, for an
    enquiry concluded, the risk as the Safeguarding Adults Collection records it (004:809)."""

    threshold_not_met = "threshold_not_met"  # "did not meet the threshold"
    transferred_to_locality = "transferred_to_locality"  # "transferred to locality"
    no_risk_identified = "no_risk_identified"
    risk_removed = "risk_removed"
    risk_reduced = "risk_reduced"
    risk_remains = "risk_remains"


ConcernSubjectKind = Literal["package", "provider"]


@dataclass(frozen=True)
class ConcernRefusal:
    """Why a command on a concern is refused: an HTTP status, a problem code, the field at fault."""

    status: int
    code: str
    message: str
    field: str | None = None


def subject_refusal(package_id: object | None, provider_id: str | None) -> ConcernRefusal | None:
    """A concern must be about something: a package, a provider, or both (issue 21)."""
    if package_id is None and not provider_id:
        return ConcernRefusal(
            422,
            "invalid-request",
            "a concern needs a subject: subject.package_id, subject.provider_id or both",
            field="subject",
        )
    return None


def pause_refusal(*, status: str, provider_id: str | None, paused: bool) -> ConcernRefusal | None:
    """Only an open concern about a provider can pause new offers to it, once."""
    if status != "open":
        return ConcernRefusal(409, "concern-closed", "the concern is closed: its outcome was recorded")
    if not provider_id:
        return ConcernRefusal(
            409,
            "concern-not-about-a-provider",
            "only a concern about a provider can pause new offers: this one names a package only",
        )
    if paused:
        return ConcernRefusal(409, "offers-already-paused", "this concern already paused new offers to the provider")
    return None


def outcome_refusal(*, status: str) -> ConcernRefusal | None:
    """An outcome is recorded once: it closes the concern."""
    if status != "open":
        return ConcernRefusal(409, "concern-closed", "the concern is closed: its outcome was recorded")
    return None


def offers_paused_after(pausing_concerns: int) -> bool:
    """A provider's new offers stay paused while any open concern about it holds a pause: the outcome of
    one enquiry lifts only its own pause."""
    return pausing_concerns > 0


def concern_reference(number: int) -> str:
    """What people quote for a concern: SG-000042."""
    return f"SG-{number:06d}"


# ---- the quality and risk register: CQC's care directory CSV (decision 0104) ----------------
# The CQC publishes its care directory as a CSV ("Care directory with ratings", and the monthly
# "CQC directory" with a few lines of preamble before its header). Columns are found by name, in
# any order, under the names either file uses; other columns are ignored. The assumed layout:
# docs/guide/quality-register.md.

CQC_COLUMNS: dict[str, tuple[str, ...]] = {
    "location_id": ("location id", "cqc location (for office use only)", "cqc location (for office use only"),
    "location_name": ("location name", "name"),
    "rating": ("location latest overall rating", "latest overall rating", "overall rating"),
    "published_on": ("publication date", "location latest overall rating publication date", "date of latest check"),
}
CQC_REQUIRED = ("location_id", "rating", "published_on")
CQC_RATINGS = {
    "outstanding": "outstanding",
    "good": "good",
    "requires improvement": "requires_improvement",
    "inadequate": "inadequate",
    "not yet rated": "not_yet_rated",
    "": "not_yet_rated",
}
# The CQC's location id: "1-" and its number, never with a leading zero (1-0101 would be 1-101
# again under another spelling, and dodge the held rating's history and the one-provider rule).
CQC_LOCATION_ID = re.compile(r"^1-[1-9][0-9]{0,11}$")
# The CQC's ratings of adult social care (Outstanding to Inadequate) began in October 2014: a
# rating published before then is a typing mistake (decision 0157).
CQC_RATINGS_BEGAN = dt.date(2014, 10, 1)
# The register keeps a complaint 6 years (the council's retention of complaint records, after the
# Limitation Act 1980's six years): one received longer ago is not the register's (decision 0157).
COMPLAINT_KEPT_YEARS = 6
# An improvement plan agreed with a provider is due within a year (the register's annual review
# cycle); a longer one is broken into plans a year apart (decision 0157).
PLAN_DUE_WITHIN_DAYS = 366


def cqc_publication_problem(published_on: dt.date, today: dt.date) -> str | None:
    """What is wrong with a CQC rating's publication date (a UK date), or None: not after ``today``,
    not before the CQC's ratings began (:data:`CQC_RATINGS_BEGAN`)."""
    if published_on > today:
        return f"{published_on} is in the future"
    if published_on < CQC_RATINGS_BEGAN:
        return f"{published_on} is before the CQC's first ratings ({CQC_RATINGS_BEGAN})"
    return None


def complaint_received_problem(received_on: dt.date, today: dt.date) -> str | None:
    """What is wrong with the UK date a complaint was received, or None: not after ``today``, not
    more than :data:`COMPLAINT_KEPT_YEARS` years before it."""
    if received_on > today:
        return f"{received_on} is in the future: a complaint cannot have been received yet"
    if received_on < _years_before(today, COMPLAINT_KEPT_YEARS):
        return f"{received_on} is more than {COMPLAINT_KEPT_YEARS} years ago: the register keeps complaints that long"
    return None


def plan_due_problem(due_on: dt.date, today: dt.date) -> str | None:
    """What is wrong with an improvement plan's due date (a UK date), or None: not before ``today``,
    not more than :data:`PLAN_DUE_WITHIN_DAYS` days after it."""
    if due_on < today:
        return f"{due_on} is in the past"
    if due_on > today + dt.timedelta(days=PLAN_DUE_WITHIN_DAYS):
        return f"{due_on} is more than a year ahead: agree a plan due within a year, and another after it"
    return None


def _years_before(today: dt.date, years: int) -> dt.date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February in a year without one
        return today.replace(year=today.year - years, day=28)


CQC_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%d/%m/%Y - %H:%M", "%d-%b-%y", "%d %B %Y")
MAX_CQC_FILE_BYTES = 64 * 1024 * 1024  # the whole of England's directory is about 20 MB


class CqcFileRefused(Exception):
    """A file that is not a CQC care directory CSV at all (HTTP 422): nothing is read from it."""


@dataclass(frozen=True)
class CqcRow:
    line: int  # the row's line in the file (1 = the first line)
    location_id: str
    location_name: str
    rating: str  # a ProviderProfile cqc_rating
    published_on: dt.date | None


@dataclass(frozen=True)
class CqcRowRefused:
    line: int
    location_id: str
    field: str  # the column at fault, by the file's own header
    problem: str


def parse_cqc_date(text: str) -> dt.date:
    """A CQC date: 03/10/2026 (the directories' form), 2026-10-03, or 03/10/2026 - 14:05, in the
    digits 0-9 alone (``strptime`` also reads other scripts' digits: decision 0154)."""
    text = text.strip()
    if not text.isascii():
        raise ValueError(f"{text[:40]!r} is not a date written in the digits 0-9 (dd/mm/yyyy)")
    for form in CQC_DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (dd/mm/yyyy)")


MAX_REFUSED_LISTED = 200  # a report lists this many refused rows at most, and counts the rest


def read_cqc_csv(
    data: bytes,
    only: Collection[str] | None = None,
    ignored: list[int] | None = None,
    *,
    today: dt.date | None = None,
    refused_total: list[int] | None = None,
) -> tuple[list[CqcRow], list[CqcRowRefused]]:
    """The rows of a CQC care directory CSV (UTF-8, with or without a BOM; the header may follow a
    few lines of preamble): each row read, or refused with the column at fault and why. ``only``:
    the locations wanted (the framework's); a row of another well-formed location id is not read
    further, only counted in ``ignored`` (a one-item list, added to) - the directory lists all of
    England, and a flaw in someone else's row is not the council's to refuse. A row of a wanted
    location is refused when a column is missing (a cut or badly quoted row must not read as "not
    yet rated") or its publication date is after ``today`` (the UK date). The file is read as a
    stream, and at most :data:`MAX_REFUSED_LISTED` refusals are kept: ``refused_total`` (a one-item
    list) counts them all, so a file of millions of bad rows costs no more memory than a good one.
    Raises :class:`CqcFileRefused` when the file is too large, not text, has no header with the
    location id, rating and publication date columns, or has a cell too long to be CQC's."""
    if len(data) > MAX_CQC_FILE_BYTES:
        raise CqcFileRefused(f"the file is over {MAX_CQC_FILE_BYTES // (1024 * 1024)} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")  # the directories have been published from Excel
        except UnicodeDecodeError:
            raise CqcFileRefused("the file is not text (UTF-8 or Windows-1252)") from None
    today = today or dt.date.today()
    total = refused_total if refused_total is not None else [0]
    reader = csv.reader(io.StringIO(text))
    header: list[str] = []
    columns: dict[str, int] = {}
    rows: list[CqcRow] = []
    refused: list[CqcRowRefused] = []

    def refuse(line: int, location: str, field: str, problem: str) -> None:
        total[0] += 1
        if len(refused) < MAX_REFUSED_LISTED:
            # The cell and the header as the file has them, but shown: a NUL in a refused row's id
            # would otherwise stop the report itself being stored, a control hide what it says.
            refused.append(CqcRowRefused(line, escaped(location[:80]), escaped(field[:80]), problem))

    try:
        for cells in reader:
            line = reader.line_num
            if not columns:
                if line > 20:  # the monthly directory has 4 lines of preamble
                    break
                names = [c.strip().lower() for c in cells]
                found = {k: names.index(a) for k, aliases in CQC_COLUMNS.items() for a in aliases if a in names}
                if all(k in found for k in CQC_REQUIRED):
                    header, columns = cells, found
                continue
            if not any(c.strip() for c in cells):
                continue

            def cell(key: str, cells: list[str] = cells, columns: dict[str, int] = columns) -> str | None:
                at = columns.get(key)
                return cells[at].strip() if at is not None and at < len(cells) else None

            location = cell("location_id") or ""
            if not CQC_LOCATION_ID.match(location):
                refuse(
                    line,
                    location[:20],
                    header[columns["location_id"]],
                    f"{location[:20]!r} is not a CQC location id (1-...)",
                )
                continue
            if only is not None and location not in only:
                if ignored is not None:
                    ignored[0] += 1
                continue
            missing = [header[columns[k]] for k in CQC_REQUIRED if cell(k) is None]
            if missing:
                refuse(line, location, missing[0], "the row has no such column: it is cut short or badly quoted")
                continue
            rating_text = cell("rating") or ""
            rating = CQC_RATINGS.get(" ".join(rating_text.lower().split()))
            if rating is None:
                refuse(line, location, header[columns["rating"]], f"{rating_text[:40]!r} is not a CQC rating")
                continue
            published: dt.date | None = None
            if cell("published_on") or rating != "not_yet_rated":
                try:
                    published = parse_cqc_date(cell("published_on") or "")
                except ValueError as exc:
                    refuse(line, location, header[columns["published_on"]], str(exc)[:100])
                    continue
                problem = cqc_publication_problem(published, today)
                if problem:
                    refuse(line, location, header[columns["published_on"]], problem)
                    continue
            rows.append(CqcRow(line, location, cell("location_name") or "", rating, published))
    except csv.Error as exc:
        raise CqcFileRefused(f"line {reader.line_num} is not CSV a CQC directory has: {exc}") from None
    if not columns:
        raise CqcFileRefused(
            "no header row with the columns 'Location ID', 'Location Latest Overall Rating' and 'Publication Date'"
        )
    return rows, refused


@dataclass(frozen=True)
class CqcChange:
    provider_id: str
    location_id: str
    line: int
    rating_was: str
    rating: str
    inspected_was: dt.date | None
    inspected_on: dt.date | None


def cqc_changes(
    rows: list[CqcRow], register: dict[str, tuple[str, str, dt.date | None]]
) -> tuple[list[CqcChange], list[CqcRowRefused], list[str]]:
    """What importing these rows would change: ``register`` maps a CQC location id to (provider id,
    current rating, current publication date). Returns (changes, refusals, unchanged provider ids).
    A row of a location not on the framework is ignored (the directory lists all of England); two
    rows for one framework location that disagree are both refused; a rating older than the one held
    (an earlier publication date) is refused, so an old file cannot undo a newer rating; so is an
    undated "not yet rated" where a dated rating is held, which would clear the date the next
    file is compared with (a rating the CQC withdrew is entered by hand, as a correction)."""
    by_location: dict[str, list[CqcRow]] = {}
    for row in rows:
        if row.location_id in register:
            by_location.setdefault(row.location_id, []).append(row)
    changes, refused, unchanged = [], [], []
    for location, found in sorted(by_location.items()):
        provider_id, rating, inspected = register[location]
        if len({(r.rating, r.published_on) for r in found}) > 1:
            refused += [
                CqcRowRefused(r.line, location, "Location ID", "the file rates this location twice, differently")
                for r in found
            ]
            continue
        row = found[0]
        if inspected is not None and row.published_on is not None and row.published_on < inspected:
            refused.append(
                CqcRowRefused(
                    row.line,
                    location,
                    "Publication Date",
                    f"older than the rating held ({row.published_on} < {inspected})",
                )
            )
            continue
        if inspected is not None and row.published_on is None:
            refused.append(
                CqcRowRefused(
                    row.line,
                    location,
                    "Publication Date",
                    f"undated, while the rating held was published on {inspected}: "
                    "enter a withdrawn rating by hand, as a correction",
                )
            )
            continue
        if (row.rating, row.published_on) == (rating, inspected):
            unchanged.append(provider_id)
            continue
        changes.append(CqcChange(provider_id, location, row.line, rating, row.rating, inspected, row.published_on))
    return changes, refused, unchanged


# ---- named staff users under a provider's organisation (decision 0126) ---------------------------

StaffUserRole = Literal["staff", "admin"]
# What an identity provider's preferred_username may look like here: an account name or an email.
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")


def canonical_username(username: str) -> str:
    """The identity provider's ``preferred_username`` as this service keeps and compares it (trimmed,
    lower case: Keycloak lower-cases usernames; Entra ID's UPNs compare case-insensitively)."""
    return username.strip().lower()


def staff_user_problems(username: str, name: str) -> dict[str, str]:
    """Every problem with a new staff user's answers at once, by field (empty when there is none)."""
    problems = {}
    if not USERNAME.match(username.strip()):
        problems["username"] = (
            "Enter the person's username at the sign-in service: letters, digits and . _ @ + - only, up to 100"
        )
    if not name.strip() or len(name.strip()) > 200:
        problems["name"] = "Enter the person's name, up to 200 characters"
    return problems


def can_manage_users(role: str | None) -> bool:
    """Whether a provider's user may add and remove its organisation's users: its admin users only
    (the organisation's API credential is a system's, not a person's, and manages no one)."""
    return role == "admin"


HistoryOutcome = Literal["won", "lost", "closed", "declined", "unanswered", "awaiting"]


def offer_outcome(status: str, closure_outcome: str | None, window_closed: bool) -> HistoryOutcome:
    """Where an offer in a provider's history stands: ``won`` or ``lost`` (the award), ``closed``
    (withdrawn or ended without an award: the notice's reason says why), ``declined`` (the provider
    said no: final, and no notice follows - decision 0093), ``unanswered`` (the window passed with no
    answer and no notice yet) or ``awaiting`` (a bid in, the round still running). The closing notice
    wins over the offer's own status, which it settles. A declined offer had been shown "awaiting the
    award" for ever, after the award or the package going unplaced (found by a new user)."""
    if closure_outcome in ("won", "lost", "closed"):
        return closure_outcome  # type: ignore[return-value]
    if status in ("won", "lost", "closed"):
        return status  # type: ignore[return-value]
    if status == "offered":
        return "unanswered" if window_closed else "awaiting"
    if status == "declined":
        return "declined"
    return "awaiting"
