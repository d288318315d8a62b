"""``homecare reporting rebuild``: the reporting projection from what the event topics still hold."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="The reporting service's projection.")


@app.command("rebuild")
def rebuild(
    fresh: bool = typer.Option(
        False, "--fresh", help="Empty the projection first (its history older than the topics' retention goes too)"
    ),
    batch_size: int = typer.Option(2000, help="Records read at once (a partition's share: one transaction)"),
) -> None:
    """Replay the event topics into the reporting projection, as the reporting service's database
    role and the operator's Kafka identity. Resumable: an interrupted rebuild continues where it
    stopped when run again (without --fresh). Idempotent: events already applied change nothing.
    The reporting service may keep running meanwhile."""
    from services.reporting import app as reporting_app
    from services.reporting import handlers
    from services.runtime.db import create_pool, migrate
    from services.runtime.kafka import kafka_security
    from services.runtime.settings import admin_settings, load

    async def run() -> handlers.RebuildReport:
        settings = load("reporting")
        pool = await create_pool(settings.service_dsn, schema="reporting", application="homecare-cli", size=2)
        try:
            await migrate(pool, "reporting", Path(reporting_app.__file__).parent / "migrations")
            return await handlers.rebuild(
                pool,
                admin_settings().kafka_bootstrap_servers,
                security=kafka_security(),
                fresh=fresh,
                batch_size=batch_size,
            )
        finally:
            await pool.close()

    report = asyncio.run(run())
    typer.echo(
        f"{report.applied} events applied, {report.passed_over} records passed over"
        f" ({'finished' if report.finished else 'not finished: run it again to resume'})"
    )


@app.command("bench")
def bench(
    packages: int = typer.Option(5000, help="Packages in the generated history (one every 3 hours)"),
    queries: int = typer.Option(30, help="Times the year's KPIs are asked for"),
    as_json: bool = typer.Option(False, "--json", help="JSON only"),
) -> None:
    """The projection's figures on a generated history: rebuild events/s, peak RSS, KPI query
    p50/p95 (services/bench/reporting.py). Uses a topic namespace and a database of its own."""
    from services.bench.reporting import measure
    from services.cli import output

    figures = asyncio.run(measure(packages, queries))
    if as_json:
        output.echo_json(figures)
        return
    typer.echo(
        f"{figures['events']} events of {figures['packages']} packages: rebuilt in {figures['rebuild_seconds']} s "
        f"({figures['rebuild_events_per_second']} events/s), peak RSS {figures['peak_rss_mb']} MB; "
        f"a year's KPIs ({figures['kpi_year_packages']} packages): p50 {figures['kpi_query_p50_s']} s, "
        f"p95 {figures['kpi_query_p95_s']} s"
    )
