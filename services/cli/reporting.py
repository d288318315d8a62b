"""``homecare reporting rebuild``: the reporting projection from what the event topics still hold."""

from __future__ import annotations

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
    import asyncio

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


@app.command("generate")
def generate(
    namespace: str = typer.Option(..., help="The topic namespace to write into (made if it does not exist)"),
    years: float = typer.Option(5, help="Years of history, ending yesterday"),
    packages_per_year: int = typer.Option(10_000, help="Packages requested a year (the county's demand)"),
    seed: int = typer.Option(17, help="The random seed (the same seed and day give the same history)"),
) -> None:
    """Write ``years`` of generated county demand (about ``packages_per_year`` packages a year and
    every event they cause, through the real contracts: services/bench/history.py) onto the event
    topics of ``namespace``, as the operator's Kafka identity. For tests, benchmarks and
    demonstrations on a namespace of their own; rebuild a projection of it with
    ``HOMECARE_NAMESPACE=<namespace> homecare reporting rebuild``. Five years is about 500,000
    events."""
    import asyncio

    from services.bench.reporting import generate as write

    figures = asyncio.run(write(namespace, years=years, packages_per_year=packages_per_year, seed=seed))
    typer.echo(
        f"{figures['events']} events ({figures['from']} to {figures['to']}) written to namespace "
        f"{figures['namespace']} in {figures['seconds']} s"
    )


@app.command("bench")
def bench(
    years: float = typer.Option(5, help="Years of generated county demand"),
    packages_per_year: int = typer.Option(10_000, help="Packages requested a year"),
    queries: int = typer.Option(20, help="Times each KPI query of the last 365 days is asked"),
    service: bool = typer.Option(True, help="Also time `homecare kpis --period 365d` against a started service"),
    as_json: bool = typer.Option(False, "--json", help="JSON only"),
) -> None:
    """The reporting service's figures on generated years of county demand
    (services/bench/reporting.py): rebuild events/s and peak RSS, each KPI query's p50/p95, the
    `homecare kpis --period 365d` wall time and the service's peak RSS. Uses a topic namespace and
    a database of its own and removes both; five years take about ten minutes on two cores."""
    import asyncio

    from services.bench.reporting import measure
    from services.cli import output

    figures = asyncio.run(measure(years, packages_per_year, queries, with_service=service))
    if as_json:
        output.echo_json(figures)
        return
    p95 = figures["kpi_query_p95_s"]
    lines = [
        f"{figures['events']} events of {figures['years']} years generated and written in "
        f"{figures['generate_seconds']} s (load average {figures['load_average']:.1f} on {figures['cpus']} cores)",
        f"rebuild: {figures['rebuild_events']} events in {figures['rebuild_seconds']} s = "
        f"{figures['rebuild_events_per_second']} events/s (target >= 5000); peak RSS "
        f"{figures['rebuild_peak_rss_mb']} MB (target < 300); {figures['rebuild_cpu_seconds']} CPU s in the rebuild's "
        f"process; load average {figures['rebuild_load_average'][0]} before, "
        f"{figures['rebuild_load_average'][1]} after",
        f"KPI queries of the last 365 days ({figures['kpi_year_packages']} packages), p95 each (target < 0.2 s):",
        *(f"  {name}: {seconds} s" for name, seconds in p95.items()),
        f"whole report, one transaction: p50 {figures['kpi_report_p50_s']} s, p95 {figures['kpi_report_p95_s']} s",
    ]
    if "kpis_cli_seconds_median" in figures:
        lines.append(
            f"homecare kpis --period 365d: median {figures['kpis_cli_seconds_median']} s, slowest "
            f"{figures['kpis_cli_seconds_max']} s (target < 2); the service's peak RSS "
            f"{figures['service_peak_rss_mb']} MB"
        )
    typer.echo("\n".join(lines))
