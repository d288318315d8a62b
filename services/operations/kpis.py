"""KPIs: how the brokerage and the market are doing over a period, computed by reading every record
of the event streams. This was how ``homecare kpis`` and the console's KPI page answered; they now
ask the reporting service (services/reporting: the same measures as SQL over its projection). It
is kept as the reference computation that the reporting KPIs are tested against, on the same
history, and for the shared arithmetic (percentile, shares and HHI, RAG).

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

import datetime as dt
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

import yaml

from schemas import topics as contract
from services.runtime import clock, topics
from services.runtime.reference import Framework, load_framework

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
    return clock.parse_instant(value)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def shares_and_hhi(hours: Mapping[str, float]) -> tuple[dict[str, float], int]:
    """Each provider's percentage of the hours, largest first, and the Herfindahl-Hirschman index
    (0-10,000; 10,000 is one provider with everything). The simulator uses it too."""
    total = sum(hours.values())
    largest_first = sorted(hours.items(), key=itemgetter(1), reverse=True)  # as Counter.most_common
    shares = {p: round(100 * h / total, 2) for p, h in largest_first} if total else {}
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
    by_type: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    current: dict[str, str] = {}  # package id -> its latest lifecycle event type
    seen: set[str | None] = set()
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

    waits_by_urgency: dict[str, list[float]] = defaultdict(list)
    waits_by_zone: dict[str, list[float]] = defaultdict(list)
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
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for e in in_care.values():
        spend[e["band"]] += Decimal(e["hourly_rate"]) * Decimal(e["hours_per_week"])

    hours_by_zone_provider: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in in_care.values():
        hours_by_zone_provider[e["zone"]][e["provider_id"]] += float(e["hours_per_week"])
    concentration = {}
    for zone, hours in sorted(hours_by_zone_provider.items()):
        shares, hhi = shares_and_hhi(hours)
        concentration[zone] = {"shares_percent": shares, "hhi": hhi, "rag": rag(hhi, thresholds.get("hhi"))}

    declines_by_band: dict[str, Counter[str]] = defaultdict(Counter)
    declines_by_rurality: dict[str, Counter[str]] = defaultdict(Counter)
    for e in by_type["OfferDeclined"]:
        if e["package_id"] in ours:
            s = spec(e["package_id"])
            declines_by_band[s["band"]][e["reason"]] += 1
            zone_of = framework.zones.get(s["zone"])  # a zone since re-drawn away is still reported
            declines_by_rurality[zone_of.size if zone_of else "unknown"][e["reason"]] += 1

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
    # Days and weeks are UK days (Europe/London): a package requested at 00:30 BST on 1 April
    # counts on 1 April, though it is still 31 March in UTC. Weeks start on Monday (ISO).
    by_day: dict[str, Counter] = defaultdict(Counter)
    for e in requested.values():
        by_day[clock.uk_date(_time(e["requested_at"])).isoformat()]["requested"] += 1
    for e in placed.values():
        by_day[clock.uk_date(_time(e["placed_at"])).isoformat()]["placed"] += 1
    starts_by_week: Counter = Counter()
    for e in by_type["PackageStarted"]:
        if e.get("package_id") in ours:
            starts_by_week[clock.uk_week_of(dt.date.fromisoformat(e["started_on"])).isoformat()] += 1

    unplaced_share = counts["unplaced"] / counts["requested"] if counts["requested"] else None
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "as_of": now.isoformat()},
        "packages": counts
        | {"unplaced_share": unplaced_share, "rag": rag(unplaced_share, thresholds.get("unplaced_share"))},
        "time_to_place": time_to_place,
        "by_uk_day": {d: {"requested": c["requested"], "placed": c["placed"]} for d, c in sorted(by_day.items())},
        "starts_by_uk_week": dict(sorted(starts_by_week.items())),
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
    # Imported here: the KPI rules are imported by commands that never read a topic.
    from services.runtime.kafka import read_topic

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


async def key_figures(
    bootstrap: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    framework: Framework | None = None,
    security: dict | None = None,
) -> dict:
    """Every KPI for packages requested in [start, end), read from the brokers at ``bootstrap``
    (the shape of :func:`compute`), with the thresholds of ``deploy/ops/kpi-thresholds.yaml``.
    ``security``: the reader's Kafka identity (default the operator's)."""
    events = await read_events(bootstrap, security)
    return compute(
        events,
        start=start,
        end=end,
        now=now,
        framework=framework or load_framework(),
        thresholds=load_thresholds(),
    )
