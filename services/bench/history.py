"""A history of packages as events (the real contracts), for the reporting tests and its benchmark
(``homecare reporting bench``): every kind of outcome the KPIs count - placed at and above the
band rate, unplaced, cancelled after placing, handed back and placed again, an exception awaiting
a decision and one approved, started - across zones, bands and urgencies, with bids, declines,
notifications and the service agreement records the brokerage writes for finance (:func:`history`)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from schemas import topics
from schemas.events import (
    AgreementFunding,
    BidSubmitted,
    Envelope,
    ExceptionDecided,
    ExceptionRequested,
    NotificationFailed,
    OfferDeclined,
    OfferMade,
    PackageCancelled,
    PackageChanged,
    PackageEnded,
    PackageHandedBack,
    PackagePaused,
    PackagePlaced,
    PackageRequested,
    PackageResumed,
    PackageSpec,
    PackageStarted,
    PackageUnplaced,
    PlacementConfirmed,
    ProviderProfile,
    ProviderUpdated,
    ServiceAgreementRecorded,
    VisitPattern,
)
from services.runtime.reference import load_framework, load_provider_seed

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
        situation = {"zone": zone, "band": band, "urgency": urgency}
        e: list[Envelope] = [PackageRequested(**common, package=spec, requested_at=at, occurred_at=at)]
        t = at + dt.timedelta(minutes=1)
        offered = rnd.sample(PROVIDERS, 3)
        e.append(_offer(common, 1, "prime", offered, spec, band_rate, t))
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
        e += _placed(rnd, common, winner, rate, hours, situation, spec.start_date, t)
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
            e.append(_agreement_after(e, t, reason="cancelled", status="cancelled"))
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
            e.append(_agreement_after(e, t, reason="handed_back", end_date=(t + dt.timedelta(days=14)).date()))
            t += dt.timedelta(minutes=1)
            e.append(_offer(common, 2, "prime", offered[1:], spec, band_rate, t))
            other = offered[1]
            t += dt.timedelta(hours=4)
            e += _placed(rnd, common, other, band_rate, hours, situation, spec.start_date, t, offer_round=2)
        events += e
    return events


def _placed(
    rnd: random.Random,
    common: dict[str, Any],
    provider: str,
    rate: Decimal,
    hours: Decimal,
    situation: dict[str, Any],
    start_date: dt.date,
    t: dt.datetime,
    offer_round: int = 1,
) -> list[Envelope]:
    """A placement of :func:`history`, its service agreement record and its notifications (the
    person's letter always failed)."""
    placed = _placement(
        common, situation, provider, rate, hours, start_date, "2026-27", "broker-1", offer_round, "prime", [], t
    )
    events: list[Envelope] = [placed, _agreement(placed)]

    def keep(event: Envelope) -> bool:
        events.append(event)
        return True

    _confirmations(rnd, common, provider, t, keep, failed_share=1.0)
    return events


def _agreement(placed: PackagePlaced) -> ServiceAgreementRecorded:
    """The brokerage's record of a placement for finance (decision 0110): from the agreed start,
    open-ended, the council paying all of it. Ids derived from the placement (no draw from the
    history's random numbers, so the rest of the history is as it was)."""
    weekly = (placed.hours_per_week * placed.hourly_rate).quantize(Decimal("0.01"))
    return ServiceAgreementRecorded(
        correlation_id=placed.package_id,
        record_id=uuid.uuid5(placed.event_id, "record-1"),
        agreement_id=uuid.uuid5(placed.event_id, "agreement"),
        version=1,
        reason="placed",
        status="agreed",
        package_id=placed.package_id,
        provider_id=placed.provider_id,
        zone=placed.zone,
        band=placed.band,
        hourly_rate=placed.hourly_rate,
        band_rate=Decimal("22.95"),
        hours_per_week=placed.hours_per_week,
        weekly_cost=weekly,
        start_date=placed.start_date,
        funding=[
            AgreementFunding(
                effective_from=placed.start_date,
                funder="council",
                lines=[{"payer": "council", "basis": "share", "percent": Decimal(100), "pounds_per_week": weekly}],
            )
        ],
        funding_revision=0,
        cost_centre="HC-BENCH",
        rate_card=placed.rate_card,
        recorded_at=placed.placed_at,
        occurred_at=placed.placed_at,
    )


def _agreement_after(events: list[Envelope], t: dt.datetime, **changes: Any) -> ServiceAgreementRecorded:
    """The next version of the latest agreement among ``events`` with ``changes`` (an ending, a
    cancellation): a correction supersedes, never edits (decision 0111)."""
    latest = [e for e in events if isinstance(e, ServiceAgreementRecorded)][-1]
    version = latest.version + 1
    return ServiceAgreementRecorded.model_validate(
        latest.model_dump()
        | {
            "event_id": uuid.uuid5(latest.record_id, f"event-{version}"),
            "record_id": uuid.uuid5(latest.agreement_id, f"record-{version}"),
            "version": version,
            "supersedes": latest.record_id,
            "recorded_at": t,
            "occurred_at": t,
            **changes,
        }
    )


def topic_of(event: Envelope) -> str:
    return topics.topic_for(event)


# ---- five years of county demand ----------------------------------------------------------------

# The market's answers, by band: the share of offers a provider declines (the papers: rural and
# isolated packages are declined far more often, 002 and 004), and the reasons it gives.
DECLINE_SHARE = {"urban": 0.30, "fringe": 0.40, "rural": 0.55, "isolated": 0.65}
DECLINE_REASONS = {
    "urban": (["capacity", "call_times", "skills", "price", "other"], [6, 3, 1, 1, 1]),
    "fringe": (["capacity", "call_times", "geography", "skills", "price"], [5, 3, 2, 1, 1]),
    "rural": (["capacity", "geography", "call_times", "price", "skills"], [4, 4, 2, 2, 1]),
    "isolated": (["geography", "capacity", "price", "call_times", "skills"], [5, 3, 3, 1, 1]),
}
# How long care lasts once started (days): reablement is six weeks; the others end by death,
# residential care or needs met after months to years.
MEAN_DAYS_OF_CARE = {"reablement_step_down": 42, "hospital_discharge": 240, "community": 420}
ANSWER_WINDOW = {"hospital_discharge": dt.timedelta(hours=2), "reablement_step_down": dt.timedelta(hours=8)}
ENDS = ["died", "moved_to_residential_care", "needs_met", "moved_out_of_area", "ended_by_person"]
BROKERS = tuple(f"broker-{n}" for n in range(1, 9))
MANAGERS = ("manager-1", "manager-2")


def county_history(
    start: dt.datetime,
    *,
    years: float = 5,
    packages_per_year: int = 10_000,
    seed: int = 17,
) -> Iterator[Envelope]:
    """Events of ``years`` years of county demand from ``start`` (about ``packages_per_year``
    packages a year: 10,000 is the county's 150-200 hospital discharges a week plus community and
    reablement requests, 000:62-68), through the real contracts, yielded one package at a time so
    that five years never sit in memory.

    Requests arrive on weekdays in office hours (a fifth as many at weekends), more in winter;
    zones, bands, urgencies and hours follow :mod:`services.simulator.synthetic`'s county mix; the
    providers are the framework's seed (deploy/reference/providers.yaml), offered the packages of
    their zones and bands and declining by band (:data:`DECLINE_SHARE`). A package is placed
    (at or above its band rate, the latter through an exception approved or refused), left
    unplaced, cancelled before it starts, or started; a running package may be paused and resumed,
    have its hours changed, be handed back and placed again, and ends after a time drawn by its
    urgency (:data:`MEAN_DAYS_OF_CARE`). Nothing after ``start + years`` is emitted: what is still
    running then is in care. Each package's events come in the order the brokerage publishes them
    (its topics keep them in that order by key); the registry's profiles come first."""
    from services.simulator.synthetic import package_request

    rnd = random.Random(seed)
    framework = load_framework()
    seed_providers = [p for p in load_provider_seed() if p["status"] == "active"]
    for p in seed_providers:
        yield ProviderUpdated(
            correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, p["provider_id"]),
            revision=1,
            profile=ProviderProfile.model_validate({k: v for k, v in p.items() if k != "adapter"}),
            occurred_at=start - dt.timedelta(days=1),
        )
    end = start + dt.timedelta(days=365.25 * years)
    zones = sorted(framework.zones)
    total = round(packages_per_year * years)
    # Arrival times: a day drawn by its weight (weekday, winter), then an office-hours minute.
    days = (end - start).days
    weights = [_day_weight(start + dt.timedelta(days=d)) for d in range(days)]
    chosen = sorted(rnd.choices(range(days), weights, k=total))
    for n, day in enumerate(chosen):
        at = start + dt.timedelta(days=day, hours=rnd.uniform(8, 17.5))
        request = package_request(rnd, framework, zones[rnd.randrange(len(zones))], index=n)
        yield from _package_history(rnd, framework, seed_providers, request, at, end)


