"""The reporting service's projection of the service agreement records (decision records 0109-0111,
0118), in-process on the in-memory broker with a real PostgreSQL: a correction supersedes the record
it replaces in the weekly commitment (never both counted), the report agrees with the brokerage's own
weekly commitment (:func:`services.brokerage.domain.weekly_commitment`) week by week, the exports
carry every record with the one in force marked, and the KPI's spend against budget reads the
agreements in force at the period's end."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

import httpx
import pyarrow.parquet as pq

from schemas.events import AgreementFunding, Envelope, PayerLine, ServiceAgreementRecorded
from services.brokerage import domain as brokerage
from services.runtime import clock
from tests import local_issuer
from tests.handlers.test_reporting_handlers import project, reporting  # noqa: F401 (a fixture)

MONDAY = dt.date(2028, 3, 6)  # weeks no other test projects
AT = dt.datetime(2028, 2, 20, 9, 0, tzinfo=dt.UTC)
PERIOD = {"from": "2028-03-06", "to": "2028-03-26"}  # three UK weeks


def line(payer: str, pounds: str, percent: str | None = None, basis: str = "share") -> PayerLine:
    return PayerLine(payer=payer, basis=basis, percent=None if percent is None else Decimal(percent),
                     pounds_per_week=Decimal(pounds))  # fmt: skip


def record(
    provider_id: str,
    *,
    hours: str,
    rate: str,
    start: dt.date,
    end: dt.date | None = None,
    parts: list[tuple[dt.date, dt.date | None, list[PayerLine]]] | None = None,
    previous: ServiceAgreementRecorded | None = None,
    reason: str = "placed",
    status: str = "agreed",
    band: str = "rural",
    zone: str = "melton",
) -> ServiceAgreementRecorded:
    """A record (``previous``: the record this one corrects, same agreement, next version)."""
    weekly = (Decimal(hours) * Decimal(rate)).quantize(Decimal("0.01"))
    funding = [
        AgreementFunding(effective_from=f, effective_to=t, funder=lines[0].payer, lines=lines)
        for f, t, lines in (parts or [(start, end, [line("council", str(weekly), "100")])])
    ]
    package_id = previous.package_id if previous else uuid.uuid4()
    return ServiceAgreementRecorded(
        correlation_id=package_id,
        record_id=uuid.uuid4(),
        agreement_id=previous.agreement_id if previous else uuid.uuid4(),
        version=previous.version + 1 if previous else 1,
        supersedes=previous.record_id if previous else None,
        reason=reason,
        status=status,
        package_id=package_id,
        provider_id=provider_id,
        zone=zone,
        band=band,
        hourly_rate=Decimal(rate),
        band_rate=Decimal(rate),
        hours_per_week=Decimal(hours),
        weekly_cost=weekly,
        start_date=start,
        end_date=end,
        funding=funding,
        funding_revision=1 if previous else 0,
        cost_centre="HC-MELTON",
        rate_card="2027-28",
        recorded_at=AT + dt.timedelta(minutes=previous.version if previous else 0),
    )


def terms(r: ServiceAgreementRecorded) -> brokerage.AgreementTerms:
    """The record as the brokerage's own weekly commitment reads it."""
    return brokerage.AgreementTerms(
        provider_id=r.provider_id, zone=r.zone, band=r.band.value, hourly_rate=r.hourly_rate,
        band_rate=r.band_rate, hours_per_week=r.hours_per_week, start_date=r.start_date, end_date=r.end_date,
        status=r.status.value, cost_centre=r.cost_centre, rate_card=r.rate_card,
        funding_revision=r.funding_revision,
        funding=tuple(
            brokerage.FundingPart(
                p.effective_from, p.effective_to, p.funder.value,
                tuple(brokerage.PayerLine(x.payer.value, x.basis, x.percent, x.pounds_per_week) for x in p.lines),
            )
            for p in p_list
        ) if (p_list := r.funding) else (),
    )  # fmt: skip


