"""The reporting service in-process on the in-memory broker, with a real PostgreSQL: its projection
of a short history, its KPIs against the old topic-scan KPIs on the same history, its exports,
its dead-letter count and its answers to bad input."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import random
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from schemas.events import (
    Envelope,
    ExceptionDecided,
    ExceptionRequested,
    OfferDeclined,
    PackageCancelled,
    PackageEnded,
    PackageHandedBack,
    PackagePaused,
    PackagePlaced,
    PackageRequested,
    PackageResumed,
    PackageStarted,
    ServiceAgreementRecorded,
)
from services.bench.history import history, topic_of
from services.operations import kpis as topic_scan
from services.reporting.app import build
from services.runtime import clock, topics
from services.runtime.reference import load_framework
from tests import local_issuer

START = dt.datetime(2026, 10, 5, 8, 0, tzinfo=dt.UTC)
NOW = START + dt.timedelta(days=12)


@pytest.fixture
async def reporting(in_memory):
    """(service, broker, client acting as operations) of a reporting service started in-process."""
    service, broker = await in_memory(build, "reporting")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://reporting",
        headers=local_issuer.headers("reporting", "demo-ops", ("operations",)),
    ) as client:
        yield service, broker, client


async def publish(broker, event: Envelope) -> None:
    await broker.publish(
        event.model_dump_json().encode(),
        topic=topics.resolve(topic_of(event)),
        key=event.key.encode(),
        headers={"event_type": type(event).__name__},  # the class is named after its event_type
    )


async def project(broker, events: list[Envelope], seed: int = 3) -> None:
    """Publish as Kafka would deliver them: each topic in its own order, the topics interleaved
    at random (answers and confirmations may come before the request), some events twice."""
    rnd = random.Random(seed)
    queues: dict[str, list[Envelope]] = {}
    for e in events:
        queues.setdefault(topic_of(e), []).append(e)
    while any(queues.values()):
        topic = rnd.choice([t for t, q in queues.items() if q])
        event = queues[topic].pop(0)
        await publish(broker, event)
        if rnd.random() < 0.1:
            await publish(broker, event)  # the relay delivers at least once


async def kpis(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    with clock.frozen(NOW):
        response = await client.get("/kpis", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def rounded(value: Any) -> Any:
    """Floats to the millisecond: SQL's interpolated median may differ from Python's in the last bit."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


async def test_kpis_agree_with_the_topic_scan_kpis_on_the_same_history(reporting):
    _service, broker, client = reporting
    events = history(START, packages=40)
    await project(broker, events)
    start, end = START - dt.timedelta(hours=1), START + dt.timedelta(days=4)  # about 30 of the 40 packages
    old = topic_scan.compute(
        [json.loads(e.model_dump_json()) for e in events],
        start=start,
        end=end,
        now=NOW,
        framework=load_framework(),
        thresholds=topic_scan.load_thresholds(),
    )
    new = await kpis(client, **{"from": start.isoformat(), "to": end.isoformat()})
    assert 20 < old["packages"]["requested"] < 40
    for measure in ("placed", "unplaced", "cancelled", "handed_back", "awaiting_approval"):
        assert old["packages"][measure] > 0, measure  # the history exercises every count
    assert old["above_rate_exceptions"]["count"] > 0 and old["unplaced_queue"] and old["starts_by_uk_week"]
    new_period = new.pop("period")
    assert (new_period["start"], new_period["end"]) == (old["period"]["start"], old["period"]["end"])
    old.pop("period")
    assert set(new) - set(old) == {"more", "projection"}
    for key in old:
        assert rounded(new[key]) == rounded(old[key]), key


async def test_events_applied_twice_or_in_another_order_leave_the_same_projection(reporting):
    _service, broker, client = reporting
    events = history(START + dt.timedelta(days=30), packages=14, seed=11)
    await project(broker, events, seed=1)
    period = {"from": "2026-11-04", "to": "2026-11-10"}
    once = await kpis(client, **period)
    await project(broker, list(reversed(events)), seed=2)  # all again, each topic backwards
    again = await kpis(client, **period)
    assert once.pop("projection")["packages"] >= 14
    again.pop("projection")
    assert again == once and once["packages"]["requested"] == 14