def _day_weight(day: dt.datetime) -> float:
    winter = 1.2 if day.month in (12, 1, 2) else 1.0
    return winter * (0.2 if day.weekday() >= 5 else 1.0)


def _package_history(
    rnd: random.Random,
    framework: Any,
    seed_providers: list[dict[str, Any]],
    request: dict[str, Any],
    at: dt.datetime,
    end: dt.datetime,
) -> list[Envelope]:
    """One package's events up to ``end`` (see :func:`county_history`)."""
    urgency = request["urgency"]
    start_date = (at + dt.timedelta(days=rnd.choice([0, 1, 1, 2, 7]))).date()
    spec = PackageSpec.model_validate(
        {k: v for k, v in request.items() if k not in ("person", "discharge")} | {"start_date": start_date.isoformat()}
    )
    zone, band, hours = spec.zone, spec.band.value, spec.hours_per_week
    package_id = uuid.UUID(int=rnd.getrandbits(128), version=4)
    broker = rnd.choice(BROKERS)
    card = framework.rate_card_on(at.date())
    band_rate = card.rates[spec.band]
    common: dict[str, Any] = {"correlation_id": package_id, "package_id": package_id}
    situation = {"zone": zone, "band": band, "urgency": urgency}
    pending: list[Envelope] = []

    def emit(event: Envelope) -> bool:
        """Keep the event if it happened before the history's end; False when it did not."""
        if event.occurred_at >= end:
            return False
        pending.append(event)
        return True

    emit(PackageRequested(**common, package=spec, requested_at=at, occurred_at=at))
    eligible = [
        p
        for p in seed_providers
        if zone in p["zones"] and band in p["bands"] and (spec.visits.carers_per_call == 1 or p["double_handed"])
    ]
    t = at + dt.timedelta(minutes=rnd.randint(1, 5))
    if not eligible:
        emit(
            PackageUnplaced(
                **common,
                **situation,
                hours_per_week=hours,
                reason="no_eligible_provider",
                requested_by=broker,
                unplaced_at=t,
                occurred_at=t,
            )
        )
        return pending
    # Up to two rounds of offers, each to up to four providers not yet asked.
    asked: set[str] = set()
    bids: list[tuple[Decimal, str]] = []
    round_no = 0
    window = ANSWER_WINDOW.get(urgency, dt.timedelta(hours=24))
    while not bids and round_no < 2:
        fresh = [p for p in eligible if p["provider_id"] not in asked]
        if not fresh:
            break
        round_no += 1
        offered = rnd.sample(fresh, min(4, len(fresh)))
        asked |= {p["provider_id"] for p in offered}
        tier = "open" if zone in framework.no_prime_zones else offered[0]["tier"]
        if not emit(_offer(common, round_no, tier, [p["provider_id"] for p in offered], spec, band_rate, t, window)):
            return pending
        # The providers answer in the order they get round to it (the topic keeps that order).
        arrivals = sorted((t + window * rnd.uniform(0.05, 0.9), n) for n in range(len(offered)))
        for answered, n in arrivals:
            p = offered[n]
            if rnd.random() < DECLINE_SHARE[band]:
                reason = rnd.choices(*DECLINE_REASONS[band])[0]
                emit(
                    OfferDeclined(
                        **common,
                        offer_round=round_no,
                        provider_id=p["provider_id"],
                        reason=reason,
                        adapter="automatic",
                        answered_at=answered,
                        occurred_at=answered,
                    )
                )
                continue
            premium = Decimal(p.get("adapter", {}).get("premium_percent", {}).get(band, 0))
            if rnd.random() < 0.08:  # now and then a provider asks more than its usual premium
                premium += rnd.choice([3, 5, 10])
            rate = (band_rate * (100 + premium) / 100).quantize(Decimal("0.01"))
            bids.append((rate, p["provider_id"]))
            emit(
                BidSubmitted(
                    **common,
                    offer_round=round_no,
                    provider_id=p["provider_id"],
                    hourly_rate=rate,
                    earliest_start=start_date,
                    adapter="automatic",
                    answered_at=answered,
                    occurred_at=answered,
                )
            )
        t += window + dt.timedelta(minutes=rnd.randint(1, 30))
    if not bids:
        emit(
            PackageUnplaced(
                **common,
                **situation,
                hours_per_week=hours,
                reason="no_acceptable_bid",
                requested_by=broker,
                unplaced_at=t,
                occurred_at=t,
            )
        )
        return pending
    rate, winner = min(bids)
    if rate > band_rate:
        if not emit(
            ExceptionRequested(
                **common,
                **situation,
                provider_id=winner,
                hourly_rate=rate,
                band_rate=band_rate,
                requested_by=broker,
                requested_at=t,
                occurred_at=t,
            )
        ):
            return pending
        t += dt.timedelta(hours=rnd.uniform(0.5, 30))
        approved = rnd.random() < 0.8
        decided = ExceptionDecided(
            **common,
            decision="approved" if approved else "rejected",
            decided_by=rnd.choice(MANAGERS),
            reason=rnd.choice(["urgent_discharge", "no_provider_at_band_rate", "specialist_needs"])
            if approved
            else "rate_not_justified",
            provider_id=winner,
            hourly_rate=rate,
            requested_by=broker,
            decided_at=t,
            occurred_at=t,
        )
        if not emit(decided):
            return pending
        if not approved:
            t += dt.timedelta(minutes=1)
            emit(
                PackageUnplaced(
                    **common,
                    **situation,
                    hours_per_week=hours,
                    reason="exception_rejected",
                    requested_by=broker,
                    unplaced_at=t,
                    occurred_at=t,
                )
            )
            return pending
    losing = sorted(asked - {winner})
    if not emit(
        _placement(common, situation, winner, rate, hours, start_date, card.version, broker, round_no, tier, losing, t)
    ):
        return pending
    _confirmations(rnd, common, winner, t, emit)
    if rnd.random() < 0.04:  # cancelled before care starts
        t += dt.timedelta(hours=rnd.uniform(2, 48))
        emit(
            PackageCancelled(
                **common,
                reason=rnd.choice(
                    [
                        "no_longer_needed",
                        "admitted_to_hospital",
                        "person_died",
                        "family_arranged_care",
                        "person_declined",
                    ]
                ),
                cancelled_by=broker,
                requested_by=broker,
                provider_id=winner,
                hours_per_week=hours,
                cancelled_at=t,
                occurred_at=t,
            )
        )
        return pending
    _running(
        rnd,
        common,
        situation,
        spec,
        winner,
        rate,
        hours,
        start_date,
        card.version,
        broker,
        round_no,
        tier,
        eligible,
        t,
        emit,
    )
    return pending


