"""``homecare kpis``: how the brokerage and the market are doing over a period, from the event
streams (the same events everyone else sees - no reaching into the services' schemas).

Measures (domain.md, "What operations want to see"): packages requested, placed, unplaced,
cancelled and handed back; time to place (median, 90th percentile) by urgency and by zone;
unplaced packages and hours by zone and band with their current waits; above-rate exceptions;
committed weekly spend by band; each provider's share of placed hours per zone and the zone's
concentration index (HHI, 0-10,000); decline reasons by band and by rurality (the
cherry-picking signal); zones with fewer than two willing providers (providers that bid in the
zone during the period). Each measure with a threshold gets a RAG status from
``deploy/ops/kpi-thresholds.yaml`` - set per measure, not a blanket +/-10% (004:1401).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from schemas import topics as contract
from services.runtime import topics
from services.runtime.kafka import read_topic
from services.runtime.reference import Framework, load_framework
from services.runtime.settings import admin_settings

LIFECYCLE = {
    "PackageRequested",
    "OfferMade",
    "PackagePlaced",
    "PackageUnplaced",
    "PackageCancelled",
    "PackageStarted",
    "ExceptionRequested",
    "ExceptionDecided",
    "PackageHandedBack",
}
THRESHOLDS = Path(__file__).resolve().parents[2] / "deploy" / "ops" / "kpi-thresholds.yaml"


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def shares_and_hhi(hours: Counter) -> tuple[dict[str, float], int]:
    """Each provider's percentage of the hours, largest first, and the Herfindahl-Hirschman index
    (0-10,000; 10,000 is one provider with everything). The simulator uses it too."""
    total = sum(hours.values())
    shares = {p: round(100 * h / total, 2) for p, h in hours.most_common()} if total else {}
    return shares, round(sum(s * s for s in shares.values()))


def rag(value: float | None, rule: dict | None) -> str | None:
    """green/amber/red for a value under a rule {green: x, amber: y, better: lower|higher}."""
    if value is None or not rule:
        return None
    lower_is_better = rule.get("better", "lower") == "lower"
    green, amber = rule["green"], rule["amber"]
    if lower_is_better:
        return "green" if value <= green else "amber" if value <= amber else "red"
    return "green" if value >= green else "amber" if value >= amber else "red"


def compute(
    events: list[dict],
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    framework: Framework,
    thresholds: dict | None = None,
) -> dict:
    """Every KPI for packages requested in [start, end), from their events. Pure: no I/O."""
    thresholds = thresholds or {}
    by_type: dict[str, list[dict]] = defaultdict(list)
    current: dict[str, str] = {}  # package id -> its latest lifecycle event type
    seen: set[str] = set()
    for e in events:  # in stream order; a package's events share a partition, so stay in order
        if e.get("event_id") in seen:
            continue  # the relay delivers at least once: a republished event counts once
        seen.add(e.get("event_id"))
        by_type[e.get("event_type")].append(e)
        if e.get("event_type") in LIFECYCLE:
            current[e["package_id"]] = e["event_type"]
    requested = {e["package_id"]: e for e in by_type["PackageRequested"] if start <= _time(e["requested_at"]) < end}
    ours = set(requested)
    offers = [e for e in by_type["OfferMade"] if e["package_id"] in ours]
    band_rate = {e["package_id"]: Decimal(e["band_rate"]) for e in offers}
    cancelled = {e["package_id"] for e in by_type["PackageCancelled"] if e["package_id"] in ours}
    placed = {e["package_id"]: e for e in by_type["PackagePlaced"] if e["package_id"] in ours}
    in_care = {p: e for p, e in placed.items() if p not in cancelled}  # committed hours and spend
    unplaced = {p for p in ours if current.get(p) == "PackageUnplaced"}  # on the waiting list now

    def spec(package_id: str) -> dict:
        return requested[package_id]["package"]

    waits_by_urgency, waits_by_zone = defaultdict(list), defaultdict(list)
    for package_id, e in placed.items():
        seconds = (_time(e["placed_at"]) - _time(requested[package_id]["requested_at"])).total_seconds()
        waits_by_urgency[spec(package_id)["urgency"]].append(seconds)
        waits_by_zone[spec(package_id)["zone"]].append(seconds)

    def summary(values: list[float]) -> dict:
        return {
            "count": len(values),
            "median_s": statistics.median(values) if values else None,
            "p90_s": percentile(values, 90),
        }

    time_to_place = {
        "by_urgency": {
            u: summary(v) | {"rag": rag(percentile(v, 90), thresholds.get("time_to_place_p90_s", {}).get(u))}
            for u, v in sorted(waits_by_urgency.items())
        },
        "by_zone": {z: summary(v) for z, v in sorted(waits_by_zone.items())},
    }

    queue: dict[tuple[str, str], dict] = {}
    for package_id in unplaced:
        s = spec(package_id)
        row = queue.setdefault(
            (s["zone"], s["band"]),
            {"zone": s["zone"], "band": s["band"], "packages": 0, "hours": Decimal(0), "longest_wait_s": 0.0},
        )
        row["packages"] += 1
        row["hours"] += Decimal(s["hours_per_week"])
        row["longest_wait_s"] = max(
            row["longest_wait_s"], (now - _time(requested[package_id]["requested_at"])).total_seconds()
        )

    above_rate = [
        p for p, e in placed.items() if Decimal(e["hourly_rate"]) > band_rate.get(p, Decimal(e["hourly_rate"]))
    ]
    spend = defaultdict(Decimal)
    for e in in_care.values():
        spend[e["band"]] += Decimal(e["hourly_rate"]) * Decimal(e["hours_per_week"])

    hours_by_zone_provider: dict[str, Counter] = defaultdict(Counter)
    for e in in_care.values():
        hours_by_zone_provider[e["zone"]][e["provider_id"]] += float(e["hours_per_week"])
    concentration = {}
    for zone, hours in sorted(hours_by_zone_provider.items()):
        shares, hhi = shares_and_hhi(hours)
        concentration[zone] = {"shares_percent": shares, "hhi": hhi, "rag": rag(hhi, thresholds.get("hhi"))}

    declines_by_band, declines_by_rurality = defaultdict(Counter), defaultdict(Counter)
    for e in by_type["OfferDeclined"]:
        if e["package_id"] in ours:
            s = spec(e["package_id"])
            declines_by_band[s["band"]][e["reason"]] += 1
            zone = framework.zones.get(s["zone"])  # a zone since re-drawn away is still reported
            declines_by_rurality[zone.size if zone else "unknown"][e["reason"]] += 1

    willing = defaultdict(set)
    for e in by_type["BidSubmitted"]:
        if e["package_id"] in ours:
            willing[spec(e["package_id"])["zone"]].add(e["provider_id"])
    thin = sorted(z for z in framework.zones if len(willing[z]) < 2)

    counts = {
        "requested": len(requested),
        "placed": len(placed),
        "unplaced": len(unplaced),
        "cancelled": len(cancelled),
        "awaiting_approval": len([p for p in ours if current.get(p) == "ExceptionRequested"]),
        "handed_back": len([e for e in by_type["PackageHandedBack"] if e.get("package_id") in ours]),
    }
    unplaced_share = counts["unplaced"] / counts["requested"] if counts["requested"] else None
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "as_of": now.isoformat()},
        "packages": counts
        | {"unplaced_share": unplaced_share, "rag": rag(unplaced_share, thresholds.get("unplaced_share"))},
        "time_to_place": time_to_place,
        "unplaced_queue": [v | {"hours": str(v["hours"])} for _, v in sorted(queue.items())],
        "above_rate_exceptions": {
            "count": len(above_rate),
            "packages": sorted(above_rate),
            "rag": rag(len(above_rate), thresholds.get("above_rate_exceptions")),
        },
        "weekly_spend_by_band": {b: str(v.quantize(Decimal("0.01"))) for b, v in sorted(spend.items())},
        "concentration_by_zone": concentration,
        "declines_by_band": {b: dict(c) for b, c in sorted(declines_by_band.items())},
        "declines_by_rurality": {r: dict(c) for r, c in sorted(declines_by_rurality.items())},
        "zones_with_fewer_than_two_willing_providers": {
            "zones": thin,
            "rag": rag(len(thin), thresholds.get("thin_zones")),
        },
    }


async def read_events(bootstrap: str, security: dict | None = None) -> list[dict]:
    events = []
    records = []
    for name in (contract.PACKAGES, contract.ANSWERS):
        records += await read_topic(bootstrap, topics.resolve(name), security=security)
    # Per partition in offset order (a package's lifecycle order); across topics by time.
    for record in sorted(records, key=lambda r: (r.timestamp, r.topic, r.partition, r.offset)):
        try:
            event = json.loads(record.value)
        except (ValueError, TypeError):  # garbage, or a tombstone
            continue
        if isinstance(event, dict) and "package_id" in event and "event_type" in event:
            events.append(event)
    return events


def load_thresholds(path: Path = THRESHOLDS) -> dict:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def kpis(
    days: float = typer.Option(7, help="Period: packages requested in the last N days"),
    since: str = typer.Option(None, help="Period start (ISO date/time), instead of --days"),
    until: str = typer.Option(None, help="Period end (ISO date/time); default now"),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of tables"),
) -> None:
    """Brokerage and market KPIs over a period, with RAG status per measure."""
    now = dt.datetime.now(dt.UTC)
    end = dt.datetime.fromisoformat(until).astimezone(dt.UTC) if until else now
    start = dt.datetime.fromisoformat(since).astimezone(dt.UTC) if since else end - dt.timedelta(days=days)
    events = asyncio.run(read_events(admin_settings().kafka_bootstrap_servers))
    result = compute(events, start=start, end=end, now=now, framework=load_framework(), thresholds=load_thresholds())
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    console = Console()
    p = result["packages"]
    console.print(
        f"[bold]{p['requested']}[/bold] requested, {p['placed']} placed, {p['unplaced']} unplaced, "
        f"{p['cancelled']} cancelled, {p['handed_back']} handed back  "
        f"({result['period']['start'][:16]} to {result['period']['end'][:16]})  unplaced share: {_rag(p['rag'])}"
    )
    t = Table(title="time to place by urgency")
    for col in ("urgency", "placed", "median", "90th percentile", "RAG"):
        t.add_column(col)
    for urgency, row in result["time_to_place"]["by_urgency"].items():
        t.add_row(urgency, str(row["count"]), _secs(row["median_s"]), _secs(row["p90_s"]), _rag(row["rag"]))
    console.print(t)
    q = Table(title="unplaced queue by zone and band")
    for col in ("zone", "band", "packages", "hours/week", "longest wait"):
        q.add_column(col)
    for row in result["unplaced_queue"]:
        q.add_row(row["zone"], row["band"], str(row["packages"]), row["hours"], _secs(row["longest_wait_s"]))
    console.print(q)
    c = Table(title="provider concentration by zone (HHI 0-10,000)")
    for col in ("zone", "HHI", "largest share", "RAG"):
        c.add_column(col)
    for zone, row in result["concentration_by_zone"].items():
        top = next(iter(row["shares_percent"].items()))
        c.add_row(zone, str(row["hhi"]), f"{top[0]} {top[1]}%", _rag(row["rag"]))
    console.print(c)
    d = Table(title="decline reasons by band (cherry-picking signal)")
    reasons = sorted({r for row in result["declines_by_band"].values() for r in row})
    d.add_column("band")
    for r in reasons:
        d.add_column(r, justify="right")
    for band, row in result["declines_by_band"].items():
        d.add_row(band, *[str(row.get(r, 0)) for r in reasons])
    console.print(d)
    console.print("weekly spend by band: " + ", ".join(f"{b} £{v}" for b, v in result["weekly_spend_by_band"].items()))
    console.print(f"above-rate exceptions: {result['above_rate_exceptions']['count']}")
    thin = result["zones_with_fewer_than_two_willing_providers"]
    console.print(
        f"zones with fewer than two willing providers: {', '.join(thin['zones']) or 'none'} {_rag(thin['rag'])}"
    )


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 3600:.1f} h" if value >= 3600 else f"{value / 60:.1f} min"


def _rag(value: str | None) -> str:
    return {"green": "[green]GREEN[/green]", "amber": "[yellow]AMBER[/yellow]", "red": "[red]RED[/red]"}.get(
        value or "", "-"
    )