async def test_business_dates_and_filters(reporting):
    _service, broker, client = reporting
    events = history(START + dt.timedelta(days=60), packages=12, seed=5)
    await project(broker, events)
    requested = [e for e in events if isinstance(e, PackageRequested)]
    first_day = clock.uk_date(requested[0].requested_at)
    k = await kpis(client, **{"from": first_day.isoformat(), "to": first_day.isoformat()})
    on_that_day = [e for e in requested if clock.uk_date(e.requested_at) == first_day]
    assert k["packages"]["requested"] == len(on_that_day) > 0
    assert k["period"]["start"] == clock.uk_day_start(first_day).isoformat()
    zone = requested[0].package.zone
    whole = {"from": first_day.isoformat(), "to": (first_day + dt.timedelta(days=3)).isoformat()}
    in_zone = await kpis(client, **whole, zone=zone)
    everywhere = await kpis(client, **whole)
    expected = [
        e
        for e in requested
        if e.package.zone == zone and clock.uk_date(e.requested_at) <= first_day + dt.timedelta(days=3)
    ]
    assert in_zone["packages"]["requested"] == len(expected) < everywhere["packages"]["requested"]
    assert set(in_zone["time_to_place"]["by_zone"]) <= {zone}
    rural = await kpis(client, **whole, band="rural")
    assert 0 < rural["packages"]["requested"] < everywhere["packages"]["requested"]
    assert set(rural["weekly_spend_by_band"]) <= {"rural"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "last tuesday"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"to": "2026-11-01T09:00"}, "to"),  # no offset
        ({"from": "2026-11-10", "to": "2026-11-01"}, "from"),
        ({"zone": "atlantis"}, "zone"),
        ({"band": "suburban"}, "band"),
    ],
)
async def test_a_bad_period_or_filter_is_422_naming_it(reporting, params, field):
    _, _, client = reporting
    response = await client.get("/kpis", params=params)
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["fields"]] == [field]


async def test_exports_as_csv_and_parquet(reporting):
    service, broker, client = reporting
    events = history(START + dt.timedelta(days=90), packages=10, seed=9)
    await project(broker, events)
    admin = local_issuer.headers("reporting", "demo-admin", ("council_admin",))
    count = await service.pool.fetchval("SELECT count(*) FROM packages")
    response = await client.get("/exports/packages.csv", headers=admin)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == count >= 10
    ids = {str(e.package_id) for e in events if isinstance(e, PackageRequested)}
    assert ids <= {r["package_id"] for r in rows}
    response = await client.get("/exports/answers.parquet", headers=admin)
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == await service.pool.fetchval("SELECT count(*) FROM answers")
    assert {"package_id", "provider_id", "kind", "hourly_rate", "reason"} <= set(table.column_names)
    assert set(table.column("kind").to_pylist()) == {"bid", "decline"}
    for name, field in (("persons.csv", "table"), ("packages.xlsx", "format"), ("packages", "format")):
        bad = await client.get(f"/exports/{name}", headers=admin)
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == field, name


async def test_who_may_read_kpis_and_exports(reporting):
    _, _, client = reporting
    broker = local_issuer.headers("reporting", "demo-broker", ("broker",))
    assert (await client.get("/kpis", headers=broker)).status_code == 403
    assert (await client.get("/exports/packages.csv")).status_code == 403  # operations: no row-level prices
    manager = local_issuer.headers("reporting", "demo-manager", ("manager",))
    assert (await client.get("/kpis", headers=manager)).status_code == 200


async def test_a_record_it_cannot_read_is_dead_lettered_and_counted(reporting):
    service, broker, client = reporting
    before = (await kpis(client))["projection"]["dead_letters"]
    await broker.publish(b'{"event_type": "PackageRequested", "broken', topic=topics.resolve("brokerage.packages"))
    for _ in range(100):
        if (await kpis(client))["projection"]["dead_letters"] == before + 1:
            break
        await asyncio.sleep(0.05)
    assert (await kpis(client))["projection"]["dead_letters"] == before + 1
    row = await service.pool.fetchrow("SELECT * FROM dead_letters ORDER BY recorded_at DESC LIMIT 1")
    assert row["reason"] == "invalid" and row["origin_topic"] == topics.resolve("brokerage.packages")


