"""``homecare bench``: the whole pipeline under load (the benchmark is :mod:`services.bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from services.cli import output

# The benchmark's modules (the services' runtime, Kafka, matplotlib) are imported by the commands
# that use them: every `homecare` command loads this module, and `homecare kpis` should not pay
# seconds of imports for a benchmark it does not run.


def bench(
    rate: float = typer.Option(50.0, help="Requests per second in the fixed-rate phase"),
    seconds: float = typer.Option(30.0, help="Length of the fixed-rate phase"),
    warmup: float = typer.Option(
        10.0, help="Seconds at the fixed rate before the first run, reported apart (the cold start), in no median"
    ),
    burst: int = typer.Option(1500, help="Requests sent as fast as possible in the second phase"),
    concurrency: int = typer.Option(32, help="Clients at once in the as-fast-as-possible phase"),
    runs: int = typer.Option(3, help="Runs (each: fixed rate, as fast as possible, baseline); medians reported"),
    baseline_messages: int = typer.Option(20000, help="Messages through the bare consume-then-produce loop"),
    seed: int = typer.Option(2021, help="Seed of the market and of the requests"),
    out: Path = typer.Option(Path("artifacts/bench"), help="Folder for bench.json, bench.png and the services' logs"),
    profile: str | None = typer.Option(
        None, help="Sample this service with py-spy (profile-<service>.json in --out, for speedscope.app)"
    ),
    env: list[str] = typer.Option(
        [], help="Extra environment for the services, KEY=VALUE (e.g. BROKERAGE_DB_POOL_SIZE=20)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON only (progress goes to stderr)"),
    instances: int = typer.Option(1, min=1, max=4, help="Processes of each service (requests spread round robin)"),
) -> None:
    """Start the three services on the synthetic market (Kafka and PostgreSQL from the environment,
    a fresh database and topic namespace) and measure them under load."""
    import uvloop
    from rich.console import Console

    from services.bench import benchmark, report
    from services.bench.processes import SERVICES

    if profile and profile not in SERVICES:
        raise typer.BadParameter(f"--profile takes one of {', '.join(SERVICES)}")
    extra = dict(pair.split("=", 1) for pair in env)
    console = Console(stderr=True)  # progress only: stdout is the report's
    load = benchmark.Load(
        rate=rate,
        seconds=seconds,
        warmup_seconds=warmup,
        burst=burst,
        concurrency=concurrency,
        baseline_messages=baseline_messages,
    )
    # uvloop, as the services run: the load generator shares the machine and should take little of it.
    result = uvloop.run(
        benchmark.bench_async(
            load, runs, seed, out, profile=profile, console=console, extra_env=extra, instances=instances
        )
    )
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=str))
    report.draw(result, out / "bench.png")
    if as_json:
        output.echo_json(report_data(result, out))
        return
    output.echo(render(result, output.width()))
    output.echo(output.paragraph(f"written to {out}/ (bench.json, bench.png, logs/)"))


def render(result: dict, room: int) -> str:
    """The report as text at most ``room`` characters wide: the measures, their values and targets."""
    from services.bench import report

    columns = [output.Column("measure", wrap=True), output.Column("value", right=True), output.Column("target")]
    return output.table(columns, report.measures(result), title=report.title(result), room=room)


def report_data(result: dict, out: Path) -> dict:
    """What ``--json`` prints: the load, the machine, the medians (``summary``) and the files written
    (every run's figures and series are in ``bench.json``)."""

    return {
        "load": result["load"],
        "machine": result["machine"],
        "summary": result["summary"],
        "files": {name: str(out / name) for name in ("bench.json", "bench.png", "logs")},
    }


def bench_pages(
    packages: int = typer.Option(50_000, min=1, help="Packages in the tables when the pages are timed"),
    real: int = typer.Option(300, min=1, help="Packages placed through the pipeline; copied up to --packages"),
    requests: int = typer.Option(20, min=1, help="Requests of each page, one at a time"),
    seed: int = typer.Option(2021, help="Seed of the market and of the requests"),
    out: Path = typer.Option(Path("artifacts/bench-pages"), help="Folder for pages.json and the processes' logs"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON only (progress goes to stderr)"),
) -> None:
    """Time every page of every staff role's console menu, with the tables at --packages packages
    (services/bench/pages.py says how): p50, p95 and slowest per page, against 300 ms (issue 19)
    and 500 ms for the operations pages (issue 17)."""
    import uvloop
    from rich.console import Console

    from services.bench import pages

    result = uvloop.run(
        pages.bench_pages_async(
            packages=packages, real=real, requests=requests, seed=seed, out=out, console=Console(stderr=True)
        )
    )
    (out / "pages.json").write_text(json.dumps(result, indent=1, default=str))
    if as_json:
        output.echo_json(result)
        return
    rows = [
        (role, path, str(t["status"]), f"{t['p50_ms']:.0f}", f"{t['p95_ms']:.0f}", f"< {pages.target_of(path)}")
        for role, timed in result["roles"].items()
        for path, t in timed.items()
    ]
    columns = [
        output.Column("role"),
        output.Column("page", wrap=True),
        output.Column("status"),
        output.Column("p50 ms", right=True),
        output.Column("p95 ms", right=True),
        output.Column("target"),
    ]
    title = (
        f"console pages: {result['packages']:,} packages in the brokerage, {result['reporting_packages']:,} in "
        f"reporting; {result['requests_per_page']} requests a page"
    )
    output.echo(output.table(columns, rows, title=title, room=output.width()))
    summary = result["summary"]
    over = ", ".join(f"{o['role']} {o['path']} ({o['p95_ms']:.0f} ms)" for o in summary["over_target"]) or "none"
    kpis = result["kpis_cli"]
    output.echo(
        output.paragraph(
            f"pages over their target: {over}. homecare kpis --period 365d: median {kpis['median_seconds']} s, "
            f"slowest {kpis['max_seconds']} s (target < 2 s). Written to {out}/pages.json"
        )
    )


def bench_rebalance(
    static: bool = typer.Option(
        False, "--static", help="Static membership: each instance with a group instance id of its own"
    ),
    rate: float = typer.Option(2.0, min=0.5, help="Package requests a second through the surviving brokerage"),
    session_timeout_ms: int | None = typer.Option(
        None, min=6000, max=30000, help="Every instance's consumer session timeout (default: the services', 10 s)"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON only"),
) -> None:
    """The rebalance pauses the instances that stay up see when another instance of their service
    dies and comes back (services/bench/rebalance.py): two instances of every service, the second
    of each SIGKILLed and started again, first after its group settled without it, then at once.
    Per service: the rebalances the survivor went through, their mean pause (its partitions
    revoked until assigned again) and how long the group took to be stable. A few minutes (eight
    service processes, each second one started twice)."""
    import asyncio
    import os

    from services.bench.rebalance import measure

    figures = asyncio.run(measure(static=static, rate=rate, session_timeout_ms=session_timeout_ms))
    if as_json:
        output.echo_json(figures)
        return
    columns = [
        output.Column("service"),
        *(output.Column(title, right=True) for title in ("leave", "stable after", "rejoin", "stable after", "replace")),
    ]

    def pause(step: str, name: str) -> str:
        f = figures[step][name]
        return f"{f['mean_pause_s']} s x{f['rebalances']}" if f["rebalances"] else "none"

    rows = [
        [
            name,
            pause("leave", name),
            f"{figures['leave']['stable_again_s'][name]} s",
            pause("rejoin", name),
            f"{figures['rejoin']['stable_again_s'][name]} s",
            pause("replace", name),
        ]
        for name in ("providers", "brokerage", "notifications", "reporting")
    ]
    membership = "static (group instance ids)" if static else "dynamic"
    title = (
        f"Rebalance pauses seen by the surviving instance ({membership} membership, session timeout "
        f"{figures['session_timeout_ms'] / 1000:g} s; mean pause x rebalances, "
        f"one per consumer; load average {figures['load_average']} on {os.cpu_count()} cores)"
    )
    output.echo(output.table(columns, rows, title=title, room=output.width()))
    output.echo(
        output.paragraph(
            f"leave: the second instance SIGKILLed, stable after = until its group was stable without it; rejoin: "
            f"started again, stable after = from its start; replace: SIGKILLed and started at once (ready "
            f"{figures['replace']['restarted_ready_s']} s after the kill). {figures['requests_sent']} package "
            f"requests sent meanwhile."
        )
    )
