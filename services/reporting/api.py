"""The reporting service's HTTP API: KPIs for any period, and the projection's tables as
downloads for the council's business-intelligence tools (docs/guide/reporting.md)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import uuid
from decimal import Decimal
from pathlib import Path as Path_
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from services.operations.kpis import load_thresholds
from services.reporting import domain
from services.reporting import repository as repo
from services.runtime import clock
from services.runtime.http import ProblemError
from services.runtime.reference import load_framework
from services.runtime.service import Service
from services.runtime.spreadsheets import safe_cell

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


BUDGETS = Path_(__file__).resolve().parents[2] / "deploy" / "ops" / "budgets.yaml"


def load_budgets() -> dict[str, Any]:
    """The weekly budget per band (pounds per week): ``HOMECARE_BUDGETS`` or deploy/ops/budgets.yaml."""
    path = Path_(os.environ.get("HOMECARE_BUDGETS") or BUDGETS)
    loaded = yaml.safe_load(path.read_text()) if path.exists() else None
    return loaded if isinstance(loaded, dict) else {}


def _bad(exc: domain.BadParameter) -> ProblemError:
    return ProblemError(422, str(exc), field=exc.field)


def build_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["reporting"])
    framework = load_framework()
    thresholds = load_thresholds()
    budgets = load_budgets()

    @router.get("/kpis", summary="KPIs of the packages requested in a period")
    async def kpis(
        start: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=40,
                description="Start: a UK date (from its midnight, Europe/London) or an ISO date-time with offset. "
                "Default: 7 days before the end.",
            ),
        ] = None,
        end: Annotated[
            str | None,
            Query(
                alias="to",
                max_length=40,
                description="End: a UK date (that day included) or an ISO date-time with offset (excluded). "
                "Default: now.",
            ),
        ] = None,
        zone: Annotated[str | None, Query(max_length=64, description="Only packages in this zone")] = None,
        band: Annotated[str | None, Query(max_length=20, description="Only packages in this band")] = None,
    ) -> dict[str, Any]:
        """Every KPI of ``homecare kpis`` for the packages requested in [from, to), from the
        projection (SQL over its tables; nothing reads a topic): counts, time to place (seconds)
        by urgency and zone, the unplaced queue (carer hours per week, longest wait in seconds
        now), above-rate exceptions, committed weekly spend by band (pounds), concentration by
        zone (HHI 0-10,000), decline reasons by band and rurality, zones with fewer than two
        willing providers; each with its RAG status (deploy/ops/kpi-thresholds.yaml). Under
        ``more``: starts per UK week, people and hours in care at the end, hand-backs by provider
        and above-rate exceptions asked for and decided in the period, the committed weekly spend
        (the service agreements in force on the period's last UK day, pounds per week) against the
        weekly budget per band (deploy/ops/budgets.yaml), the decline mix per UK week
        by band and rurality. ``projection``: how many
        dead letters it has counted and the latest event it holds.

        422 naming ``from``, ``to``, ``zone`` or ``band`` for a value it cannot answer."""
        now = clock.now()
        try:
            period = domain.period(start, end, zone=zone, band=band, zones=framework.zones, now=now)
        except domain.BadParameter as exc:
            raise _bad(exc) from None
        async with service.pool.acquire() as conn:
            figures = await repo.kpi_figures(conn, period, now)
            state = await repo.projection_state(conn)
        result = domain.report(
            figures, period=period, now=now, framework=framework, thresholds=thresholds, budgets=budgets
        )
        return result | {"projection": state}

    @router.get(
        "/exports/{name}",
        summary="A projection table as CSV or Parquet",
        response_class=Response,
        responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}}},
    )
    async def export(
        name: Annotated[
            str,
            Path(
                max_length=60,
                description=f"``<table>.<format>``: table one of {', '.join(domain.EXPORT_TABLES)}; "
                "format csv or parquet",
            ),
        ],
        start: Annotated[
            str | None,
            Query(
                alias="from",
                max_length=40,
                description="weekly_commitments only: a UK date or an ISO date-time. Default: 12 weeks before the end.",
            ),
        ] = None,
        end: Annotated[
            str | None,
            Query(
                alias="to",
                max_length=40,
                description="weekly_commitments only: a UK date (that day included) or an ISO date-time. Default: now.",
            ),
        ] = None,
    ) -> Response:
        """Every row of one projection table (docs/guide/reporting-data-dictionary.md) as CSV (UTF-8,
        a header row, timestamps in UTC ISO 8601) or Parquet (typed columns: amounts as decimals,
        timestamps in UTC). ``weekly_commitments`` is the weekly commitment by provider and payer of
        ``GET /reports/commitments`` for the UK weeks of ``from``..``to`` (the other tables ignore
        them). 422 naming ``table`` or ``format`` for an unknown one, ``from`` or ``to`` for a bad
        bound."""
        try:
            table, fmt = domain.export_of(name)
        except domain.BadParameter as exc:
            raise _bad(exc) from None
        columns: list[str]
        rows: list[Any]
        if table in domain.PERIOD_EXPORTS:
            first, last = commitment_period(start, end)
            async with service.pool.acquire() as conn:
                sums = await repo.weekly_commitments(conn, first, last)
            columns = list(domain.COMMITMENT_EXPORT_COLUMNS)
            rows = domain.commitment_rows(sums)
        else:
            async with service.pool.acquire() as conn:
                columns, rows = await repo.export_rows(conn, table)
        body = to_csv(columns, rows) if fmt == "csv" else to_parquet(columns, rows)
        return Response(
            body,
            media_type=MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{table}.{fmt}"'},
        )

    return router


def commitment_period(start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """The Mondays of the first and last UK weeks of ``from``..``to`` (default: the 12 weeks to now);
    ProblemError 422 naming ``from`` or ``to``."""
    try:
        p = domain.period(start, end, zone=None, band=None, zones=(), now=clock.now(), default_days=84)
        return domain.commitment_weeks(p)
    except domain.BadParameter as exc:
        raise _bad(exc) from None


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value)  # provider ids: no spaces in them
    return safe_cell(value)


def to_csv(columns: list[str], rows: list[Any]) -> bytes:
    """The rows as CSV (RFC 4180, header row first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else _cell(row[c]) for c in columns])
    return out.getvalue().encode()