async def test_the_papers_further_measures_over_the_period(reporting):
    _service, broker, client = reporting
    # Before every other test's history: in care at the period's end counts every package placed
    # by then, whenever requested.
    begin = START - dt.timedelta(days=200)
    events = history(begin, packages=21, seed=13)
    await project(broker, events)
    start, end = begin - dt.timedelta(hours=1), begin + dt.timedelta(days=10)
    more = (await kpis(client, **{"from": start.isoformat(), "to": end.isoformat()}))["more"]
    # Computed here from the events themselves.
    hand_backs: dict[str, int] = {}
    for e in events:
        if isinstance(e, PackageHandedBack) and start <= e.recorded_at < end:
            hand_backs[e.provider_id] = hand_backs.get(e.provider_id, 0) + 1
    assert more["hand_backs_by_provider"] == hand_backs and hand_backs
    latest: dict = {}
    gone: set = set()
    for e in events:
        if isinstance(e, PackagePlaced):
            latest[e.package_id] = e
        if isinstance(e, PackageCancelled):
            gone.add(e.package_id)
    handed_back = {e.package_id: e.recorded_at for e in events if isinstance(e, PackageHandedBack)}
    in_care = [
        p
        for pid, p in latest.items()
        if pid not in gone and not (pid in handed_back and handed_back[pid] > p.placed_at)
    ]
    assert more["in_care_at_end"]["people"] == len(in_care) > 0
    assert Decimal(more["in_care_at_end"]["hours_per_week"]) == sum(p.hours_per_week for p in in_care)
    # Spend against budget (decision 0118): the service agreement records in force on the period's
    # last UK day, pounds per week by band - never a superseded record, nor a cancelled one.
    last_day = clock.uk_date(end - dt.timedelta(microseconds=1))
    records = [e for e in events if isinstance(e, ServiceAgreementRecorded)]
    replaced = {r.supersedes for r in records}
    spend: dict[str, Decimal] = {}
    for r in records:
        if r.record_id in replaced or r.status != "agreed" or r.start_date > last_day:
            continue
        if r.end_date is None or r.end_date >= last_day:
            spend[r.band] = spend.get(r.band, Decimal(0)) + r.weekly_cost
    assert spend and len(replaced - {None}) > 0, "the history has corrections"
    assert {
        b: Decimal(v["weekly_spend"]) for b, v in more["spend_against_budget"].items() if v["weekly_spend"] != "0.00"
    } == {b: v.quantize(Decimal("0.01")) for b, v in spend.items()}
    asked = sum(isinstance(e, ExceptionRequested) for e in events)
    decided = sum(isinstance(e, ExceptionDecided) for e in events)
    assert more["exceptions"] == {"requested": asked, "approved": decided, "rejected": 0} and asked > decided > 0
    declines = sum(isinstance(e, OfferDeclined) for e in events)
    weekly = more["declines_by_uk_week"]
    assert sum(n for w in weekly.values() for r in w["by_band"].values() for n in r.values()) == declines > 0
    starts = sum(isinstance(e, PackageStarted) and start <= clock.uk_day_start(e.started_on) < end for e in events)
    assert sum(more["starts_in_period_by_uk_week"].values()) == starts > 0


