"""A history of packages as events (the real contracts), for the reporting tests and its benchmark
(``homecare reporting bench``): every kind of outcome the KPIs count - placed at and above the
band rate, unplaced, cancelled after placing, handed back and placed again, an exception awaiting
a decision and one approved, started - across zones, bands and urgencies, with bids, declines
and notifications."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

from schemas import topics
from schemas.events import (
    BidSubmitted,
    Envelope,
    ExceptionDecided,
    ExceptionRequested,
    NotificationFailed,
    OfferDeclined,
    OfferMade,
    PackageCancelled,
    PackageHandedBack,
    PackagePlaced,
    PackageRequested,
    PackageSpec,
    PackageStarted,
    PackageUnplaced,
    PlacementConfirmed,
    ProviderProfile,
    ProviderUpdated,
    VisitPattern,
)
from services.runtime.reference import load_framework

OUTCOMES = ("placed", "above_rate", "unplaced", "cancelled", "handed_back", "awaiting", "started")
DECLINES = ("capacity", "geography", "call_times", "price")
PROVIDERS = tuple(f"rep-{c}-care" for c in "abcdef")


def history(start: dt.datetime, packages: int = 40, seed: int = 7) -> list[Envelope]:
    """Events of ``packages`` packages requested from ``start`` on (one every 3 hours), each
    package's events in the order the brokerage would publish them."""
    rnd = random.Random(seed)
    framework = load_framework()
    zones = sorted(framework.zones)[:4]
    events: list[Envelope] = []
    for n, pid in enumerate(PROVIDERS):
        profile = ProviderProfile(
            provider_id=pid,
            name=f"Provider {pid}",
            tier="prime" if n < 2 else "supplementary",
            status="active",
            zones=zones,
            bands=["urban", "fringe", "rural"],
            skills=["personal_care"],
            double_handed=True,
            cqc_rating="good",
            local_risk="low",
            hand_backs_12m=0,
            weekly_capacity_hours=Decimal(500),
            committed_hours=Decimal(0),
        )
        events.append(
            ProviderUpdated(
                correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, pid),
                revision=1,
                profile=profile,
                occurred_at=start - dt.timedelta(days=1),
            )
        )
    for i in range(packages):
        package_id = uuid.UUID(int=rnd.getrandbits(128), version=4)
        at = start + dt.timedelta(hours=3 * i, minutes=rnd.randint(0, 59))
        zone = zones[i % len(zones)]
        band = ("urban", "fringe", "rural")[i % 3]
        urgency = ("community", "hospital_discharge", "reablement_step_down")[i % 3 if i % 2 else 0]
        hours = Decimal(rnd.choice(["7", "7.5", "10.25", "14", "21"]))
        spec = PackageSpec(
            zone=zone,
            band=band,
            postcode_district="LE13",
            hours_per_week=hours,
            visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
            needs=["personal_care"],
            urgency=urgency,
            start_date=(at + dt.timedelta(days=3)).date(),
        )
        band_rate = Decimal("22.95")
        outcome = OUTCOMES[i % len(OUTCOMES)]
        common = {"correlation_id": package_id, "package_id": package_id}
        e: list[Envelope] = [PackageRequested(**common, package=spec, requested_at=at, occurred_at=at)]
        t = at + dt.timedelta(minutes=1)
        offered = rnd.sample(PROVIDERS, 3)
        e.append(
            OfferMade(
                **common,
                offer_round=1,
                tier="prime",
                provider_ids=offered,
                package=spec,
                band_rate=band_rate,
                window_closes_at=t + dt.timedelta(hours=2),
                occurred_at=t,
            )
        )
        winner = offered[0]
        rate = band_rate + (Decimal("1.50") if outcome in ("above_rate", "awaiting") else Decimal(0))
        for k, provider in enumerate(offered):
            answered = t + dt.timedelta(minutes=5 + k)
            if outcome == "unplaced" or (k > 0 and rnd.random() < 0.6):
                e.append(
                    OfferDeclined(
                        **common,
                        offer_round=1,
                        provider_id=provider,
                        reason=rnd.choice(DECLINES),
                        adapter="automatic",
                        answered_at=answered,
                        occurred_at=answered,
                    )
                )
            else:
                e.append(
                    BidSubmitted(
                        **common,
                        offer_round=1,
                        provider_id=provider,
                        hourly_rate=rate if provider == winner else rate + 1,
                        earliest_start=spec.start_date,
                        adapter="automatic",
                        answered_at=answered,
                        occurred_at=answered,
                    )
                )
        t += dt.timedelta(minutes=10 + rnd.randint(0, 600))
        if outcome == "unplaced":
            e.append(
                PackageUnplaced(
                    **common,
                    zone=zone,
                    band=band,
                    urgency=urgency,
                    hours_per_week=hours,
                    reason="no_acceptable_bid",
                    requested_by="broker-1",
                    unplaced_at=t,
                    occurred_at=t,
                )
            )
            events += e
            continue
        if outcome in ("above_rate", "awaiting"):
            e.append(
                ExceptionRequested(
                    **common,
                    provider_id=winner,
                    hourly_rate=rate,
                    band_rate=band_rate,
                    zone=zone,
                    band=band,
                    urgency=urgency,
                    requested_by="broker-1",
                    requested_at=t,
                    occurred_at=t,
                )
            )
            if outcome == "awaiting":
                events += e
                continue
            t += dt.timedelta(minutes=30)
            e.append(
                ExceptionDecided(
                    **common,
                    decision="approved",
                    decided_by="manager-1",
                    reason="urgent_discharge",
                    provider_id=winner,
                    hourly_rate=rate,
                    requested_by="broker-1",
                    decided_at=t,
                    occurred_at=t,
                )
            )
        e += _placed(common, winner, rate, hours, zone, band, urgency, spec.start_date, t)
        if outcome == "cancelled":
            t += dt.timedelta(hours=5)
            e.append(
                PackageCancelled(
                    **common,
                    reason="person_died",
                    cancelled_by="broker-1",
                    requested_by="broker-1",
                    provider_id=winner,
                    hours_per_week=hours,
                    cancelled_at=t,
                    occurred_at=t,
                )
            )
        if outcome in ("started", "handed_back"):
            t += dt.timedelta(days=1)
            e.append(
                PackageStarted(
                    **common,
                    provider_id=winner,
                    started_on=spec.start_date,
                    recorded_by="broker-1",
                    requested_by="broker-1",
                    recorded_at=t,
                    occurred_at=t,
                )
            )
        if outcome == "handed_back":
            t += dt.timedelta(days=2)
            e.append(
                PackageHandedBack(
                    **common,
                    provider_id=winner,
                    notice_ends_on=(t + dt.timedelta(days=14)).date(),
                    reason="staff_shortage",
                    hours_per_week=hours,
                    recorded_by="broker-1",
                    requested_by="broker-1",
                    recorded_at=t,
                    occurred_at=t,
                )
            )
            t += dt.timedelta(minutes=1)
            e.append(
                OfferMade(
                    **common,
                    offer_round=2,
                    tier="prime",
                    provider_ids=offered[1:],
                    package=spec,
                    band_rate=band_rate,
                    window_closes_at=t + dt.timedelta(hours=2),
                    occurred_at=t,
                )
            )
            other = offered[1]
            t += dt.timedelta(hours=4)
            e += _placed(common, other, band_rate, hours, zone, band, urgency, spec.start_date, t, offer_round=2)
        events += e
    return events


