"""``homecare simulate``: replay a year of synthetic demand once per allocation policy and compare.

Writes ``result.json``, one PNG chart per measure and ``summary.md`` (for a commissioner) to
``--out``, and prints the comparison as a table. See :mod:`services.cli.simulator` for the model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from decimal import Decimal
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from schemas.vocabulary import Band, Urgency
from services.brokerage import domain
from services.cli import simulator as sim
from services.runtime.reference import load_framework, load_provider_seed

BUILT_IN = {
    "prime-supplementary": sim.Policy("prime-supplementary", domain.PRIME_SUPPLEMENTARY),
    "open-framework": sim.Policy("open-framework", domain.OPEN_FRAMEWORK),
    "framework": sim.Policy("framework", sim.FRAMEWORK_POLICY),
}


def policy_from(entry: dict) -> sim.Policy:
    """A variant from YAML/CLI: ``{name, allocation, windows_hours, quality_weights, rates, reoffer_hours}``;
    what it leaves out is the built-in policy's (``based_on``, default the allocation's own)."""
    entry = dict(entry)
    unknown = set(entry) - {
        "name",
        "based_on",
        "allocation",
        "windows_hours",
        "quality_weights",
        "rates",
        "reoffer_hours",
    }
    if unknown:
        raise typer.BadParameter(f"unknown variant keys: {', '.join(sorted(unknown))}")
    base = BUILT_IN[entry.pop("based_on", None) or entry.get("allocation") or "framework"]
    changes: dict = {"name": entry.pop("name")}
    if "allocation" in entry:
        changes["allocation"] = entry.pop("allocation")
    if "windows_hours" in entry:
        changes["windows_hours"] = base.windows_hours | {
            Urgency(k): float(v) for k, v in entry.pop("windows_hours").items()
        }
    if "quality_weights" in entry:
        changes["quality_weights"] = dataclasses.replace(
            base.quality_weights, **{k: Decimal(str(v)) for k, v in entry.pop("quality_weights").items()}
        )
    if "rates" in entry:
        changes["rates"] = {Band(k): Decimal(str(v)) for k, v in entry.pop("rates").items()}
    if "reoffer_hours" in entry:
        changes["reoffer_hours"] = float(entry.pop("reoffer_hours"))
    return dataclasses.replace(base, **changes)


def _assignments(pairs: list[str], cls):
    """``key=value`` pairs into a parameters dataclass, typed by its defaults."""
    values = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields or not raw:
            raise typer.BadParameter(f"{pair!r}: expected one of {', '.join(fields)} as key=value")
        values[key] = type(getattr(cls(), key))(raw)
    return cls(**values)


def parameters_help() -> str:
    lines = []
    for cls in (sim.DemandParams, sim.MarketParams):
        lines.append(f"{cls.__name__} ({cls.__doc__.split('.')[0].strip()}):")
        for f in dataclasses.fields(cls):
            lines.append(f"  {f.name} = {getattr(cls(), f.name)}")
    return "\n".join(lines)


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
    chosen += [policy_from(e) for e in entries]
    demand = dataclasses.replace(_assignments(demand_param, sim.DemandParams), **({"days": days, "seed": seed}))
    market = dataclasses.replace(_assignments(market_param, sim.MarketParams), seed=market_seed)
    console = Console(width=max(Console().width, 130))  # one column per policy: keep them readable
    started = time.monotonic()
    with console.status(f"replaying {days} days under {len(chosen)} policies..."):
        result = sim.simulate(load_framework(), load_provider_seed(), chosen, demand=demand, market=market, jobs=jobs)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    if charts:
        from services.cli.simulation_charts import draw_all

        draw_all(result, out)
    (out / "summary.md").write_text(summary_markdown(result))
    console.print(comparison_table(result))
    cpu = ", ".join(f"{n} {r['cpu_seconds']} s" for n, r in result["policies"].items())
    console.print(
        f"replayed in {result['wall_seconds']} s (CPU per policy: {cpu}); written to {out}/ (result.json, summary.md"
        + (", *.png)" if charts else ")")
    )


# ---- the comparison ----------------------------------------------------------------------


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def rows(result: dict) -> list[tuple[str, list[str]]]:
    """The side-by-side measures: (label, one value per policy)."""
    runs = list(result["policies"].values())
    out: list[tuple[str, list[str]]] = []
    out.append(("packages requested", [str(r["packages"]["requested"]) for r in runs]))
    out.append(("never placed in the period", [str(r["packages"]["never_placed"]) for r in runs]))
    for u in Urgency:
        out.append((f"{u.value}: median h to place", [_h(r["time_to_place"][u.value]["median_hours"]) for r in runs]))
        out.append((f"{u.value}: p90 h to place", [_h(r["time_to_place"][u.value]["p90_hours"]) for r in runs]))
    out.append(("waiting at the end (packages)", [str(r["waiting_over_time"][-1]["waiting_packages"]) for r in runs]))
    out.append(("waiting at the end (h/week)", [_h(r["waiting_over_time"][-1]["waiting_hours"]) for r in runs]))
    out.append(
        (
            "most waiting on a day (packages)",
            [str(max(d["waiting_packages"] for d in r["waiting_over_time"])) for r in runs],
        )
    )
    out.append(("hand-backs", [str(r["hand_backs"]) for r in runs]))
    out.append(
        (
            "above-rate exceptions requested / approved",
            [f"{r['exceptions'].get('requested', 0)} / {r['exceptions'].get('approved', 0)}" for r in runs],
        )
    )
    for b in Band:
        out.append((f"spend {b.value} (£k)", [f"{r['spend_by_band'][b.value] / 1000:,.0f}" for r in runs]))
    out.append(("spend total (£k)", [f"{r['spend_total'] / 1000:,.0f}" for r in runs]))
    out.append(
        ("median zone HHI", [str(_median([c["hhi"] for c in r["concentration"].values() if c["hhi"]])) for r in runs])
    )
    out.append(("highest zone HHI", [_highest(r["concentration"]) for r in runs]))
    for b in Band:
        out.append(
            (
                f"decline rate {b.value}, first offers",
                [_pct(r["decline_mix_first_offer"][b.value]["decline_rate"]) for r in runs],
            )
        )
    out.append(
        ("placements by tier", [", ".join(f"{t} {n}" for t, n in r["placements_by_tier"].items()) for r in runs])
    )
    return out


def _highest(concentration: dict) -> str:
    hhi, zone = max((c["hhi"], z) for z, c in concentration.items())
    return f"{zone} {hhi:,}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _median(values: list[int]) -> int:
    values = sorted(values)
    return values[len(values) // 2] if values else 0


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
    for label, values in rows(result):
        table.add_row(label, *values)
    return table


def summary_markdown(result: dict) -> str:
    names = list(result["policies"])
    d, m = result["demand"], result["market"]
    lines = [
        "# Allocation policies compared on a simulated year",
        "",
        f"{d['days']} days from {result['start']}: about {d['discharges_per_week']:.0f} hospital discharges, "
        f"{d['step_down_per_week']:.0f} reablement step-downs and {d['community_per_week']:.0f} community packages a "
        "week "
        f"(with a summer surge of +{100 * d['summer_surge']:.0f}% at its peak), placed with {m['providers']} providers "
        f"offering {m['weekly_capacity_hours']:,.0f} hours a week, most of them already committed. Every package went "
        "through the brokerage's own allocation rules; what differs between the columns is the policy alone. "
        "The demand and the market are synthetic (seeded) - read the differences, not the absolute figures.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows(result)]
    lines += ["", "## What this says", ""]
    lines += _findings(result)
    lines += [
        "",
        "Charts: `time_to_place.png`, `waiting_over_time.png`, `hand_backs_and_exceptions.png`, `spend_by_band.png`, "
        "`concentration.png`, `decline_mix.png`. Every figure is in `result.json`; parameters: "
        "`homecare simulate --list-params`.",
        "",
    ]
    return "\n".join(lines)


def _findings(result: dict) -> list[str]:
    runs = result["policies"]
    names = list(runs)
    if len(names) < 2:
        return ["- Only one policy was run: nothing to compare."]
    out = []
    dis = Urgency.hospital_discharge.value
    p90 = {n: runs[n]["time_to_place"][dis]["p90_hours"] or 0 for n in names}
    best, worst = min(p90, key=p90.get), max(p90, key=p90.get)
    out.append(
        f"- Hospital discharges: 9 in 10 were placed within {p90[best]:.0f} h under **{best}**, "
        f"{p90[worst]:.0f} h under {worst}."
    )
    waiting = {n: max(day["waiting_packages"] for day in runs[n]["waiting_over_time"]) for n in names}
    out.append("- The waiting list peaked at " + ", ".join(f"{waiting[n]} packages ({n})" for n in names) + ".")
    hhi = {n: _median([c["hhi"] for c in runs[n]["concentration"].values() if c["hhi"]]) for n in names}
    out.append(
        "- Concentration (median zone HHI, 10,000 = one provider takes everything): "
        + ", ".join(f"{hhi[n]:,} ({n})" for n in names)
        + "; above 2,500 is usually called highly concentrated."
    )
    spend = {n: runs[n]["spend_total"] for n in names}
    out.append("- Spend over the period: " + ", ".join(f"£{spend[n] / 1e6:.2f}m ({n})" for n in names) + ".")
    rural = {n: runs[n]["decline_mix_first_offer"]["isolated"]["decline_rate"] for n in names}
    urban = {n: runs[n]["decline_mix_first_offer"]["urban"]["decline_rate"] for n in names}
    out.append(
        "- Declines grow with rurality (first offers, isolated vs urban): "
        + ", ".join(f"{_pct(rural[n])} vs {_pct(urban[n])} ({n})" for n in names)
        + "."
    )
    return out