async def test_pauses_and_endings_are_milestones_and_an_ended_package_leaves_care_from_its_date(reporting):
    """Decision 0078's events: each a milestone once; an ending takes the package out of "in care"
    from the UK midnight of its effective date; a paused package stays in care (its provider holds
    the hours). Long after every other test's history, so only these events change the figures."""
    service, broker, client = reporting
    begin = START + dt.timedelta(days=400)
    events = history(begin, packages=10, seed=17)
    await project(broker, events)
    gone = {e.package_id for e in events if isinstance(e, (PackageCancelled, PackageHandedBack))}
    placed = {e.package_id: e for e in events if isinstance(e, PackagePlaced) and e.package_id not in gone}
    ended, paused = list(placed.values())[:2]
    effective = clock.uk_date(begin) + dt.timedelta(days=40)
    pause_at = clock.uk_day_start(effective) - dt.timedelta(days=3)

    def common(p: PackagePlaced, at: dt.datetime) -> dict[str, Any]:
        return {
            "correlation_id": p.package_id,
            "occurred_at": at,
            "package_id": p.package_id,
            "provider_id": p.provider_id,
            "hours_per_week": p.hours_per_week,
            "requested_by": "broker.amy",
        }

    pause = PackagePaused(
        **common(paused, pause_at),
        reason="admitted_to_hospital",
        paused_on=clock.uk_date(pause_at),
        hold_expires_at=pause_at + dt.timedelta(days=28),
        paid_during_hold=True,
        paused_by="broker.amy",
        paused_at=pause_at,
    )
    resume = PackageResumed(
        **common(paused, pause_at + dt.timedelta(days=1)),
        paused_on=clock.uk_date(pause_at),
        resumed_on=clock.uk_date(pause_at) + dt.timedelta(days=1),
        resumed_by="broker.amy",
        resumed_at=pause_at + dt.timedelta(days=1),
    )
    again = pause_at + dt.timedelta(days=2)
    second_pause = pause.model_copy(update={"event_id": uuid.uuid4(), "occurred_at": again, "paused_at": again})
    ending = PackageEnded(
        **common(ended, pause_at),
        reason="moved_to_residential_care",
        effective_date=effective,
        ended_by="broker.amy",
        ended_at=pause_at,
    )

    async def in_care(end: dt.datetime) -> dict[str, Any]:
        figures = await kpis(client, **{"from": begin.isoformat(), "to": end.isoformat()})
        return figures["more"]["in_care_at_end"]

    before_pause = await in_care(pause_at - dt.timedelta(hours=1))
    for event in (pause, pause, resume, second_pause, ending, ending):  # the relay delivers at least once
        await publish(broker, event)
    assert await in_care(pause_at + dt.timedelta(hours=1)) == before_pause  # paused: still in care
    midnight = clock.uk_day_start(effective)
    last_day = await in_care(midnight - dt.timedelta(hours=1))
    first_day_without = await in_care(midnight + dt.timedelta(hours=1))
    assert last_day == before_pause and last_day["people"] >= 2
    assert first_day_without["people"] == last_day["people"] - 1
    assert Decimal(first_day_without["hours_per_week"]) == Decimal(last_day["hours_per_week"]) - ended.hours_per_week

    async with service.pool.acquire() as conn:
        rows = {
            r["package_id"]: r
            for r in await conn.fetch(
                "SELECT package_id, status, ended_on, end_reason, pauses FROM packages WHERE package_id = ANY($1)",
                [ended.package_id, paused.package_id],
            )
        }
        milestones = await conn.fetch(
            "SELECT event_type, on_date, reason FROM milestones WHERE package_id = ANY($1) "
            "AND event_type IN ('PackagePaused', 'PackageResumed', 'PackageEnded') ORDER BY occurred_at, event_type",
            [ended.package_id, paused.package_id],
        )
    assert dict(rows[ended.package_id]) == {
        "package_id": ended.package_id,
        "status": "PackageEnded",
        "ended_on": effective,
        "end_reason": "moved_to_residential_care",
        "pauses": 0,
    }
    assert rows[paused.package_id]["pauses"] == 2 and rows[paused.package_id]["status"] == "PackagePaused"
    assert rows[paused.package_id]["ended_on"] is None
    assert [(m["event_type"], m["reason"]) for m in milestones] == [
        ("PackageEnded", "moved_to_residential_care"),
        ("PackagePaused", "admitted_to_hospital"),
        ("PackageResumed", None),
        ("PackagePaused", "admitted_to_hospital"),
    ]


