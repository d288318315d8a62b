"""The benchmark's report: medians over the runs, the measures against their targets, and
the chart (latency over time, placements confirmed per second)."""

from __future__ import annotations

import statistics
from pathlib import Path

from services.bench.processes import SERVICES


def summarise(result: dict) -> dict:
    """Medians over the runs."""
    runs = result["runs"]

    def med(path: list[str]) -> float | None:
        values = []
        for r in runs:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None:
                values.append(v)
        return round(statistics.median(values), 3) if values else None

    summary = {
        "runs": len(runs),
        "machine_python_ms": med(["machine", "python_ms"]),
        "machine_round_trip_us": med(["machine", "round_trip_us"]),
        "fixed_rate_per_second": result["load"]["rate"],
        "latency_p50_s": med(["fixed_rate", "latency_seconds", "p50"]),
        "latency_p95_s": med(["fixed_rate", "latency_seconds", "p95"]),
        "latency_p99_s": med(["fixed_rate", "latency_seconds", "p99"]),
        "fixed_rate_events_per_second": med(["fixed_rate", "events_per_second"]),
        "sustained_placements_per_second": med(["as_fast_as_possible", "placements_per_second"]),
        "burst_events_per_second": med(["as_fast_as_possible", "events_per_second"]),
        "baseline_messages_per_second": med(["baseline", "per_second"]),
        "cpu_seconds_per_service": {n: med(["as_fast_as_possible", "cpu_seconds", n]) for n in SERVICES},
        "cpu_seconds_outside_services": {
            n: med(["as_fast_as_possible", "cpu_seconds", n]) for n in ("kafka", "postgresql", "load_generator")
        },
        # Where the fixed rate's latency goes: each step's p99 (benchmark.STAGES).
        "stage_p99_s": {
            stage: med(["fixed_rate", "stages", stage, "p99"])
            # Every run's steps, in the order a run gives them (dicts keep it; one without: none).
            for stage in dict.fromkeys(s for r in runs for s in (r["fixed_rate"].get("stages") or {}))
        },
        "machine_busy_percent": {
            "fixed_rate": med(["fixed_rate", "machine_busy_percent"]),
            "as_fast_as_possible": med(["as_fast_as_possible", "machine_busy_percent"]),
        },
        # The cold start, before the first run: reported, in no median.
        "warm_up_latency_p99_s": ((result.get("warm_up") or {}).get("latency_seconds") or {}).get("p99"),
        "peak_rss_mb": result.get("peak_rss_mb"),
        "idle_cpu_percent": result.get("idle_cpu_percent"),
        # The machine's whole work per request in the burst, every process counted: the figure
        # that least depends on what else the machine is doing (throughput on two cores is about
        # 2,000 divided by it).
        "cpu_ms_per_request": med(["as_fast_as_possible", "cpu_ms_per_request"]),
        "statements_per_request": {
            role: {
                key: med(["as_fast_as_possible", "statements_per_request", role, key])
                for key in ("calls", "commits", "exec_ms")
            }
            for role in sorted(
                {role for r in runs for role in (r.get("as_fast_as_possible", {}).get("statements_per_request") or {})}
            )
        },
    }
    if summary["burst_events_per_second"] and summary["baseline_messages_per_second"]:
        summary["events_vs_baseline"] = round(
            summary["burst_events_per_second"] / summary["baseline_messages_per_second"], 3
        )
    return summary


def title(result: dict) -> str:
    """What the figures are: medians of how many runs, on how many CPUs, how loaded at the start,
    and the code the services ran (folder, commit, ``+ changes`` when its files differ from it)."""
    s = result["summary"]
    said = (
        f"benchmark: medians of {s['runs']} run(s), {result.get('instances', 1)} instance(s) of each service; "
        f"{result['machine']['cpus']} CPUs, "
        f"load average {result['machine']['load_average_at_start'][0]:.1f} at start"
    )
    code = result.get("code")  # not in results recorded before the thirteenth session
    if code:
        version = (code["commit"] or "")[:12] or "no git commit"
        version += " + changes" if code["changed"] else ""
        said += f"; code: {code['folder']} at {version}"
    return said


