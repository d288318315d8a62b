"""Providers' rules: the automatic adapter's decision and capacity bookkeeping. No I/O.

An automatic adapter answers an offer the way the provider told it to: it bids at the
framework rate (plus the provider's premium for the band, if it set one) when the package
fits its zones, bands, skills, package size, call times and free capacity; otherwise it
declines with the reason code from the framework's fixed list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, Field

from schemas.events import PackageSpec, ProviderProfile
from schemas.vocabulary import DeclineReason


class AutomaticRules(BaseModel):
    """A provider's automatic adapter settings (kept in its registry entry)."""

    kind: str = "automatic"
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


def automatic_answer(profile: ProviderProfile, rules: AutomaticRules, package: PackageSpec, band_rate: Decimal,
                     held_hours: Decimal, today: dt.date, *, neighbouring: frozenset[str] = frozenset()) -> Bid | Decline:
    """``neighbouring``: the zones next to the package's zone (an escalated offer may come from there)."""
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
    if package.visits.calls_per_day > rules.max_calls_per_day:
        return Decline(DeclineReason.call_times, f"covers at most {rules.max_calls_per_day} calls a day")
    if package.hours_per_week > rules.max_package_hours:
        return Decline(DeclineReason.capacity, f"takes packages up to {rules.max_package_hours} h/week")
    if free_hours(profile, held_hours) < package.hours_per_week:
        return Decline(DeclineReason.capacity, "no free capacity for the hours")
    premium = rules.premium_percent.get(package.band.value, Decimal(0))
    rate = (band_rate * (1 + Decimal(premium) / 100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    earliest = max(package.start_date, today + dt.timedelta(days=rules.lead_days))
    return Bid(hourly_rate=rate, earliest_start=earliest)


class StatusRefused(ValueError):
    """A change of framework membership the rules do not allow (HTTP 409)."""


def check_status_change(provider_id: str, current: str, new: str) -> None:
    """Suspended <-> active as often as the council decides; leaving the framework is final."""
    if current == "left":
        raise StatusRefused(f"provider {provider_id} left the framework; it cannot become {new}")
    if current == new:
        raise StatusRefused(f"provider {provider_id} is already {new}")