async def test_changes_to_a_running_package_are_milestones_once_each(reporting):
    """Decision record 0082: an accepted change, a declined one and a hand-over, each recorded once."""
    from schemas.events import ChangeDeclined, PackageChanged, PackageHandedOver, PackageSpec, VisitPattern

    service, broker, _ = reporting
    package_id, change_id, at = uuid.uuid4(), uuid.uuid4(), NOW
    spec = PackageSpec(
        zone="melton",
        band="urban",
        postcode_district="LE13",
        hours_per_week=Decimal("10.5"),
        visits=VisitPattern(calls_per_day=3, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="community",
        start_date=clock.uk_date(at),
    )
    common = dict(correlation_id=package_id, package_id=package_id)
    changed = PackageChanged(
        **common,
        change_id=change_id,
        provider_id="oak-care",
        package=spec,
        previous_hours_per_week=Decimal(7),
        hours_per_week=Decimal("10.5"),
        reason="needs_increased_after_fall",
        effective_date=clock.uk_date(at),
        discussed_with_person=False,
        changed_by="broker.bob",
        changed_at=at,
    )
    declined = ChangeDeclined(
        **common,
        change_id=uuid.uuid4(),
        provider_id="oak-care",
        outcome="window_closed",
        previous_hours_per_week=Decimal("10.5"),
        hours_per_week=Decimal(7),
        reason="reablement_progress",
        declined_at=at + dt.timedelta(days=1),
    )
    over = PackageHandedOver(
        **common,
        from_provider_id="oak-care",
        to_provider_id="elm-care",
        previous_hours_per_week=Decimal("10.5"),
        hours_per_week=Decimal(7),
        handed_over_on=clock.uk_date(at) + dt.timedelta(days=3),
        handed_over_at=at + dt.timedelta(days=2),
    )
    for event in (changed, changed, declined, over, over):
        await publish(broker, event)
    async with service.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_type, provider_id, reason, hours_per_week FROM milestones WHERE package_id = $1 "
            "ORDER BY occurred_at",
            package_id,
        )
    assert [tuple(r.values()) for r in rows] == [
        ("PackageChanged", "oak-care", "needs_increased_after_fall", Decimal("10.5")),
        ("ChangeDeclined", "oak-care", "window_closed", Decimal(7)),
        ("PackageHandedOver", "oak-care", None, Decimal("10.5")),
    ]


async def test_reviews_and_funding_records_are_milestones_once_each(reporting):
    """Decision records 0088 and 0089: a review (its outcome and date) and a funding revision (the
    first period's funder and date), each recorded once however often delivered; the status unchanged."""
    from schemas.events import FundingPeriod, FundingRecorded, FundingShare, PackageReviewed

    service, broker, _ = reporting
    package_id, at = uuid.uuid4(), NOW
    common = dict(correlation_id=package_id, package_id=package_id)
    reviewed = PackageReviewed(
        **common,
        review_id=uuid.uuid4(),
        provider_id="oak-care",
        outcome="technology_enabled_care",
        due_on=clock.uk_date(at),
        reviewed_on=clock.uk_date(at),
        change_id=uuid.uuid4(),
        technology=["telecare_alarm"],
        next_review_due_on=clock.uk_date(at) + dt.timedelta(days=365),
        hours_per_week=Decimal(7),
        reviewed_by="broker.kim",
        reviewed_at=at,
    )
    funded = FundingRecorded(
        **common,
        revision=1,
        periods=[
            FundingPeriod(
                effective_from=clock.uk_date(at),
                funder="nhs_discharge",
                shares=[FundingShare(funder="nhs_discharge", percent=Decimal(100))],
            )
        ],
        provider_id="oak-care",
        recorded_by="broker.kim",
        recorded_at=at + dt.timedelta(hours=1),
    )
    for event in (reviewed, funded, reviewed, funded):
        await publish(broker, event)
    async with service.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_type, provider_id, reason, on_date FROM milestones WHERE package_id = $1 "
            "ORDER BY occurred_at",
            package_id,
        )
    assert [tuple(r.values()) for r in rows] == [
        ("PackageReviewed", "oak-care", "technology_enabled_care", clock.uk_date(at)),
        ("FundingRecorded", "oak-care", "nhs_discharge", clock.uk_date(at)),
    ]