def history(
    a: str, b: str, monday: dt.date = MONDAY, zone: str = "melton"
) -> tuple[list[ServiceAgreementRecorded], ServiceAgreementRecorded]:
    """Provider ``a``: an agreement of 10 h at 20.00 (200.00 a week, the council's) corrected from
    the second week by a new funding record (council 60%, NHS discharge 40% from its Monday); a second
    agreement starting on a Wednesday; one cancelled (nothing payable). Provider ``b``: one ended on
    the Thursday of the second week (version 2). Returns the records and ``a``'s superseded one."""
    placed = record(a, zone=zone, hours="10", rate="20.00", start=monday - dt.timedelta(days=14))
    split = record(
        a, hours="10", rate="20.00", start=placed.start_date, previous=placed, reason="funding_changed", zone=zone,
        parts=[
            (placed.start_date, monday + dt.timedelta(days=6), [line("council", "200.00", "100")]),
            (monday + dt.timedelta(days=7), None,
             [line("council", "120.00", "60"), line("nhs_discharge", "80.00", "40")]),
        ],
    )  # fmt: skip
    wednesday = record(a, zone=zone, hours="7.5", rate="23.10", start=monday + dt.timedelta(days=2), band="urban")
    cancelled = record(a, zone=zone, hours="12", rate="21.00", start=monday, status="cancelled", reason="cancelled")
    b_placed = record(b, zone=zone, hours="14", rate="19.95", start=monday - dt.timedelta(days=3))
    b_ended = record(
        b, hours="14", rate="19.95", start=b_placed.start_date, end=monday + dt.timedelta(days=10),
        previous=b_placed, reason="ended", zone=zone,
    )  # fmt: skip
    return [placed, split, wednesday, cancelled, b_placed, b_ended], placed


def in_force(records: list[ServiceAgreementRecorded]) -> list[ServiceAgreementRecorded]:
    replaced = {r.supersedes for r in records}
    return [r for r in records if r.record_id not in replaced]


async def test_commitments_count_the_record_in_force_and_agree_with_the_brokerage(reporting):  # noqa: F811
    service, broker, _ops = reporting
    a, b = f"fa-{uuid.uuid4().hex[:8]}", f"fb-{uuid.uuid4().hex[:8]}"
    records, superseded = history(a, b)
    twice: list[Envelope] = [*records, *records[:2]]  # the relay delivers at least once: twice changes nothing
    await project(broker, twice)

    def as_user(user: str, role: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service.http_app),
            base_url="http://reporting",
            headers=local_issuer.headers("reporting", user, (role,)),
        )

    async with as_user("demo-finance", "finance") as finance, as_user("demo-manager", "manager") as manager:
        with clock.frozen(dt.datetime(2028, 4, 1, 12, 0, tzinfo=dt.UTC)):
            report = await finance.get("/reports/commitments", params=PERIOD)
            bad = await finance.get("/reports/commitments", params={"from": "2028-03-26", "to": "2028-03-06"})
            # The exports are the council's BI team's (managers, administrators).
            csv_export = await manager.get("/exports/weekly_commitments.csv", params=PERIOD)
            records_export = await manager.get("/exports/service_agreements.csv")
            lines_export = await manager.get("/exports/service_agreement_lines.parquet")
            forbidden = await _ops.get("/reports/commitments", params=PERIOD)
    assert forbidden.status_code == 403, "operations reads no spend by provider"
    assert report.status_code == 200, report.text
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "from"
    weeks = report.json()["weeks"]
    assert [w["week_commencing"] for w in weeks] == ["2028-03-06", "2028-03-13", "2028-03-20"]

    mine = {a, b}
    current = [(r.provider_id, str(r.agreement_id), terms(r)) for r in in_force(records)]
    for week in weeks:
        monday = dt.date.fromisoformat(week["week_commencing"])
        expected = brokerage.weekly_commitment(current, monday)
        got = {(r["provider_id"], r["payer"]): Decimal(r["pounds"]) for r in week["rows"] if r["provider_id"] in mine}
        assert got == expected, f"week {monday}: the brokerage's own weekly commitment"

    first, second, third = (
        {(r["provider_id"], r["payer"]): r for r in w["rows"] if r["provider_id"] in mine} for w in weeks
    )
    # Week 1: the superseded record said council 200.00 too, but only once is counted; the Wednesday
    # start counts 5/7 of 173.25; b's whole week.
    assert Decimal(first[(a, "council")]["pounds"]) == Decimal("200.00") + Decimal("123.75")
    assert Decimal(first[(a, "council")]["hours_per_week"]) == Decimal("10") + Decimal("5.36")
    assert Decimal(first[(b, "council")]["pounds"]) == Decimal("279.30")
    # Week 2: the correction's split replaces the superseded record's 200.00 for the council.
    assert Decimal(second[(a, "council")]["pounds"]) == Decimal("120.00") + Decimal("173.25")
    assert Decimal(second[(a, "nhs_discharge")]["pounds"]) == Decimal("80.00")
    assert Decimal(second[(a, "nhs_discharge")]["hours_per_week"]) == Decimal("4.00"), "40% of 10 hours"
    assert Decimal(second[(b, "council")]["pounds"]) == Decimal("159.60"), "ended on the Thursday: 4/7"
    assert (b, "council") not in third, "ended the week before"
    assert weeks[1]["by_provider"][a]["agreements"] == 2, "the cancelled agreement is not committed"

    exported = list(csv.DictReader(io.StringIO(csv_export.text)))
    assert csv_export.status_code == 200
    assert {
        (r["week_commencing"], r["provider_id"], r["payer"], r["pounds"]) for r in exported if r["provider_id"] in mine
    } == {
        (w["week_commencing"], r["provider_id"], r["payer"], r["pounds"])
        for w in weeks
        for r in w["rows"]
        if r["provider_id"] in mine
    }  # fmt: skip
    kept = {r["record_id"]: r for r in csv.DictReader(io.StringIO(records_export.text))}
    assert {str(r.record_id) for r in records} <= kept.keys(), "every record kept, the superseded too"
    assert kept[str(superseded.record_id)]["in_force"] == "false"
    assert {kept[str(r.record_id)]["in_force"] for r in in_force(records)} == {"true"}
    table = pq.read_table(io.BytesIO(lines_export.content)).to_pylist()
    mine_lines = [r for r in table if r["record_id"] in {str(x.record_id) for x in records}]
    assert len(mine_lines) == sum(len(p.lines) for r in records for p in r.funding), "a row per payer line"


