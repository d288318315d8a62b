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
from typing import Annotated, Any

import asyncpg
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
        against the weekly budget per band (deploy/ops/budgets.yaml), the decline mix per UK week
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
    ) -> Response:
        """Every row of one projection table (docs/guide/reporting-data-dictionary.md) as CSV (UTF-8,
        a header row, timestamps in UTC ISO 8601) or Parquet (typed columns: amounts as decimals,
        timestamps in UTC). 422 naming ``table`` or ``format`` for an unknown one."""
        try:
            table, fmt = domain.export_of(name)
        except domain.BadParameter as exc:
            raise _bad(exc) from None
        async with service.pool.acquire() as conn:
            columns, rows = await repo.export_rows(conn, table)
        body = to_csv(columns, rows) if fmt == "csv" else to_parquet(columns, rows)
        return Response(
            body,
            media_type=MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{table}.{fmt}"'},
        )

    return router


def _cell(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value)  # provider ids: no spaces in them
    return value


def to_csv(columns: list[str], rows: list[asyncpg.Record]) -> bytes:
    """The rows as CSV (RFC 4180, header row first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else _cell(row[c]) for c in columns])
    return out.getvalue().encode()


def to_parquet(columns: list[str], rows: list[asyncpg.Record]) -> bytes:
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