async def test_the_discharge_kpi_counts_care_at_home_on_day_0_or_1_of_medically_fit(reporting):
    """Decision record 0097 (000:66-68): of the discharges medically fit in the period, those with care
    at home (an in-house referral's first day, or a provider's start) on the day or the day after."""
    from schemas.events import DischargeReferred, DischargeRequested, PackageSpec, VisitPattern

    _service, broker, client = reporting
    fit = dt.date(2024, 2, 12)  # a Monday in winter (GMT), far from the other tests' history
    at = clock.uk_day_start(fit) + dt.timedelta(hours=9)

    def requested(package_id: uuid.UUID, fit_on: dt.date) -> list[Envelope]:
        common = dict(correlation_id=package_id, package_id=package_id)
        spec = PackageSpec(
            zone="lutterworth",
            band="rural",
            postcode_district="LE17",
            hours_per_week=Decimal(7),
            visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
            needs=["personal_care"],
            urgency="hospital_discharge",
            start_date=fit_on,
        )
        return [
            PackageRequested(**common, package=spec, requested_at=at),
            DischargeRequested(
                **common,
                hospital="uhl-lri",
                ward="W17",
                pathway=1,
                medically_fit_on=fit_on,
                reablement_potential=False,
                nhs_funded_weeks=4,
                zone="lutterworth",
                hours_per_week=Decimal(7),
                fallback_due_at=at + dt.timedelta(hours=27),
                requested_by="broker.amy",
                requested_at=at,
            ),
        ]

    def placed(package_id: uuid.UUID, start: dt.date) -> PackagePlaced:
        return PackagePlaced(
            correlation_id=package_id,
            package_id=package_id,
            provider_id="oak-care",
            offer_round=1,
            tier="prime",
            hourly_rate=Decimal("22.95"),
            hours_per_week=Decimal(7),
            start_date=start,
            zone="lutterworth",
            band="rural",
            urgency="hospital_discharge",
            rate_card="2020-21",
            requested_by="broker.amy",
            placed_at=at + dt.timedelta(hours=3),
        )

    day1, day2, waiting, earlier, cancelled = (uuid.uuid4() for _ in range(5))
    events: list[Envelope] = [
        *requested(day1, fit),
        placed(day1, fit + dt.timedelta(days=1)),  # the provider starts on day 1: counts
        *requested(day2, fit),
        DischargeReferred(
            correlation_id=day2,
            package_id=day2,
            service="crisis_response",
            step="fallback",
            referred_on=fit + dt.timedelta(days=2),
            medically_fit_on=fit,
            days_after_medically_fit=2,
            hours_per_week=Decimal(7),
            requested_by="broker.amy",
            referred_at=at + dt.timedelta(days=2),
        ),
        placed(day2, fit + dt.timedelta(days=5)),  # crisis response on day 2, the provider later: too late
        *requested(waiting, fit),  # no care yet: counts against
        *requested(earlier, fit - dt.timedelta(days=10)),  # medically fit before the period: not counted
        placed(earlier, fit - dt.timedelta(days=10)),
        *requested(cancelled, fit),  # cancelled with no care: left out
        PackageCancelled(
            correlation_id=cancelled,
            package_id=cancelled,
            reason="person_died",
            cancelled_by="broker.amy",
            hours_per_week=Decimal(7),
            cancelled_at=at + dt.timedelta(hours=5),
        ),
    ]
    await project(broker, events)
    with clock.frozen(at + dt.timedelta(days=30)):
        response = await client.get("/kpis", params={"from": fit.isoformat(), "to": fit.isoformat()})
    assert response.status_code == 200, response.text
    measure = response.json()["more"]["hospital_discharge"]
    assert measure == {
        "discharges": 3,
        "home_on_day_0_or_1": 1,
        "share_day_0_or_1": round(1 / 3, 4),
        "baseline_share": 0.65,
        "with_care": 2,
        "still_waiting": 1,
        "referred_to_reablement": 0,
        "referred_to_crisis_response": 1,
        "rag": "red",
    }