def _placed(
    common: dict[str, Any],
    provider: str,
    rate: Decimal,
    hours: Decimal,
    zone: str,
    band: str,
    urgency: str,
    start_date: dt.date,
    t: dt.datetime,
    offer_round: int = 1,
) -> list[Envelope]:
    placed = PackagePlaced(
        **common,
        provider_id=provider,
        offer_round=offer_round,
        tier="prime",
        hourly_rate=rate,
        hours_per_week=hours,
        start_date=start_date,
        zone=zone,
        band=band,
        urgency=urgency,
        rate_card="2026-27",
        requested_by="broker-1",
        losing_provider_ids=[],
        placed_at=t,
        occurred_at=t,
    )
    confirmed = t + dt.timedelta(seconds=2)
    return [
        placed,
        PlacementConfirmed(
            **common, provider_id=provider, recipients=[], confirmed_at=confirmed, occurred_at=confirmed
        ),
        NotificationFailed(
            **common,
            delivery_id=uuid.uuid4(),
            message="placement_person",
            recipient_kind="person",
            recipient_id=str(common["package_id"]),
            channel="none",
            reason="no_contact_registered",
            attempts=0,
            failed_at=confirmed,
            occurred_at=confirmed,
        ),
    ]


def topic_of(event: Envelope) -> str:
    return topics.topic_for(event)