def _offer(
    common: dict[str, Any],
    offer_round: int,
    tier: str,
    provider_ids: list[str],
    spec: PackageSpec,
    band_rate: Decimal,
    t: dt.datetime,
    window: dt.timedelta = dt.timedelta(hours=2),
) -> OfferMade:
    return OfferMade(
        **common,
        offer_round=offer_round,
        tier=tier,
        provider_ids=provider_ids,
        package=spec,
        band_rate=band_rate,
        window_closes_at=t + window,
        occurred_at=t,
    )


def _placement(
    common: dict[str, Any],
    situation: dict[str, Any],
    provider: str,
    rate: Decimal,
    hours: Decimal,
    start_date: dt.date,
    rate_card: str,
    broker: str,
    offer_round: int,
    tier: str,
    losing: list[str],
    t: dt.datetime,
) -> PackagePlaced:
    return PackagePlaced(
        **common,
        **situation,
        provider_id=provider,
        offer_round=offer_round,
        tier=tier,
        hourly_rate=rate,
        hours_per_week=hours,
        start_date=start_date,
        rate_card=rate_card,
        requested_by=broker,
        losing_provider_ids=losing,
        placed_at=t,
        occurred_at=t,
    )


def _confirmations(
    rnd: random.Random,
    common: dict[str, Any],
    provider: str,
    t: dt.datetime,
    emit: Callable[[Envelope], bool],
    failed_share: float = 0.33,
) -> None:
    """The notifications service's record of a placement's messages; a third of people (by
    default) have no contact details registered, so their letter is a failed delivery (a reason
    code only)."""
    at = t + dt.timedelta(seconds=rnd.randint(1, 20))
    emit(PlacementConfirmed(**common, provider_id=provider, recipients=[], confirmed_at=at, occurred_at=at))
    if rnd.random() < failed_share:
        emit(
            NotificationFailed(
                **common,
                delivery_id=uuid.UUID(int=rnd.getrandbits(128), version=4),
                message="placement_person",
                recipient_kind="person",
                recipient_id=str(common["package_id"]),
                channel="none",
                reason="no_contact_registered",
                attempts=0,
                failed_at=at,
                occurred_at=at,
            )
        )


