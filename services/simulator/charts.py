"""One PNG chart per measure of a simulation result (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

from schemas.vocabulary import Band, Urgency


def _bars(ax, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    """Grouped bars: one group per x label, one bar per series (policy)."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_all(result: dict, out: Path) -> list[Path]:
    runs = result["policies"]
    paths = []
    urgencies = [u.value for u in Urgency]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "median_hours", "median"), (axes[1], "p90_hours", "90th percentile")):
        _bars(
            ax, urgencies, {n: [r["time_to_place"][u][key] or 0 for u in urgencies] for n, r in runs.items()}, "hours"
        )
        ax.set_title(f"time to place, {title}")
    paths.append(out / "time_to_place.png")
    _save(fig, paths[-1])

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in runs.items():
        days = [d["day"] for d in r["waiting_over_time"]]
        axes[0].plot(days, [d["waiting_packages"] for d in r["waiting_over_time"]], label=name)
        axes[1].plot(days, [d["waiting_hours"] for d in r["waiting_over_time"]], label=name)
    axes[0].set_title("packages waiting (offered, unplaced, awaiting approval)")
    axes[1].set_title("hours a week waiting")
    for ax in axes:
        ax.set_xlabel(f"day from {result['start']}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    paths.append(out / "waiting_over_time.png")
    _save(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(7, 4))
    measures = ["hand-backs", "exceptions requested", "exceptions approved"]
    _bars(
        ax,
        measures,
        {
            n: [r["hand_backs"], r["exceptions"].get("requested", 0), r["exceptions"].get("approved", 0)]
            for n, r in runs.items()
        },
        "count",
    )
    ax.set_title("hand-backs and above-rate exceptions")
    paths.append(out / "hand_backs_and_exceptions.png")
    _save(fig, paths[-1])

    bands = [b.value for b in Band]
    fig, ax = plt.subplots(figsize=(7, 4))
    _bars(ax, bands, {n: [r["spend_by_band"][b] / 1000 for b in bands] for n, r in runs.items()}, "£ thousand")
    ax.set_title("spend by band over the period")
    paths.append(out / "spend_by_band.png")
    _save(fig, paths[-1])

    zones = sorted(next(iter(runs.values()))["concentration"])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    _bars(ax, zones, {n: [r["concentration"][z]["hhi"] for z in zones] for n, r in runs.items()}, "HHI (0-10,000)")
    ax.axhline(2500, color="grey", linestyle="--", linewidth=1)
    ax.set_title("provider concentration per zone (hours placed); dashed: 2,500, highly concentrated")
    paths.append(out / "concentration.png")
    _save(fig, paths[-1])

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _bars(
        axes[0],
        bands,
        {n: [100 * (r["decline_mix_first_offer"][b]["decline_rate"] or 0) for b in bands] for n, r in runs.items()},
        "% of offers declined",
    )
    axes[0].set_title("declines by band, packages' first offers")
    reasons = sorted(
        {reason for r in runs.values() for b in bands for reason in r["decline_mix_first_offer"][b]["by_reason"]}
    )
    first = next(iter(runs))
    bottom = [0.0] * len(bands)
    for reason in reasons:
        values = [runs[first]["decline_mix_first_offer"][b]["by_reason"].get(reason, 0) for b in bands]
        axes[1].bar(bands, values, bottom=bottom, label=reason)
        bottom = [x + y for x, y in zip(bottom, values, strict=True)]
    axes[1].set_title(f"decline reasons by band ({first})")
    axes[1].legend(fontsize=8)
    paths.append(out / "decline_mix.png")
    _save(fig, paths[-1])
    return paths