def measures(result: dict) -> list[tuple[str, str, str]]:
    """The report's rows: (measure, value as shown, target or ""), from ``result["summary"]``."""
    s = result["summary"]
    rate = f"{s['fixed_rate_per_second']:g}"
    rows = [
        (f"latency p50 at {rate} req/s (s)", _f(s["latency_p50_s"]), ""),
        (f"latency p95 at {rate} req/s (s)", _f(s["latency_p95_s"]), ""),
        (f"latency p99 at {rate} req/s (s)", _f(s["latency_p99_s"]), "< 1"),
        ("Kafka events/s at the fixed rate", _f(s["fixed_rate_events_per_second"]), ""),
    ]
    if s.get("stage_p99_s"):
        rows.append(
            (
                "p99 s of each step at the fixed rate: " + ", ".join(s["stage_p99_s"]).replace("_", " "),
                " / ".join(_f(v) for v in s["stage_p99_s"].values()),
                "",
            )
        )
    if s.get("warm_up_latency_p99_s") is not None:
        rows.append((f"latency p99 in the warm-up at {rate} req/s, cold (s)", _f(s["warm_up_latency_p99_s"]), ""))
    busy = s.get("machine_busy_percent") or {}
    if busy.get("fixed_rate") is not None:
        rows.append(
            (
                "machine's CPUs busy, %: at the fixed rate / as fast as possible",
                f"{_f(busy['fixed_rate'])} / {_f(busy.get('as_fast_as_possible'))}",
                "",
            )
        )
    rows += [
        (
            "sustained placements/s, as fast as possible (first request to last confirmation)",
            _f(s["sustained_placements_per_second"]),
            ">= 100",
        ),
        ("Kafka events/s, as fast as possible", _f(s["burst_events_per_second"]), ""),
        ("baseline consume-then-produce msgs/s", _f(s["baseline_messages_per_second"]), ""),
        ("pipeline events/s as a share of the baseline", _f(s.get("events_vs_baseline")), ""),
    ]
    cpu, rss = s["cpu_seconds_per_service"] or {}, s["peak_rss_mb"] or {}
    # A result recorded before a service existed (reporting) has no figures for it: no row either.
    for name in [n for n in SERVICES if cpu.get(n) is not None or rss.get(n) is not None]:
        rows.append((f"{name}: CPU s in the burst", _f(cpu.get(name)), ""))
        rows.append((f"{name}: peak RSS MB", _f((s["peak_rss_mb"] or {}).get(name)), "< 250"))
    for name, seconds in (s.get("cpu_seconds_outside_services") or {}).items():  # kafka, postgresql, load_generator
        rows.append((f"{name}: CPU s in the burst", _f(seconds), ""))
    if s.get("cpu_ms_per_request") is not None:
        rows.append(("CPU ms per request in the burst, every process", _f(s["cpu_ms_per_request"]), ""))
    for role, figures in (s.get("statements_per_request") or {}).items():
        if role in SERVICES:
            rows.append(
                (
                    f"{role}: PostgreSQL statements / commits per request",
                    f"{_f(figures.get('calls'))} / {_f(figures.get('commits'))}",
                    "",
                )
            )
    if s.get("machine_python_ms") is not None:  # how fast the machine was before the runs (lower: faster)
        rows.append(("machine: a fixed piece of Python, ms", _f(s["machine_python_ms"]), ""))
        rows.append(("machine: a round trip between two processes, us", _f(s["machine_round_trip_us"]), ""))
    for name, percent in (s.get("idle_cpu_percent") or {}).items():  # the stack at rest, before the runs
        rows.append((f"{name}: CPU % of a core at rest", _f(percent), ""))
    return rows


def _f(v: object) -> str:
    return "-" if v is None else f"{v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def draw(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, run in enumerate(result["runs"]):
        series = run["fixed_rate"]["series"]
        axes[0].plot(
            [p["requested_s"] for p in series],
            [p["latency_s"] for p in series],
            ".",
            markersize=2,
            label=f"run {i + 1}",
        )
    axes[0].axhline(1.0, color="grey", linestyle="--", linewidth=1)
    axes[0].set_title(f"latency, request to confirmation stored, at {result['load']['rate']:g} req/s")
    axes[0].set_xlabel("s since the phase started")
    axes[0].set_ylabel("s")
    for i, run in enumerate(result["runs"]):
        for phase, style in (("fixed_rate", "-"), ("as_fast_as_possible", "--")):
            confirmed = sorted(p["confirmed_s"] for p in run[phase]["series"])
            if not confirmed:
                continue
            seconds = range(int(confirmed[-1]) + 1)
            counts = [0] * len(seconds)
            for c in confirmed:
                counts[int(c)] += 1
            axes[1].plot(list(seconds), counts, style, label=f"run {i + 1} {phase.replace('_', ' ')}")
    axes[1].axhline(100, color="grey", linestyle="--", linewidth=1)
    axes[1].set_title("placements confirmed per second")
    axes[1].set_xlabel("s since the phase started")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