def _uk_morning(day: dt.date, rnd: random.Random) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC) + dt.timedelta(minutes=rnd.randint(0, 420))


def _running(
    rnd: random.Random,
    common: dict[str, Any],
    situation: dict[str, Any],
    spec: PackageSpec,
    provider: str,
    rate: Decimal,
    hours: Decimal,
    start_date: dt.date,
    rate_card: str,
    broker: str,
    offer_round: int,
    tier: str,
    eligible: list[dict[str, Any]],
    placed_at: dt.datetime,
    publish: Callable[[Envelope], bool],
) -> None:
    """A placed package's care: started, then pauses, changes of hours and hand-backs in the order
    they fall, then its end (each only if it falls before the history's end)."""
    urgency = situation["urgency"]
    mean = MEAN_DAYS_OF_CARE[urgency]
    days = rnd.randint(35, 49) if urgency == "reablement_step_down" else max(14, round(rnd.expovariate(1 / mean)))
    # Care starts on the date asked for, or the morning after a placement that came later.
    t = max(_uk_morning(start_date, rnd), _uk_morning(placed_at.date() + dt.timedelta(days=1), rnd))
    start_date = t.date()
    latest = t

    def emit(event: Envelope) -> bool:
        nonlocal latest
        latest = max(latest, event.occurred_at)
        return publish(event)

    if not emit(
        PackageStarted(
            **common,
            provider_id=provider,
            started_on=start_date,
            recorded_by=broker,
            requested_by=broker,
            recorded_at=t,
            occurred_at=t,
        )
    ):
        return
    incidents = sorted(
        (rnd.randint(7, max(8, days - 7)), kind)
        for kind, share in (("pause", 0.15), ("change", 0.12), ("hand_back", 0.05))
        if rnd.random() < share
    )
    last_day = 0
    for day, kind in incidents:
        day = max(day, last_day + 1)
        if day >= days:
            break
        on = start_date + dt.timedelta(days=day)
        t = _uk_morning(on, rnd)
        if kind == "pause":
            back = min(day + rnd.randint(3, 21), days - 1)
            reason = rnd.choices(["admitted_to_hospital", "respite_stay"], [4, 1])[0]
            paused = PackagePaused(
                **common,
                provider_id=provider,
                reason=reason,
                paused_on=on,
                hold_expires_at=t + dt.timedelta(days=28),
                paid_during_hold=reason == "admitted_to_hospital",
                hours_per_week=hours,
                paused_by=broker,
                requested_by=broker,
                paused_at=t,
                occurred_at=t,
            )
            if not emit(paused) or back <= day:
                return
            back_on = start_date + dt.timedelta(days=back)
            t = _uk_morning(back_on, rnd)
            if not emit(
                PackageResumed(
                    **common,
                    provider_id=provider,
                    paused_on=on,
                    resumed_on=back_on,
                    hours_per_week=hours,
                    resumed_by=broker,
                    requested_by=broker,
                    resumed_at=t,
                    occurred_at=t,
                )
            ):
                return
            last_day = back
        elif kind == "change":
            more = rnd.random() < 0.6
            new = max(Decimal("1.75"), (hours * Decimal("1.25" if more else "0.75")).quantize(Decimal("0.25")))
            new = min(new, Decimal(100))
            reason = rnd.choice(["needs_increased", "needs_increased_after_fall"] if more else ["reablement_progress"])
            changed = PackageChanged(
                **common,
                change_id=uuid.UUID(int=rnd.getrandbits(128), version=4),
                provider_id=provider,
                package=spec.model_copy(update={"hours_per_week": new}),
                previous_hours_per_week=hours,
                hours_per_week=new,
                reason=reason,
                effective_date=on + dt.timedelta(days=3),
                discussed_with_person=True,
                changed_by=broker,
                requested_by=broker,
                changed_at=t,
                occurred_at=t,
            )
            if not emit(changed):
                return
            hours, last_day = new, day
        else:  # handed back with 14 days' notice, offered again and placed with another provider
            reason = rnd.choice(["staff_shortage", "cannot_cover_call_times", "travel_not_viable"])
            if not emit(
                PackageHandedBack(
                    **common,
                    provider_id=provider,
                    notice_ends_on=on + dt.timedelta(days=14),
                    reason=reason,
                    hours_per_week=hours,
                    recorded_by=broker,
                    requested_by=broker,
                    recorded_at=t,
                    occurred_at=t,
                )
            ):
                return
            others = [p["provider_id"] for p in eligible if p["provider_id"] != provider]
            if not others:
                return  # nobody else can take it: care ends at the notice's end, unrecorded here
            offer_round += 1
            offered = rnd.sample(others, min(3, len(others)))
            t += dt.timedelta(minutes=rnd.randint(5, 60))
            if not emit(_offer(common, offer_round, tier, offered, spec, rate, t)):
                return
            provider = offered[0]
            answered = t + dt.timedelta(minutes=rnd.randint(5, 100))
            if not emit(
                BidSubmitted(
                    **common,
                    offer_round=offer_round,
                    provider_id=provider,
                    hourly_rate=rate,
                    earliest_start=on + dt.timedelta(days=14),
                    adapter="automatic",
                    answered_at=answered,
                    occurred_at=answered,
                )
            ):
                return
            t += dt.timedelta(hours=2, minutes=rnd.randint(1, 30))
            losing = sorted(set(offered) - {provider})
            placed = _placement(
                common,
                situation,
                provider,
                rate,
                hours,
                on + dt.timedelta(days=14),
                rate_card,
                broker,
                offer_round,
                tier,
                losing,
                t,
            )
            if not emit(placed):
                return
            _confirmations(rnd, common, provider, t, emit)
            last_day = day + 14
    if last_day >= days:
        days = last_day + 1
    ended_on = start_date + dt.timedelta(days=days)
    t = max(_uk_morning(ended_on, rnd) - dt.timedelta(days=1), latest + dt.timedelta(minutes=30))
    reasons = ["needs_met"] if urgency == "reablement_step_down" else rnd.choices(ENDS, [4, 3, 2, 1, 1])
    emit(
        PackageEnded(
            **common,
            provider_id=provider,
            reason=reasons[0],
            effective_date=ended_on,
            hours_per_week=hours,
            ended_by=broker,
            requested_by=broker,
            ended_at=t,
            occurred_at=t,
        )
    )
