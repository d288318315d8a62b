"""``homecare simulate``: replay a year of synthetic demand - or, with ``--replay PERIOD``, the
package requests the reporting service recorded in a period - once per allocation policy and
compare; ``--sensitivity`` repeats every policy at several values of a market parameter.

Writes ``result.json``, one PNG chart per measure and ``summary.md`` (for a commissioner) to
``--out``, and prints the comparison as a table. The simulator is :mod:`services.simulator`;
docs/guide/simulation.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from services.cli import output
from services.runtime import clock

if TYPE_CHECKING:
    from services.simulator.recorded import History


def simulate(
    policies: str = typer.Option(
        "prime-supplementary,open-framework",
        help="Built-in policies to compare, comma-separated: prime-supplementary, open-framework, "
        "framework (each zone as framework.yaml says)",
    ),
    variants: Path | None = typer.Option(
        None,
        help="YAML list of variants: name, based_on/allocation, windows_hours "
        "{urgency: h}, quality_weights {cqc, local_risk, hand_backs}, "
        "rates {band: £/h}, reoffer_hours",
    ),
    variant: list[str] = typer.Option(
        [],
        help="A variant inline, as YAML/JSON, e.g. '{name: uplift, allocation: open-framework, rates: {rural: 24.10}}'",
    ),
    days: int = typer.Option(365, help="Length of the simulated period"),
    seed: int = typer.Option(2021, help="Seed of the demand"),
    market_seed: int = typer.Option(2021, help="Seed of the market (2021 is deploy/reference/providers.yaml's)"),
    demand_param: list[str] = typer.Option([], "--demand", help="A demand parameter, key=value (see --list-params)"),
    market_param: list[str] = typer.Option([], "--market", help="A market parameter, key=value (see --list-params)"),
    out: Path = typer.Option(Path("artifacts/simulation"), help="Folder for result.json, the charts and summary.md"),
    jobs: int = typer.Option(2, help="Policies replayed in parallel processes"),
    charts: bool = typer.Option(True, help="Draw the PNG charts"),
    list_params: bool = typer.Option(False, "--list-params", help="Print every demand and market parameter and exit"),
    as_json: bool = typer.Option(False, "--json", help="Print the result (result.json's content) as JSON only"),
    sensitivity: str | None = typer.Option(
        None,
        help="Repeat every policy at each value of one market parameter, e.g. cherry_picking=0,0.5,1 "
        "(a column per policy and value)",
    ),
    replay: str | None = typer.Option(
        None,
        metavar="PERIOD",
        help="Replay the package requests the reporting service recorded in PERIOD instead of a synthetic "
        "year, providers answering as recorded: FROM..TO (UK dates, TO included, or ISO date-times with an "
        "offset) or Nd (the last N days). Reads the projection as the reporting database role.",
    ),
) -> None:
    """Replay a year of synthetic county demand (or, with --replay, the council's recorded requests)
    through the brokerage's allocation rules, once per policy."""
    import yaml
    from rich.console import Console

    from services.runtime.reference import load_framework, load_provider_seed
    from services.simulator import report, simulation
    from services.simulator.variants import BUILT_IN, assignments, parameters_help, policy_from

    if list_params:
        typer.echo(parameters_help())
        return
    chosen = []
    for name in filter(None, (n.strip() for n in policies.split(","))):
        if name not in BUILT_IN:
            raise typer.BadParameter(
                f"unknown policy {name!r}; built-in: {', '.join(BUILT_IN)}", param_hint="'--policies'"
            )
        chosen.append(BUILT_IN[name])
    entries = list(yaml.safe_load(variants.read_text()) or []) if variants else []
    entries += [yaml.safe_load(v) for v in variant]
    try:
        chosen += [policy_from(e) for e in entries]
        demand_params = assignments(demand_param, simulation.DemandParams)
        market_params = assignments(market_param, simulation.MarketParams)
    except ValueError as wrong:
        raise typer.BadParameter(str(wrong)) from None
    try:
        varied = sensitivity_of(sensitivity) if sensitivity else None
        simulation.runs_of(chosen, market_params, varied)
    except ValueError as wrong:
        raise typer.BadParameter(str(wrong), param_hint="'--sensitivity'") from None
    demand = dataclasses.replace(demand_params, **({"days": days, "seed": seed}))
    market = dataclasses.replace(market_params, seed=market_seed)
    recorded = None
    if replay is not None:
        try:
            start, end = replay_period(replay, clock.now())
        except ValueError as wrong:
            raise typer.BadParameter(str(wrong), param_hint="'--replay'") from None
        history = read_history(start, end)
        if not history.packages:
            output.echo(
                f"no package requests recorded from {clock.format_uk(start)} to {clock.format_uk(end)} "
                "(UK time): nothing to replay"
            )
            return
        from services.simulator.recorded import replay_of

        demand = dataclasses.replace(demand, days=history.days)
        given = {pair.partition("=")[0].strip().replace("-", "_") for pair in market_param}
        recorded, skipped = replay_of(
            history,
            load_framework(),
            demand,
            capacity_scale=market.capacity_scale if "capacity_scale" in given else 1.0,
        )
    console = Console(stderr=True)  # progress only: stdout is the report's
    started = time.monotonic()
    what = f"{len(recorded.demand)} recorded requests" if recorded else f"{demand.days} days"
    with console.status(f"replaying {what} under {len(chosen)} policies..."):
        result = simulation.simulate(
            load_framework(),
            load_provider_seed(),
            chosen,
            demand=demand,
            market=market,
            jobs=jobs,
            sensitivity=varied,
            replay=recorded,
        )
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    if recorded is not None:
        from services.simulator.recorded import replay_summary

        result["replay"] = replay_summary(history, recorded, skipped)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    if charts:
        from services.simulator.charts import draw_all

        draw_all(result, out)
    (out / "summary.md").write_text(report.summary_markdown(result))
    if as_json:
        output.echo_json(result)
        return
    room = output.width()
    output.echo(render(result, room))
    if result.get("replay"):
        rec = result["replay"]["recorded"]
        medians = ", ".join(f"{u} {h:.1f} h" for u, h in rec["median_hours_to_place"].items())
        output.echo(
            output.paragraph(
                f"as recorded: {rec['never_placed']} of {rec['requested']} never placed; median time to place "
                f"{medians or '-'}; {result['replay']['skipped']} requests skipped (a zone or value the "
                "framework does not know)",
                room,
            )
        )
    cpu = ", ".join(f"{n} {r['cpu_seconds']} s" for n, r in result["policies"].items())
    output.echo(
        output.paragraph(
            f"replayed in {result['wall_seconds']} s (CPU per policy: {cpu}); written to {out}/ (result.json, "
            "summary.md" + (", *.png)" if charts else ")"),
            room,
        )
    )


def render(result: dict, room: int) -> str:
    """The policies side by side (:func:`services.simulator.report.rows`) as text at most ``room``
    characters wide: a column per policy where they fit, else each measure with a line per policy."""
    from services.simulator import report

    columns = [output.Column("measure", wrap=True)]
    columns += [output.Column(name, right=True, wrap=True) for name in result["policies"]]
    return output.table(
        columns, [(label, *values) for label, values in report.rows(result)], title=report.title(result), room=room
    )


_DAYS = re.compile(r"^(\d{1,5})d$", re.ASCII)


def replay_period(value: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """``--replay``'s period as UTC instants [start, end): ``FROM..TO`` (UK dates, TO included, or
    ISO date-times with an offset, TO excluded - as the reporting API's ``from``/``to``) or ``Nd``
    (the N days up to ``now``). ValueError naming the value for anything else."""
    from services.reporting import domain

    text = value.strip()
    days = _DAYS.match(text)
    if days:
        if int(days.group(1)) < 1:
            raise ValueError(f"unknown period {value!r}: at least 1d")
        return now - dt.timedelta(days=int(days.group(1))), now
    begin, dots, finish = text.partition("..")
    if not dots or not begin or not finish:
        raise ValueError(f"unknown period {value!r}: expected FROM..TO (2026-04-01..2027-03-31) or Nd (365d)")
    try:
        period = domain.period(begin, finish, zone=None, band=None, zones=(), now=now)
    except domain.BadParameter as bad:
        raise ValueError(
            f"unknown period {value!r}: {bad.message} ({'FROM' if bad.field == 'from' else 'TO'})"
        ) from None
    return period.start, period.end


def sensitivity_of(value: str) -> tuple[str, list[float]]:
    """``key=v1,v2,...`` -> (key, [v1, v2, ...]); ValueError naming what is wrong."""
    key, _, raw = value.partition("=")
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{value!r}: values must be numbers, e.g. cherry_picking=0,0.5,1") from None
    if not key.strip() or not values:
        raise ValueError(f"{value!r}: expected a market parameter and its values, e.g. cherry_picking=0,0.5,1")
    return key.strip().replace("-", "_"), values


def read_history(start: dt.datetime, end: dt.datetime) -> History:
    """The recorded history of [start, end) from the reporting projection, as the reporting
    service's database role (settings: ``DATABASE_URL``, ``REPORTING_DB_PASSWORD``...); a
    database that cannot be read is said on stderr and exits 1."""
    import asyncio

    import asyncpg

    from services.runtime.settings import load
    from services.simulator.recorded import read_history as read

    async def run() -> History:
        settings = load("reporting")
        conn = await asyncpg.connect(
            settings.service_dsn,
            server_settings={"search_path": "reporting", "application_name": "homecare-simulate"},
            timeout=10,
        )
        try:
            return await read(conn, start, end)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except asyncpg.UndefinedTableError as exc:
        typer.echo(f"the reporting projection is not there ({exc}); start the reporting service first", err=True)
        raise typer.Exit(1) from None
    except (OSError, asyncpg.PostgresError) as exc:
        typer.echo(f"the reporting database could not be read ({exc!r})", err=True)
        raise typer.Exit(1) from None


def replay_bench(
    days: int = typer.Option(365, help="Days of recorded history to replay"),
    layers: int = typer.Option(3, help="Generated histories interleaved (each: a package every 3 hours)"),
    jobs: int = typer.Option(2, help="Policies replayed in parallel processes"),
    as_json: bool = typer.Option(False, "--json", help="JSON only"),
    out: Path = typer.Option(
        Path("artifacts/simulation-replay"), help="Folder for the replay's result.json and summary.md"
    ),
) -> None:
    """How long ``homecare simulate --replay`` takes over ``days`` of history under two policies: a
    generated history recorded into a reporting projection of its own (a database of its own,
    dropped afterwards), then read, calibrated and replayed (services/bench/replay.py)."""
    import asyncio

    from services.bench.replay import measure
    from services.simulator import report

    figures, result = asyncio.run(measure(days, layers, jobs))
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "summary.md").write_text(report.summary_markdown(result))
    if as_json:
        output.echo_json(figures)
        return
    output.echo(
        output.paragraph(
            f"{figures['packages']} package requests over {figures['days']} days ({figures['answers']} offered "
            f"providers' answers): read in {figures['read_seconds']} s, read + calibrated + replayed under two "
            f"policies in {figures['replay_seconds']} s of wall time (CPU per policy: "
            + ", ".join(f"{n} {s} s" for n, s in figures["cpu_seconds_per_policy"].items())
            + f"); peak RSS {figures['peak_rss_mb']} MB (target: under 60 s)",
            output.width(),
        )
    )
