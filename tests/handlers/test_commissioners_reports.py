"""Reports for commissioners (decision 0105) from the reporting projection, on a real PostgreSQL: each
report is checked against the same figures worked out from the events themselves."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict
from decimal import Decimal

from schemas.events import (
    BidSubmitted,
    OfferDeclined,
    PackagePlaced,
    PackageRequested,
    ProviderQualityRecorded,
    QualityRegister,
)
from services.bench.history import history
from services.operations.kpis import shares_and_hhi
from services.runtime import clock
from services.runtime.reference import load_framework
from tests.handlers.test_reporting_handlers import project, reporting  # noqa: F401 (a fixture)

START = dt.datetime(2027, 6, 7, 8, 0, tzinfo=dt.UTC)  # a Monday, a period no other test uses
PERIOD = {"from": "2027-06-07", "to": "2027-06-20"}


def recorded(provider_id: str, score: str, risk: str, at: dt.datetime, change: str = "local_risk"):
    return ProviderQualityRecorded(
        correlation_id=uuid.uuid4(),
        provider_id=provider_id,
        change=change,
        recorded_by="demo-quality",
        recorded_at=at,
        quality_register=QualityRegister(
            cqc_location_id=None,
            cqc_rating="good",
            cqc_inspected_on=None,
            local_risk=risk,
            local_risk_reviewed_on=at.date(),
            hand_backs_12m=0,
            late_starts_12m=0,
            open_complaints=1,
            open_improvement_plans=0,
            quality_score=Decimal(score),
        ),
    )


async def test_reports_agree_with_the_events(reporting):  # noqa: F811
    _service, broker, client = reporting
    events = history(START, packages=40, seed=21)
    quality_provider = f"q-{uuid.uuid4().hex[:8]}"
    events += [
        recorded(quality_provider, "85.0", "low", START - dt.timedelta(days=3)),  # before the period
        recorded(quality_provider, "61.0", "high", START + dt.timedelta(days=2), change="cqc_rating"),
    ]
    await project(broker, events)
    framework = load_framework()
    with clock.frozen(START + dt.timedelta(days=20)):
        share = (await client.get("/reports/market-share", params=PERIOD)).json()
        mix = (await client.get("/reports/decline-mix", params=PERIOD)).json()
        quality = (await client.get("/reports/provider-quality", params=PERIOD)).json()
        gaps = (await client.get("/reports/coverage-gaps", params=PERIOD)).json()
        bad = await client.get("/reports/market-share", params={"from": "2027-06-20", "to": "2027-06-07"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "from"

    # Market share: hours per provider per zone per UK week, and the HHI of those shares.
    placed = [e for e in events if isinstance(e, PackagePlaced)]
    assert placed
    hours: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for p in placed:
        day = clock.uk_date(p.placed_at)
        hours[(p.zone, (day - dt.timedelta(days=day.weekday())).isoformat())][p.provider_id] += float(p.hours_per_week)
    for (zone, week), by_provider in hours.items():
        [row] = [p for p in share["zones"][zone] if p["period"] == week]
        assert row["hhi"] == shares_and_hhi(by_provider)[1]
        assert {p["provider_id"]: p["share_percent"] for p in row["providers"]} == shares_and_hhi(by_provider)[0]

    # The decline mix: each provider's answers and declines by band.
    band_of = {e.package_id: e.package.band.value for e in events if isinstance(e, PackageRequested)}
    zone_of = {e.package_id: e.package.zone for e in events if isinstance(e, PackageRequested)}
    answers: dict[str, Counter] = defaultdict(Counter)
    declines: dict[str, Counter] = defaultdict(Counter)
    for answer in events:
        if isinstance(answer, BidSubmitted | OfferDeclined):
            answers[answer.provider_id][band_of[answer.package_id]] += 1
            if isinstance(answer, OfferDeclined):
                declines[answer.provider_id][band_of[answer.package_id]] += 1
    assert any(declines.values())
    for pid, by_band in answers.items():
        got = mix["providers"][pid]["by_band"]
        assert {b: c["answers"] for b, c in got.items()} == dict(by_band)
        assert {b: c["declines"] for b, c in got.items() if c["declines"]} == dict(declines[pid])

    # Providers by risk and quality: the latest register, the score at the start, the trend.
    [mine] = [p for p in quality["providers"] if p["provider_id"] == quality_provider]
    assert (mine["quality_score"], mine["quality_score_at_start"], mine["trend"]) == ("61.0", "85.0", "down")
    assert mine["local_risk"] == "high" and [c["change"] for c in mine["changes_in_period"]] == ["cqc_rating"]

    # Coverage: the providers that bid in each zone in the period; a gap under two.
    willing: dict[str, set[str]] = defaultdict(set)
    for bid in events:
        if isinstance(bid, BidSubmitted):
            willing[zone_of[bid.package_id]].add(bid.provider_id)
    for zone in framework.zones:
        assert gaps["zones"][zone]["willing_providers"] == sorted(willing.get(zone, ()))
        assert gaps["zones"][zone]["gap"] == (len(willing.get(zone, ())) < 2)
    assert gaps["gaps"] == sorted(z for z in framework.zones if len(willing.get(z, ())) < 2)
