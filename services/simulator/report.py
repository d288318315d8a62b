"""The comparison of a simulation's policies: the side-by-side measures and the commissioner's
summary (``summary.md``). ``homecare simulate`` prints and writes them."""

from __future__ import annotations

from schemas.vocabulary import Band, Urgency

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
    for b in Band:
        by_band = [r["time_to_place_by_band"][b.value] for r in runs]
        out.append(
            (
                f"{b.value}: median / p90 h to place, never placed",
                [f"{_h(t['median_hours'])} / {_h(t['p90_hours'])}, {t['requested'] - t['placed']}" for t in by_band],
            )
        )
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
    out.append(
        (
            "median zone HHI, last quarter's placements",
            [
                str(_median([c["hhi_last_quarter"] for c in r["concentration"].values() if c["hhi_last_quarter"]]))
                for r in runs
            ],
        )
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
        (
            "declines while urban work was on offer (cherry-picked)",
            [str(r["responsive"]["cherry_picked_declines"]) for r in runs],
        )
    )
    out.append(("bids on a Prime round (zone obligation)", [str(r["responsive"]["prime_round_bids"]) for r in runs]))
    out.append(
        ("placements by tier", [", ".join(f"{t} {n}" for t, n in r["placements_by_tier"].items()) for r in runs])
    )
    return out


def title(result: dict) -> str:
    """What was replayed, in a line: the synthetic year's seeds, or the recorded period's requests."""
    replay = result.get("replay")
    if replay:
        cal = replay["calibration"]
        return (
            f"replay of {replay['replayed']} package requests recorded from {replay['from']} to {replay['to']} "
            f"({replay['providers']} providers; their answers calibrated from {cal['answers']} recorded answers)"
        )
    return (
        f"{result['demand']['days']} days of synthetic demand from {result['start']} (seed "
        f"{result['demand']['seed']}, market seed {result['market']['seed']})"
    )


def _highest(concentration: dict) -> str:
    hhi, zone = max((c["hhi"], z) for z, c in concentration.items())
    return f"{zone} {hhi:,}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _median(values: list[int]) -> int:
    values = sorted(values)
    return values[len(values) // 2] if values else 0


def summary_markdown(result: dict) -> str:
    names = list(result["policies"])
    d, m = result["demand"], result["market"]
    replay = result.get("replay")
    if replay:
        heading = "# Allocation policies compared on the council's own history"
        intro = (
            f"The package requests recorded from {replay['from']} to {replay['to']} ({replay['replayed']} replayed, "
            f"{replay['skipped']} skipped), placed with the {replay['providers']} providers offered work then, each "
            "answering as its recorded answers say (decline rates by provider, band, zone and urgency). Recorded: "
            f"{replay['recorded']['never_placed']} of {replay['recorded']['requested']} never placed. Every package "
            "went through the brokerage's own allocation rules; what differs between the columns is the policy alone."
        )
    else:
        heading = "# Allocation policies compared on a simulated year"
        intro = (
            f"{d['days']} days from {result['start']}: about {d['discharges_per_week']:.0f} hospital discharges, "
            f"{d['step_down_per_week']:.0f} reablement step-downs and {d['community_per_week']:.0f} community "
            "packages a week "
            f"(with a summer surge of +{100 * d['summer_surge']:.0f}% at its peak), placed with {m['providers']} "
            f"providers offering {m['weekly_capacity_hours']:,.0f} hours a week, most of them already committed. "
            "Every package went through the brokerage's own allocation rules; what differs between the columns is "
            "the policy alone. The demand and the market are synthetic (seeded) - read the differences, not the "
            "absolute figures."
        )
    if result.get("sensitivity"):
        intro += (
            f" Sensitivity: every policy at {result['sensitivity']['parameter']} = "
            + ", ".join(f"{v:g}" for v in result["sensitivity"]["values"])
            + " (the other market parameters at their values)."
        )
    lines = [
        heading,
        "",
        intro,
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
    best, worst = min(p90, key=lambda n: p90[n]), max(p90, key=lambda n: p90[n])
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