async def test_spend_against_budget_reads_the_agreements_in_force_at_the_end(reporting):  # noqa: F811
    _service, broker, ops = reporting
    a, b = f"fa-{uuid.uuid4().hex[:8]}", f"fb-{uuid.uuid4().hex[:8]}"
    records, _ = history(a, b, monday=dt.date(2028, 6, 5), zone="market-harborough")  # its own zone
    await project(broker, list[Envelope](records))
    with clock.frozen(dt.datetime(2028, 7, 1, 12, 0, tzinfo=dt.UTC)):
        # To the Wednesday of the second week: a's corrected agreement, a's Wednesday one, b's (ends
        # on the Thursday); never the superseded one nor the cancelled one.
        kpis = (
            await ops.get("/kpis", params={"from": "2028-06-05", "to": "2028-06-14", "zone": "market-harborough"})
        ).json()
        later = (
            await ops.get("/kpis", params={"from": "2028-06-05", "to": "2028-06-19", "zone": "market-harborough"})
        ).json()
    spend = kpis["more"]["spend_against_budget"]
    assert Decimal(spend["rural"]["weekly_spend"]) == Decimal("200.00") + Decimal("279.30")
    assert Decimal(spend["urban"]["weekly_spend"]) == Decimal("173.25")
    assert Decimal(later["more"]["spend_against_budget"]["rural"]["weekly_spend"]) == Decimal("200.00"), "b ended"


async def test_a_line_paid_by_calls_keeps_which_calls_in_the_exports(reporting):  # noqa: F811
    # Decision 0121: a funder may pay named daily calls whole; the projection kept the line but had
    # dropped which calls (reporting migration 0010).
    _service, broker, _ops = reporting
    provider = f"fc-{uuid.uuid4().hex[:8]}"
    calls_line = PayerLine(
        payer="nhs_discharge", basis="calls", calls=[1, 3], percent=Decimal("25"), pounds_per_week=Decimal("50.00")
    )
    paid_by_calls = record(
        provider, hours="10", rate="20.00", start=MONDAY,
        parts=[(MONDAY, None, [line("council", "150.00", "75"), calls_line])],
    )  # fmt: skip
    await project(broker, [paid_by_calls])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_service.http_app),
        base_url="http://reporting",
        headers=local_issuer.headers("reporting", "demo-manager", ("manager",)),
    ) as manager:
        as_csv = await manager.get("/exports/service_agreement_lines.csv")
        as_parquet = await manager.get("/exports/service_agreement_lines.parquet")
    assert as_csv.status_code == as_parquet.status_code == 200
    rows = [r for r in csv.DictReader(io.StringIO(as_csv.text)) if r["record_id"] == str(paid_by_calls.record_id)]
    assert sorted((r["payer"], r["basis"], r["calls"]) for r in rows) == [
        ("council", "share", ""),
        ("nhs_discharge", "calls", "1 3"),
    ]
    table = pq.read_table(io.BytesIO(as_parquet.content)).to_pylist()
    mine = [r for r in table if r["record_id"] == str(paid_by_calls.record_id)]
    assert sorted((r["basis"], r["calls"]) for r in mine) == [("calls", [1, 3]), ("share", None)]
