"""The reporting service's rules, pure Python: what a period is, which tables may be exported, and
how the figures the SQL returns become the KPI report (the shape of ``homecare kpis --json``,
:func:`services.operations.kpis.compute`, plus the measures the papers ask for beyond it).

Periods are Europe/London business dates (docs/decisions/0040): ``from=2027-03-28`` starts at
that UK midnight (23:00 UTC the day before in summer time); ``to=2027-03-31`` ends at the
following UK midnight, so the day itself is included. Either bound may instead be an ISO date and
time with a UTC offset, taken as the exact instant (``to`` then excluded), which is what ``homecare
kpis --days N`` asks for.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.vocabulary import Band
from services.operations.kpis import rag, shares_and_hhi
from services.runtime import clock
from services.runtime.reference import Framework

# What may be downloaded (GET /exports/{table}.{format}): every projection table, never the
# runtime's own (inbox, outbox). Column lists are in docs/guide/reporting-data-dictionary.md.
EXPORT_TABLES = (
    "packages",
    "offers",
    "answers",
    "placements",
    "milestones",
    "notification_outcomes",
    "providers",
    "dead_letters",
    "service_agreements",
    "service_agreement_lines",
    "weekly_commitments",
)
# Exports computed over a period (``from``, ``to``) rather than read whole from a table.
PERIOD_EXPORTS = ("weekly_commitments",)
EXPORT_FORMATS = ("csv", "parquet")
BANDS: tuple[str, ...] = tuple(b.value for b in Band)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)


class BadParameter(ValueError):
    """A query parameter the service cannot answer: ``field`` names it (the HTTP edge's 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Period:
    """Packages requested in [start, end) (UTC instants), in ``zone`` and ``band`` when given."""

    start: dt.datetime
    end: dt.datetime
    zone: str | None = None
    band: str | None = None


def _within_the_calendar(field: str, day: dt.date) -> None:
    """Days a period may have (clock.EARLIEST_DAY to LATEST_DAY): 9999-12-31 plus a day overflowed."""
    try:
        clock.check_within_the_calendar(day)
    except ValueError as exc:
        raise BadParameter(field, str(exc)) from None


def _bound(field: str, value: str, *, end: bool) -> dt.datetime:
    value = value.strip()
    if _DATE.match(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise BadParameter(field, f"{value!r} is not a calendar date") from None
        _within_the_calendar(field, day)
        return clock.uk_day_start(day + dt.timedelta(days=1) if end else day)
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(field, f"{value!r} is neither a date (2027-03-28) nor a date and time") from None
    _within_the_calendar(field, at.date())
    if at.tzinfo is None:
        raise BadParameter(field, f"{value!r} has no UTC offset (add Z or +01:00), or give a date")
    return at.astimezone(dt.UTC)


def period(
    start: str | None,
    end: str | None,
    *,
    zone: str | None,
    band: str | None,
    zones: Iterable[str],
    now: dt.datetime,
    default_days: int = 7,
) -> Period:
    """The period of ``GET /kpis``: ``from``/``to`` as UK dates (``to`` included) or ISO instants
    (``to`` excluded); without ``to``, up to ``now``; without ``from``, ``default_days`` before
    the end. Raises :class:`BadParameter` naming ``from``, ``to``, ``zone`` or ``band``."""
    finish = _bound("to", end, end=True) if end else now
    begin = _bound("from", start, end=False) if start else finish - dt.timedelta(days=default_days)
    if begin >= finish:
        raise BadParameter("from", "must be before to")
    if zone is not None and zone not in set(zones):
        raise BadParameter("zone", f"unknown zone {zone!r}")
    if band is not None and band not in BANDS:
        raise BadParameter("band", f"unknown band {band!r} (one of {', '.join(BANDS)})")
    return Period(begin, finish, zone, band)


def export_of(name: str) -> tuple[str, str]:
    """``packages.csv`` -> (``packages``, ``csv``); raises :class:`BadParameter` naming ``table``
    or ``format`` for a table that is not exported or a format other than csv/parquet."""
    table, dot, fmt = name.rpartition(".")
    if not dot:
        raise BadParameter("format", f"{name!r} has no format: add .csv or .parquet")
    if table not in EXPORT_TABLES:
        raise BadParameter("table", f"unknown table {table!r} (one of {', '.join(EXPORT_TABLES)})")
    if fmt not in EXPORT_FORMATS:
        raise BadParameter("format", f"unknown format {fmt!r} (csv or parquet)")
    return table, fmt


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def report(
    figures: Mapping[str, Any],
    *,
    period: Period,
    now: dt.datetime,
    framework: Framework,
    thresholds: Mapping[str, Any],
    budgets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The KPI report from the rows of :func:`services.reporting.repository.kpi_figures`: the
    measures and shape of :func:`services.operations.kpis.compute` (so ``homecare kpis`` and the
    console read it unchanged), with RAG per measure from ``thresholds``
    (deploy/ops/kpi-thresholds.yaml), and the papers' further measures under ``more``."""
    budgets = budgets or {}
    counts = dict(figures["counts"])
    p90_rules = thresholds.get("time_to_place_p90_s", {})

    def summary(row: Mapping[str, Any]) -> dict[str, Any]:
        return {"count": row["count"], "median_s": _seconds(row["median_s"]), "p90_s": _seconds(row["p90_s"])}

    time_to_place = {
        "by_urgency": {
            r["key"]: summary(r) | {"rag": rag(_seconds(r["p90_s"]), p90_rules.get(r["key"]))}
            for r in figures["by_urgency"]
        },
        "by_zone": {r["key"]: summary(r) for r in figures["by_zone"]},
    }
    queue = [
        {
            "zone": r["zone"],
            "band": r["band"],
            "packages": r["packages"],
            "hours": str(r["hours"]),
            "longest_wait_s": float(r["longest_wait_s"]),
        }
        for r in figures["queue"]
    ]
    hours: dict[str, dict[str, float]] = {}
    for r in figures["hours_by_zone_provider"]:
        hours.setdefault(r["zone"], {})[r["provider_id"]] = float(r["hours"])
    concentration = {}
    for zone, by_provider in sorted(hours.items()):
        shares, hhi = shares_and_hhi(by_provider)
        concentration[zone] = {"shares_percent": shares, "hhi": hhi, "rag": rag(hhi, thresholds.get("hhi"))}
    declines_by_band: dict[str, dict[str, int]] = {}
    declines_by_rurality: dict[str, dict[str, int]] = {}
    for r in figures["declines"]:
        by_band = declines_by_band.setdefault(r["band"], {})
        by_band[r["reason"]] = by_band.get(r["reason"], 0) + r["n"]
        zone_of = framework.zones.get(r["zone"])  # a zone since re-drawn away is still reported
        by_size = declines_by_rurality.setdefault(zone_of.size if zone_of else "unknown", {})
        by_size[r["reason"]] = by_size.get(r["reason"], 0) + r["n"]
    willing: dict[str, set[str]] = {}
    for r in figures["bidders"]:
        willing.setdefault(r["zone"], set()).add(r["provider_id"])
    zones = [period.zone] if period.zone else list(framework.zones)
    thin = sorted(z for z in zones if len(willing.get(z, ())) < 2)
    by_day: dict[str, dict[str, int]] = {}
    for r in figures["by_day"]:
        by_day.setdefault(r["day"].isoformat(), {"requested": 0, "placed": 0})[r["kind"]] = r["n"]
    above = list(figures["above_rate"])
    unplaced_share = counts["unplaced"] / counts["requested"] if counts["requested"] else None
    return {
        "period": {
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "as_of": now.isoformat(),
            "zone": period.zone,
            "band": period.band,
        },
        "packages": counts
        | {"unplaced_share": unplaced_share, "rag": rag(unplaced_share, thresholds.get("unplaced_share"))},
        "time_to_place": time_to_place,
        "by_uk_day": dict(sorted(by_day.items())),
        "starts_by_uk_week": {r["week"].isoformat(): r["n"] for r in figures["starts_by_week"]},
        "unplaced_queue": queue,
        "above_rate_exceptions": {
            "count": len(above),
            "packages": above,
            "rag": rag(len(above), thresholds.get("above_rate_exceptions")),
        },
        "weekly_spend_by_band": {
            r["band"]: str(Decimal(r["spend"]).quantize(Decimal("0.01"))) for r in figures["spend_by_band"]
        },
        "concentration_by_zone": concentration,
        "declines_by_band": dict(sorted(declines_by_band.items())),
        "declines_by_rurality": dict(sorted(declines_by_rurality.items())),
        "zones_with_fewer_than_two_willing_providers": {
            "zones": thin,
            "rag": rag(len(thin), thresholds.get("thin_zones")),
        },
        "more": more_measures(figures, framework=framework, thresholds=thresholds, budgets=budgets),
    }


def more_measures(
    figures: Mapping[str, Any],
    *,
    framework: Framework,
    thresholds: Mapping[str, Any],
    budgets: Mapping[str, Any],
) -> dict[str, Any]:
    """The papers' measures beyond the first KPI page, over the period's events (not its cohort):
    care packages started per UK week, people and carer hours in care at the period's end (and the
    average hours per person), hand-backs by provider, above-rate exceptions asked for and decided,
    the committed weekly spend at the end against the weekly budget per band (pounds per week: the
    weekly cost of the service agreement records in force on the period's last UK day, decision 0118;
    ``budgets``: deploy/ops/budgets.yaml), and the decline mix per UK week by band and rurality."""
    care = figures["in_care"]
    people = care["people"]
    weekly_budget = budgets.get("weekly_budget_by_band", {})
    spend = {r["band"]: Decimal(r["spend"]) for r in figures["spend_in_care_by_band"]}
    against_budget = {}
    for band in sorted(set(spend) | set(weekly_budget)):
        budget = Decimal(str(weekly_budget[band])) if band in weekly_budget else None
        share = float(spend.get(band, Decimal(0)) / budget) if budget else None
        against_budget[band] = {
            "weekly_spend": str(spend.get(band, Decimal(0)).quantize(Decimal("0.01"))),
            "weekly_budget": str(budget) if budget is not None else None,
            "share": round(share, 4) if share is not None else None,
            "rag": rag(share, thresholds.get("spend_against_budget")),
        }
    trend: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for r in figures["declines_by_week"]:
        week = trend.setdefault(r["week"].isoformat(), {"by_band": {}, "by_rurality": {}})
        zone_of = framework.zones.get(r["zone"])
        for group, key in (("by_band", r["band"]), ("by_rurality", zone_of.size if zone_of else "unknown")):
            reasons = week[group].setdefault(key, {})
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + r["n"]
    return {
        "spend_against_budget": against_budget,
        "declines_by_uk_week": trend,
        "starts_in_period_by_uk_week": {r["week"].isoformat(): r["n"] for r in figures["starts_in_period"]},
        "in_care_at_end": {
            "people": people,
            "hours_per_week": str(care["hours"] or 0),
            "average_hours_per_person": (
                str((Decimal(care["hours"]) / people).quantize(Decimal("0.01"))) if people else None
            ),
        },
        "hand_backs_by_provider": {r["provider_id"]: r["n"] for r in figures["hand_backs_by_provider"]},
        "exceptions": dict(figures["exceptions"]),
        "hospital_discharge": discharge_measure(figures["discharges"], thresholds),
    }


# The papers' baseline: "65% of the patients that are discharged on these pathways leave on the day or
# the day after they become medically fit" (../shared/reference/000:66-68).
DISCHARGE_BASELINE = 0.65


def discharge_measure(row: Mapping[str, Any], thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """Hospital discharges with their medically-fit UK date in the period (decision record 0097): how
    many, how many had care at home on day 0 or 1 of being medically fit (the first day of an in-house
    referral or of a provider's care), the share (None with no discharges) against the papers' baseline
    of 65% (000:66-68) with its RAG (``discharge_day_0_or_1_share`` in deploy/ops/kpi-thresholds.yaml),
    and how many an in-house service took (reablement, crisis response)."""
    discharges = row["discharges"]
    share = row["day_0_or_1"] / discharges if discharges else None
    return {
        "discharges": discharges,
        "home_on_day_0_or_1": row["day_0_or_1"],
        "share_day_0_or_1": round(share, 4) if share is not None else None,
        "baseline_share": DISCHARGE_BASELINE,
        "with_care": row["with_care"],
        "still_waiting": discharges - row["with_care"],
        "referred_to_reablement": row["reablement"],
        "referred_to_crisis_response": row["crisis_response"],
        "rag": rag(share, thresholds.get("discharge_day_0_or_1_share")),
    }


# ---- reports for commissioners (decision 0105) -------------------------------------------
# Town bands and rural bands: a provider declining rural and isolated packages much more often than
# town ones while winning the town ones is the cherry-picking the commissioning report warns of
# (004:1033-1035).
TOWN_BANDS = ("urban", "fringe")
RURAL_BANDS = ("rural", "isolated")
INTERVALS = ("week", "month")


def market_share_report(rows: Iterable[Any], framework: Framework) -> dict[str, Any]:
    """Per zone and UK period (week or month, by its first day): each provider's placements, hours
    and share of the hours (percent), and the HHI (0-10,000; above 2,500 is highly concentrated by
    the usual competition-authority reading). Zones are the framework's, plus any since re-drawn."""
    cells: dict[str, dict[str, dict[str, tuple[int, float]]]] = {}
    for r in rows:
        cells.setdefault(r["zone"], {}).setdefault(r["period"].isoformat(), {})[r["provider_id"]] = (
            int(r["placements"]),
            float(r["hours"]),
        )
    zones: dict[str, Any] = {}
    for zone in sorted(set(framework.zones) | set(cells)):
        periods = []
        for period, by_provider in sorted(cells.get(zone, {}).items()):
            shares, hhi = shares_and_hhi({p: h for p, (_, h) in by_provider.items()})
            periods.append(
                {
                    "period": period,
                    "placements": sum(n for n, _ in by_provider.values()),
                    "hours_per_week": round(sum(h for _, h in by_provider.values()), 2),
                    "hhi": hhi,
                    "providers": [
                        {
                            "provider_id": p,
                            "placements": by_provider[p][0],
                            "hours_per_week": round(by_provider[p][1], 2),
                            "share_percent": share,
                        }
                        for p, share in shares.items()
                    ],
                }
            )
        zones[zone] = periods
    return {"zones": zones}


def decline_mix_report(rows: Iterable[Any], framework: Framework) -> dict[str, Any]:
    """Per provider: answers and declines by band and by rurality (the zone's size), decline reasons,
    and ``rural_minus_town_decline_points``: its decline rate on rural and isolated packages less
    its rate on urban and fringe ones, in percentage points (None without answers in both)."""
    providers: dict[str, dict[str, Any]] = {}
    for r in rows:
        p = providers.setdefault(
            r["provider_id"], {"by_band": {}, "by_rurality": {}, "decline_reasons": {}, "answers": 0, "declines": 0}
        )
        n, declined = int(r["answers"]), r["kind"] == "decline"
        zone = framework.zones.get(r["zone"])
        for group, key in (("by_band", r["band"]), ("by_rurality", zone.size if zone else "unknown")):
            cell = p[group].setdefault(key, {"answers": 0, "declines": 0})
            cell["answers"] += n
            cell["declines"] += n if declined else 0
        p["answers"] += n
        if declined:
            p["declines"] += n
            p["decline_reasons"][r["reason"]] = p["decline_reasons"].get(r["reason"], 0) + n
    for p in providers.values():
        for group in ("by_band", "by_rurality"):
            for cell in p[group].values():
                cell["decline_percent"] = round(100 * cell["declines"] / cell["answers"], 1)
        p["rural_minus_town_decline_points"] = cherry_picking_signal(p["by_band"])
    return {"providers": dict(sorted(providers.items()))}


def cherry_picking_signal(by_band: Mapping[str, Mapping[str, int]]) -> float | None:
    """Decline rate on rural bands less the rate on town bands, in percentage points."""

    def rate(bands: tuple[str, ...]) -> float | None:
        answers = sum(by_band.get(b, {}).get("answers", 0) for b in bands)
        declines = sum(by_band.get(b, {}).get("declines", 0) for b in bands)
        return None if answers == 0 else 100 * declines / answers

    rural, town = rate(RURAL_BANDS), rate(TOWN_BANDS)
    return None if rural is None or town is None else round(rural - town, 1)


def provider_quality_report(rows: Iterable[Any], start: dt.datetime) -> dict[str, Any]:
    """Per provider (highest risk, then lowest score first): the register now (its latest change
    before the period's end) and at the period's start, the score's change over the period
    (``trend``: up, down, level, or new when nothing was recorded before it) and each change in it."""
    latest: dict[str, Any] = {}
    at_start: dict[str, Any] = {}
    changes: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        latest[r["provider_id"]] = r
        if r["recorded_at"] < start:
            at_start[r["provider_id"]] = r
        else:
            changes.setdefault(r["provider_id"], []).append(
                {"at": r["recorded_at"], "change": r["change"], "quality_score": str(r["quality_score"])}
            )
    order = {"high": 0, "medium": 1, "low": 2}
    out = []
    for pid, r in sorted(latest.items(), key=lambda kv: (order.get(kv[1]["local_risk"], 3), kv[1]["quality_score"])):
        before = at_start.get(pid)
        score, was = Decimal(r["quality_score"]), None if before is None else Decimal(before["quality_score"])
        trend = "new" if was is None else "up" if score > was else "down" if score < was else "level"
        out.append(
            {
                "provider_id": pid,
                "name": r["name"],
                "status": r["status"],
                "cqc_rating": r["cqc_rating"],
                "cqc_inspected_on": r["cqc_inspected_on"],
                "local_risk": r["local_risk"],
                "quality_score": str(score),
                "quality_score_at_start": None if was is None else str(was),
                "trend": trend,
                "hand_backs_12m": r["hand_backs_12m"],
                "late_starts_12m": r["late_starts_12m"],
                "open_complaints": r["open_complaints"],
                "open_improvement_plans": r["open_improvement_plans"],
                "changes_in_period": changes.get(pid, []),
            }
        )
    return {"providers": out}


def coverage_gaps_report(serving: Iterable[Any], willing: Iterable[Any], framework: Framework) -> dict[str, Any]:
    """Per zone of the framework: the active providers serving it and those that bid for a package
    in it during the period; ``gap`` when fewer than two were willing (each zone should have at
    least two providers: 004:970)."""
    serves: dict[str, list[str]] = {}
    for r in serving:
        for zone in r["zones"]:
            serves.setdefault(zone, []).append(r["provider_id"])
    bid = {r["zone"]: list(r["providers"]) for r in willing}
    zones = {
        zone: {
            "size": framework.zones[zone].size,
            "active_providers": sorted(serves.get(zone, [])),
            "willing_providers": bid.get(zone, []),
            "gap": len(bid.get(zone, [])) < 2,
        }
        for zone in sorted(framework.zones)
    }
    return {"zones": zones, "gaps": [z for z, v in zones.items() if v["gap"]]}


# ---- the weekly commitment by provider and funder (decision 0118) ------------------------

PENNY = Decimal("0.01")
# A row of the report (and, with its week, of the weekly_commitments export).
COMMITMENT_ROW = ("provider_id", "provider_name", "payer", "pounds", "hours_per_week")
COMMITMENT_EXPORT_COLUMNS = ["week_commencing", *COMMITMENT_ROW]
MAX_COMMITMENT_WEEKS = 530  # ten years of UK weeks in one answer


def commitment_weeks(p: Period) -> tuple[dt.date, dt.date]:
    """The Mondays of the first and last UK weeks a period touches (its start's week to the week of its
    last instant). Raises :class:`BadParameter` naming ``from`` for more than
    :data:`MAX_COMMITMENT_WEEKS` weeks."""
    first = clock.uk_week_of(clock.uk_date(p.start))
    last = clock.uk_week_of(clock.uk_date(p.end - dt.timedelta(microseconds=1)))
    if (last - first).days // 7 + 1 > MAX_COMMITMENT_WEEKS:
        raise BadParameter("from", f"the period spans more than {MAX_COMMITMENT_WEEKS} weeks: ask for less")
    return first, last


def _half_up(value: Decimal, places: Decimal = PENNY) -> Decimal:
    return value.quantize(places, rounding="ROUND_HALF_UP")


def commitment_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The repository's sums (:func:`repository.weekly_commitments`) as rows: per UK week, provider
    and payer, ``pounds`` (pounds in the week: pounds per week x days / 7, rounded to the penny half up
    once, as the brokerage's ``/service-agreements/commitments``) and ``hours_per_week`` (carer hours
    per week x days / 7, the payer's share of them in proportion to its pounds, to two decimals)."""
    return [
        {
            "week_commencing": r["week"],
            "provider_id": r["provider_id"],
            "provider_name": r["provider_name"] or "",
            "payer": r["payer"],
            "pounds": _half_up(Decimal(r["pound_days"]) / 7),
            "hours_per_week": _half_up(Decimal(r["hour_days"] or 0) / 7),
            "agreements": r["agreements"],
        }
        for r in rows
    ]


def commitment_report(rows: Iterable[Any], first: dt.date, last: dt.date) -> dict[str, Any]:
    """``{weeks: [{week_commencing, week_ending, rows: [{provider_id, provider_name, payer, pounds,
    hours_per_week}], by_provider: {id: {pounds, hours_per_week, agreements}}, by_payer: {payer:
    pounds}, total, hours_per_week}]}``, one entry for every UK week from Monday ``first`` to Monday
    ``last`` (a week with nothing committed has no rows and a total of 0.00). Totals add the rounded
    rows, as the finance team's report does."""
    by_week: dict[dt.date, list[dict[str, Any]]] = {}
    for row in commitment_rows(rows):
        by_week.setdefault(row["week_commencing"], []).append(row)
    weeks = []
    week = first
    while week <= last:
        lines = by_week.get(week, [])
        by_provider: dict[str, dict[str, Any]] = {}
        by_payer: dict[str, Decimal] = {}
        for r in lines:
            p = by_provider.setdefault(
                r["provider_id"], {"pounds": Decimal(0), "hours_per_week": Decimal(0), "agreements": r["agreements"]}
            )
            p["pounds"] += r["pounds"]
            p["hours_per_week"] += r["hours_per_week"]
            by_payer[r["payer"]] = by_payer.get(r["payer"], Decimal(0)) + r["pounds"]
        weeks.append(
            {
                "week_commencing": week,
                "week_ending": week + dt.timedelta(days=6),
                "rows": [
                    {k: str(v) if isinstance(v, Decimal) else v for k, v in r.items() if k in COMMITMENT_ROW}
                    for r in lines
                ],
                "by_provider": {
                    pid: {k: str(v) if isinstance(v, Decimal) else v for k, v in p.items()}
                    for pid, p in sorted(by_provider.items())
                },
                "by_payer": {payer: str(v) for payer, v in sorted(by_payer.items())},
                "total": str(sum((r["pounds"] for r in lines), Decimal("0.00"))),
                "hours_per_week": str(sum((r["hours_per_week"] for r in lines), Decimal("0.00"))),
            }
        )
        week += dt.timedelta(days=7)
    return {"weeks": weeks}
