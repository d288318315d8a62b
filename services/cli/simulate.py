"""``homecare simulate``: replay a year of synthetic demand once per allocation policy and compare.

Writes ``result.json``, one PNG chart per measure and ``summary.md`` (for a commissioner) to
``--out``, and prints the comparison as a table. The simulator is :mod:`services.simulator`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from services.runtime.reference import load_framework, load_provider_seed
from services.simulator import report, simulation
from services.simulator.variants import BUILT_IN, assignments, parameters_help, policy_from


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
) -> None:
    """Replay a year of synthetic county demand through the brokerage's allocation rules, once per policy."""
    if list_params:
        typer.echo(parameters_help())
        return
    chosen = []
    for name in filter(None, (n.strip() for n in policies.split(","))):
        if name not in BUILT_IN:
            raise typer.BadParameter(f"unknown policy {name!r}; built-in: {', '.join(BUILT_IN)}")
        chosen.append(BUILT_IN[name])
    entries = list(yaml.safe_load(variants.read_text()) or []) if variants else []
    entries += [yaml.safe_load(v) for v in variant]
    try:
        chosen += [policy_from(e) for e in entries]
        demand_params = assignments(demand_param, simulation.DemandParams)
        market_params = assignments(market_param, simulation.MarketParams)
    except ValueError as wrong:
        raise typer.BadParameter(str(wrong)) from None
    demand = dataclasses.replace(demand_params, **({"days": days, "seed": seed}))
    market = dataclasses.replace(market_params, seed=market_seed)
    console = Console(width=max(Console().width, 130))  # one column per policy: keep them readable
    started = time.monotonic()
    with console.status(f"replaying {days} days under {len(chosen)} policies..."):
        result = simulation.simulate(
            load_framework(), load_provider_seed(), chosen, demand=demand, market=market, jobs=jobs
        )
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    if charts:
        from services.simulator.charts import draw_all

        draw_all(result, out)
    (out / "summary.md").write_text(report.summary_markdown(result))
    console.print(comparison_table(result))
    cpu = ", ".join(f"{n} {r['cpu_seconds']} s" for n, r in result["policies"].items())
    console.print(
        f"replayed in {result['wall_seconds']} s (CPU per policy: {cpu}); written to {out}/ (result.json, summary.md"
        + (", *.png)" if charts else ")")
    )


def comparison_table(result: dict) -> Table:
    names = list(result["policies"])
    table = Table(
        title=(
            f"{result['demand']['days']} days of synthetic demand from {result['start']} (seed "
            f"{result['demand']['seed']}, market seed {result['market']['seed']})"
        )
    )
    table.add_column("measure", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right")
    for label, values in report.rows(result):
        table.add_row(label, *values)
    return table
