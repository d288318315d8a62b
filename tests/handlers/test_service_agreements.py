"""The hand-off to finance (decision records 0109-0111) on the brokerage's handlers and API, with a real
PostgreSQL: each placement, start on another day, change, ending, cancellation, unpaid pause and resume
and funding change writes a service agreement record with its ServiceAgreementRecorded event in the same
transaction; corrections are new versions that supersede; the import file and the weekly commitment;
bad parameters refused naming them."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import uuid
from decimal import Decimal

from schemas.events import ServiceAgreementRecorded
from schemas.vocabulary import CancelReason, EndReason, Funder, PauseReason
from services.brokerage import domain, handlers
from services.runtime import clock
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.handlers.market import answer, outbox_types, request
from tests.handlers.test_package_changes import MORE, answer_change, change, of_type
from tests.handlers.test_pauses_and_endings import api, started

HOSPITAL = PauseReason.admitted_to_hospital
FINANCE = local_issuer.headers("brokerage", "demo-finance", ("finance",))


async def records(service, package_id) -> list[dict]:
    """The package's ServiceAgreementRecorded events in the order written (from the outbox)."""
    return of_type(await outbox_types(service, package_id, agreements=True), "ServiceAgreementRecorded")


async def stored(service, package_id) -> list[dict]:
    rows = await service.pool.fetch(
        "SELECT * FROM service_agreements WHERE package_id = $1 ORDER BY recorded_at, version", package_id
    )
    return [dict(r) for r in rows]


