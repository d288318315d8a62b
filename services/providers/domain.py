"""Providers' rules: the automatic adapter's decision and capacity bookkeeping. No I/O.

An automatic adapter answers an offer the way the provider told it to: it bids at the
framework rate (plus the provider's premium for the band, if it set one) when the package
fits its zones, bands, skills, package size, call times and free capacity; otherwise it
declines with the reason code from the framework's fixed list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from schemas.events import PackageSpec, ProviderProfile
from schemas.vocabulary import DeclineReason

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
    max_package_hours: Decimal = Field(default=Decimal(42), gt=0)
    max_calls_per_day: int = Field(default=4, ge=1, le=6)
    premium_percent: dict[str, Decimal] = Field(default_factory=dict)
    lead_days: int = Field(default=0, ge=0, le=28, description="Days' notice it needs before a start")
    covers_adjacent_zones: bool = Field(default=False, description="Takes work just outside its zones when asked")


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


# ---- provider API credentials -------------------------------------------------------------
# A token is ``hcp_<credential id>_<secret>``: the id finds the row, the secret is 256 random bits
# of which only a SHA-256 is stored (no password-hashing cost is needed for a secret nobody chose).

TOKEN_PREFIX = "hcp"


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