def to_parquet(columns: list[str], rows: list[Any]) -> bytes:
    """The rows as a Parquet file; pyarrow infers each column's type (ids as strings)."""
    data = {c: [str(r[c]) if isinstance(r[c], uuid.UUID) else r[c] for r in rows] for c in columns}
    table = (
        pa.table({c: pa.array(v) for c, v in data.items()})
        if rows
        else pa.table({c: pa.array([], pa.string()) for c in columns})
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


# The period of a report (module level: FastAPI resolves the annotations by name).
From = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=40,
        description="A UK date (from its midnight) or an ISO date-time. Default: 12 weeks before the end.",
    ),
]
To = Annotated[
    str | None,
    Query(alias="to", max_length=40, description="A UK date (that day included) or an ISO date-time. Default: now."),
]


def reports_router(service: Service) -> APIRouter:
    """Reports for commissioners (decision 0105), from the projection: no prices, no persons."""
    router = APIRouter(prefix="/reports", tags=["reports for commissioners"])
    framework = load_framework()

    def period_of(start: str | None, end: str | None) -> domain.Period:
        try:
            return domain.period(start, end, zone=None, band=None, zones=(), now=clock.now(), default_days=84)
        except domain.BadParameter as exc:
            raise _bad(exc) from None

    @router.get("/market-share", summary="Market share and concentration (HHI) per zone over time")
    async def market_share(
        start: From = None,
        end: To = None,
        interval: Annotated[Literal["week", "month"], Query(description="UK weeks (from Monday) or months")] = "week",
    ) -> dict[str, Any]:
        """``{from, to, interval, zones: {zone: [{period, placements, hours_per_week, hhi,
        providers: [{provider_id, placements, hours_per_week, share_percent}]}]}}``: placements made
        in the period, by the UK week or month they were made; shares are of carer hours per week."""
        p = period_of(start, end)
        async with service.pool.acquire() as conn:
            rows = await repo.market_shares(conn, p.start, p.end, interval)
        return {"from": p.start, "to": p.end, "interval": interval} | domain.market_share_report(rows, framework)

    @router.get("/decline-mix", summary="Each provider's declines by band and rurality (the cherry-picking signal)")
    async def decline_mix(start: From = None, end: To = None) -> dict[str, Any]:
        """``{from, to, providers: {provider_id: {answers, declines, by_band: {band: {answers,
        declines, decline_percent}}, by_rurality: {zone size: ...}, decline_reasons: {code: n},
        rural_minus_town_decline_points}}}``: answers given in the period."""
        p = period_of(start, end)
        async with service.pool.acquire() as conn:
            rows = await repo.answers_by_provider(conn, p.start, p.end)
        return {"from": p.start, "to": p.end} | domain.decline_mix_report(rows, framework)

    @router.get("/provider-quality", summary="Providers by risk and quality, with their trend")
    async def provider_quality(start: From = None, end: To = None) -> dict[str, Any]:
        """``{from, to, providers: [{provider_id, name, status, cqc_rating, cqc_inspected_on,
        local_risk, quality_score, quality_score_at_start, trend (up, down, level, new),
        hand_backs_12m, late_starts_12m, open_complaints, open_improvement_plans,
        changes_in_period: [{at, change, quality_score}]}]}``, highest risk then lowest score first;
        from the register's changes (ProviderQualityRecorded)."""
        p = period_of(start, end)
        async with service.pool.acquire() as conn:
            rows = await repo.quality_history(conn, p.end)
        return {"from": p.start, "to": p.end} | domain.provider_quality_report(rows, p.start)

    @router.get("/commitments", summary="Weekly committed hours and pounds per provider and funder, over time")
    async def commitments(start: From = None, end: To = None) -> dict[str, Any]:
        """The service agreements committed in each UK week (Monday to Sunday) the period touches, by
        provider and payer (the finance file's funder): ``{from, to, weeks: [{week_commencing,
        week_ending, rows: [{provider_id, provider_name, payer, pounds, hours_per_week}], by_provider:
        {provider_id: {pounds, hours_per_week, agreements}}, by_payer: {payer: pounds}, total,
        hours_per_week}]}``. Each agreement's record in force (no correction supersedes it) that is
        agreed counts for the days of the week each funding part covers: pounds (pounds per week x
        days / 7, rounded to the penny once per row: the brokerage's ``/service-agreements/commitments``
        for the same week) and carer hours per week (x days / 7, a payer's share in proportion to its
        pounds). From ServiceAgreementRecorded (decisions 0109-0111, 0118). 422 naming ``from`` or ``to``."""
        p = period_of(start, end)
        first, last = commitment_period(start, end)
        async with service.pool.acquire() as conn:
            rows = await repo.weekly_commitments(conn, first, last)
        return {"from": p.start, "to": p.end} | domain.commitment_report(rows, first, last)

    @router.get("/coverage-gaps", summary="Zones with fewer than two willing providers")
    async def coverage_gaps(start: From = None, end: To = None) -> dict[str, Any]:
        """``{from, to, gaps: [zone], zones: {zone: {size, active_providers, willing_providers,
        gap}}}``: willing = bid for a package in the zone during the period."""
        p = period_of(start, end)
        async with service.pool.acquire() as conn:
            serving, willing = await repo.coverage(conn, p.start, p.end)
        return {"from": p.start, "to": p.end} | domain.coverage_gaps_report(serving, willing, framework)

    return router