async def test_a_placement_records_an_open_agreement_and_a_later_start_supersedes_it(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    [placed] = await records(service, package_id)
    assert (placed["reason"], placed["status"], placed["version"], placed["supersedes"]) == (
        "placed",
        "agreed",
        1,
        None,
    )
    assert (placed["provider_id"], placed["hourly_rate"], placed["hours_per_week"], placed["weekly_cost"]) == (
        ids["prime_best"],
        "20.00",
        "7.00",
        "140.00",
    )
    assert (placed["start_date"], placed["end_date"]) == (today.isoformat(), None)
    assert placed["cost_centre"] == rules.finance().cost_centre("bottesford") == "ASC-HC-MEL"
    [part] = placed["funding"]  # no funding record: the request's "council", 100%
    assert part["funder"] == "council" and [(x["payer"], x["pounds_per_week"]) for x in part["lines"]] == [
        ("council", "140.00")
    ]
    assert "Ada" not in str(placed) and "9990001112" not in str(placed), "package id only"
    # Care began two days earlier than agreed: a new version, the old one kept. (The package was
    # requested before that: a start is never dated before its request.)
    await service.pool.execute(
        "UPDATE packages SET requested_at = requested_at - interval '5 days' WHERE package_id = $1", package_id
    )
    async with unit_of_work(service.pool) as uow:
        await handlers.record_start(uow, package_id, started_on=today - dt.timedelta(days=2), recorded_by="broker.amy")
    first, corrected = await records(service, package_id)
    assert (corrected["agreement_id"], corrected["version"], corrected["supersedes"]) == (
        first["agreement_id"],
        2,
        first["record_id"],
    )
    assert corrected["reason"] == "started" and corrected["start_date"] == (today - dt.timedelta(days=2)).isoformat()
    rows = await stored(service, package_id)
    assert [r["version"] for r in rows] == [1, 2] and rows[0]["start_date"] == today, "never edited"
    # The same start again says nothing new: no record.
    async with unit_of_work(service.pool) as uow:
        await service.pool.execute("UPDATE packages SET status = 'placed' WHERE package_id = $1", package_id)
        await handlers.record_start(uow, package_id, started_on=today - dt.timedelta(days=2), recorded_by="broker.amy")
    assert len(await records(service, package_id)) == 2


async def test_a_change_ends_the_agreement_the_day_before_and_starts_a_new_one_then_an_ending_closes_it(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    change_id = await change(service, rules, package_id, MORE, "10.5")
    await answer_change(broker, package_id, change_id, ids["prime_best"])
    placed, started_again, ended_by_change, new = await records(service, package_id)
    assert ended_by_change["reason"] == new["reason"] == "changed"
    assert ended_by_change["supersedes"] == started_again["record_id"]
    assert ended_by_change["end_date"] == (today - dt.timedelta(days=1)).isoformat()
    assert ended_by_change["hours_per_week"] == "7.00" and ended_by_change["weekly_cost"] == "140.00"
    assert new["agreement_id"] != placed["agreement_id"] and new["version"] == 1
    assert (new["start_date"], new["end_date"], new["hours_per_week"], new["weekly_cost"]) == (
        today.isoformat(),
        None,
        "10.50",
        "210.00",
    )
    async with unit_of_work(service.pool) as uow:
        await handlers.end_package(
            uow,
            rules,
            package_id,
            reason=EndReason.moved_to_residential_care,
            effective_date=today + dt.timedelta(days=5),
            ended_by="broker.amy",
        )
    ended = (await records(service, package_id))[-1]
    assert (ended["reason"], ended["agreement_id"], ended["version"]) == ("ended", new["agreement_id"], 2)
    assert ended["end_date"] == (today + dt.timedelta(days=4)).isoformat(), "the day before the first day without care"
    # Only the agreement still running past the ending got a record: the one ended by the change did not.
    assert len(await records(service, package_id)) == 5
    # The list API in the order written, and newest first (the finance page's newest records).
    async with api(service) as client:
        params = {"package_id": str(package_id)}
        oldest = (await client.get("/service-agreements", params=params, headers=FINANCE)).json()["records"]
        params |= {"newest_first": "true", "limit": "2"}
        newest = (await client.get("/service-agreements", params=params, headers=FINANCE)).json()["records"]
    assert [r["record_id"] for r in newest] == [r["record_id"] for r in oldest[::-1][:2]]


async def test_funding_recorded_before_the_award_is_the_first_agreements_funding(brokerage):
    """The award reads the package's funding with its placement (repository.mark_placed, decision
    0145): a record made while the package was still on offer splits the first agreement."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await request(service, rules)
    async with unit_of_work(service.pool) as uow:
        await handlers.record_funding(
            uow,
            package_id,
            periods=[handlers.FundingPeriodInput(today, Funder.nhs_discharge)],
            top_up=None,
            recorded_by="broker.amy",
        )
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    [placed] = await records(service, package_id)
    assert (placed["reason"], placed["version"], placed["funding_revision"]) == ("placed", 1, 1)
    [part] = placed["funding"]
    assert [(x["payer"], x["pounds_per_week"]) for x in part["lines"]] == [("nhs_discharge", "140.00")]
    lines = await service.pool.fetch(
        "SELECT payer, pounds_per_week FROM agreement_lines_in_force WHERE package_id = $1", package_id
    )
    assert [(r["payer"], r["pounds_per_week"]) for r in lines] == [("nhs_discharge", Decimal("140.00"))]


async def test_a_funding_record_supersedes_every_agreement_with_the_split_and_the_top_up(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today)
    band_rate = await service.pool.fetchval("SELECT band_rate FROM packages WHERE package_id = $1", package_id)
    async with unit_of_work(service.pool) as uow:
        await handlers.record_funding(
            uow,
            package_id,
            periods=[
                handlers.FundingPeriodInput(today, Funder.nhs_discharge),
                handlers.FundingPeriodInput(
                    today + dt.timedelta(days=28),
                    Funder.joint,
                    [(Funder.council, Decimal("60")), (Funder.nhs_continuing_healthcare, Decimal("40"))],
                ),
            ],
            top_up=None,
            recorded_by="broker.amy",
        )
    latest = (await records(service, package_id))[-1]
    assert (latest["reason"], latest["version"], latest["funding_revision"]) == ("funding_changed", 2, 1)
    nhs, joint = latest["funding"]
    assert (nhs["effective_from"], nhs["effective_to"]) == (
        today.isoformat(),
        (today + dt.timedelta(days=27)).isoformat(),
    )
    assert [(x["payer"], x["pounds_per_week"]) for x in nhs["lines"]] == [("nhs_discharge", "140.00")]
    assert joint["effective_to"] is None and [
        (x["payer"], x["percent"], x["pounds_per_week"]) for x in joint["lines"]
    ] == [
        ("council", "60", "84.00"),
        ("nhs_continuing_healthcare", "40", "56.00"),
    ]
    assert band_rate >= Decimal("20.00"), "a bid at or under the band rate: no above-band line"
    # The same funding recorded again changes nobody's split: no record.
    async with unit_of_work(service.pool) as uow:
        await handlers.record_funding(
            uow,
            package_id,
            periods=[
                handlers.FundingPeriodInput(today, Funder.nhs_discharge),
                handlers.FundingPeriodInput(
                    today + dt.timedelta(days=28),
                    Funder.joint,
                    [(Funder.council, Decimal("60")), (Funder.nhs_continuing_healthcare, Decimal("40"))],
                ),
            ],
            top_up=None,
            recorded_by="broker.amy",
        )
    after = await records(service, package_id)
    assert after[-1]["funding_revision"] == 2 and len(after) == 3, "a new revision re-versions (revision changed)"


async def test_a_cancellation_before_care_cancels_the_agreement_and_an_unpaid_pause_stops_payment(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    async with unit_of_work(service.pool) as uow:
        await handlers.cancel(uow, package_id, reason=CancelReason.person_declined, cancelled_by="broker.amy")
    placed, cancelled = await records(service, package_id)
    assert (cancelled["status"], cancelled["reason"], cancelled["supersedes"]) == (
        "cancelled",
        "cancelled",
        placed["record_id"],
    )
    # A paid hold (the default) changes nothing paid: no record. An unpaid one ends the agreement.
    other = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=7))
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(uow, rules, other, reason=HOSPITAL, paused_on=today, paused_by="b.a")
    assert [r["reason"] for r in await records(service, other)] == ["placed", "started"]
    async with unit_of_work(service.pool) as uow:
        await handlers.resume(uow, rules, other, resumed_on=today, resumed_by="b.a")
    assert [r["reason"] for r in await records(service, other)] == ["placed", "started"]
    unpaid = dataclasses.replace(rules, pause_hold_paid=False)
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(uow, unpaid, other, reason=HOSPITAL, paused_on=today, paused_by="b.a")
    paused = (await records(service, other))[-1]
    assert (paused["reason"], paused["end_date"]) == ("paused", (today - dt.timedelta(days=1)).isoformat())
    async with unit_of_work(service.pool) as uow:
        await handlers.resume(uow, unpaid, other, resumed_on=today + dt.timedelta(days=3), resumed_by="b.a")
    resumed = (await records(service, other))[-1]
    assert (resumed["reason"], resumed["version"], resumed["start_date"], resumed["end_date"]) == (
        "resumed",
        1,
        (today + dt.timedelta(days=3)).isoformat(),
        None,
    )
    for record in await records(service, other):
        ServiceAgreementRecorded.model_validate(record)  # every record is a valid contract


async def test_the_export_follows_the_documented_columns_and_bad_parameters_are_named(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=1))
    async with api(service) as client:
        response = await client.get(
            "/service-agreements/export", params={"provider_id": ids["prime_best"]}, headers=FINANCE
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(response.text)))
        assert tuple(csv.reader(io.StringIO(response.text)).__next__()) == domain.EXPORT_COLUMNS
        mine = [r for r in table if r["ClientRef"] == str(package_id)]
        assert [(r["AgreementVersion"], r["RecordReason"]) for r in mine] == [("1", "placed"), ("2", "started")]
        assert mine[1]["SupersedesRecordRef"] == mine[0]["RecordRef"]
        assert mine[1]["AgreementStartDate"] == (today - dt.timedelta(days=1)).strftime("%d/%m/%Y")
        assert (mine[1]["UnitCost"], mine[1]["UnitsPerWeek"], mine[1]["FundingWeeklyAmount"]) == (
            "20.00",
            "7.00",
            "140.00",
        )
        assert (mine[1]["CostCentre"], mine[1]["ServiceType"], mine[1]["SupplierRef"]) == (
            "ASC-HC-MEL",
            "HCDOM",
            ids["prime_best"],
        )
        week = clock.uk_week_of(today)
        report = (
            await client.get("/service-agreements/commitments", params={"week": str(week)}, headers=FINANCE)
        ).json()
        mine_now = [r for r in report["rows"] if r["provider_id"] == ids["prime_best"]]
        days = domain.overlap_days(today - dt.timedelta(days=1), None, week)
        assert mine_now and mine_now[0]["payer"] == "council"
        assert Decimal(mine_now[0]["pounds"]) >= (Decimal("140.00") * days / 7).quantize(Decimal("0.01"))
        for params, field in [
            ({"recorded_from": str(today), "recorded_to": str(today - dt.timedelta(days=1))}, "recorded_to"),
            ({"recorded_from": "01/12/2026"}, "recorded_from"),
            ({"provider_id": "Not A Provider"}, "provider_id"),
            # Days at the calendar's edges: a 422, never an overflow's 500 (an attack test found these).
            ({"recorded_to": "9999-12-31"}, "recorded_to"),
            ({"recorded_to": "0001-01-01"}, "recorded_to"),
            ({"recorded_from": "9999-01-01", "recorded_to": "9999-01-02"}, "recorded_from"),
        ]:
            refused = await client.get("/service-agreements/export", params=params, headers=FINANCE)
            assert refused.status_code == 422, params
            assert field in {f["field"] for f in refused.json()["errors"]}, refused.json()
        for params, field in [
            ({"week": str(week + dt.timedelta(days=2))}, "week"),
            ({"format": "xlsx"}, "format"),
            ({"week": "9999-12-27"}, "week"),
        ]:
            refused = await client.get("/service-agreements/commitments", params=params, headers=FINANCE)
            assert refused.status_code == 422 and field in {f["field"] for f in refused.json()["errors"]}
        # A broker is not the finance team.
        assert (await client.get("/service-agreements/export")).status_code == 403
    assert uuid.UUID(mine[0]["AgreementRef"])


async def test_the_commitment_report_summed_in_sql_gives_the_domain_rules_pennies(brokerage):
    """repository.weekly_pound_days sums the report in one statement; domain.weekly_commitment is
    the rule. Over every agreement this database holds (placements, starts, changes, funding splits
    and top-ups, cancellations, endings from the tests above, and one more placed and changed here),
    for the weeks around today, both give the same pennies per provider and payer."""
    from services.brokerage import repository as repo

    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=9))
    change_id = await change(service, rules, package_id, MORE, "10.5")
    await answer_change(broker, package_id, change_id, ids["prime_best"])
    rows = await service.pool.fetch(f"SELECT * FROM service_agreements s WHERE {repo.IN_FORCE} AND status = 'agreed'")
    assert rows, "agreements to report on"
    this_week = clock.uk_week_of(today)
    for weeks in range(-3, 3):
        monday = this_week + dt.timedelta(weeks=weeks)
        rule = domain.weekly_commitment(
            ((r["provider_id"], str(r["agreement_id"]), repo.terms_of(r)) for r in rows), monday
        )
        summed = {
            (r["provider_id"], r["payer"]): domain.commitment_pounds(r["pound_days"])
            for r in await repo.weekly_pound_days(service.pool, monday)
        }
        assert summed == rule, monday
