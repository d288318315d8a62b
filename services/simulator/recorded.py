"""The council's own history as a simulation's input (``homecare simulate --replay PERIOD``): the
package requests recorded in a period, the providers offered them and how those answered, read
from the reporting service's projection (schema ``reporting``, as its database role, in one
read-only REPEATABLE READ transaction; decision 0087 says why the tables and not the HTTP API).

What the projection does not keep is filled in, and the docs say so (docs/guide/simulation.md):

- **the visit pattern and needs**: a package's row keeps its hours a week, not its calls or needs
  (nor its postcode district). Replayed as single-handed personal care, its hours a week spread
  over calls of at most an hour; the providers' refusals for skills, call times and double-handed
  calls are in their recorded decline rates, which is what answers in a replay;
- **the providers' profiles**: the projection keeps each provider's name, tier and status. Its
  zones are those of the packages it was offered on its zone's rounds (prime, supplementary,
  open; the zone next door if it was only ever asked as an adjacent provider), its bands those it
  was offered, every skill, double-handed calls. Its capacity: the hours in its care when the
  period began, plus room for half as much again as the work it took on in the period would
  keep in care at once (``CAPACITY_HEADROOM``), at least a large package's worth;
- **how long care lasts and hand-backs**: drawn as in the synthetic year (``DemandParams``), the
  hand-back share being the period's recorded one.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import ValidationError

from schemas.events import PackageSpec, ProviderProfile, VisitPattern
from schemas.vocabulary import Band, CareNeed
from services.providers.domain import AutomaticRules
from services.runtime import clock
from services.runtime.db import Connection
from services.runtime.reference import Framework
from services.simulator.calibration import RecordedAnswer, calibrate
from services.simulator.simulation import Demand, DemandParams, Market, Replay

CAPACITY_HEADROOM = 1.5  # room over the steady caseload its period's work implies
MIN_ROOM_HOURS = Decimal(42)  # at least a large package free (the adapters' largest, 42 h/week)


@dataclass(frozen=True)
class RecordedPackage:
    """A package request of the period, as the projection's ``packages`` row holds it."""

    package_id: uuid.UUID
    zone: str
    band: str
    urgency: str
    hours_per_week: Decimal
    funding: str | None
    start_date: dt.date
    requested_at: dt.datetime
    placed_at: dt.datetime | None
    hand_backs: int


@dataclass
class History:
    """What the projection recorded for packages requested in [start, end) (UTC instants)."""

    start: dt.datetime
    end: dt.datetime
    packages: list[RecordedPackage]
    answers: list[RecordedAnswer]  # one per provider per offer round (kind ``none``: unanswered)
    tiers: dict[str, str]  # provider -> prime/supplementary, as the registry last described it
    committed_at_start: dict[str, Decimal] = field(default_factory=dict)  # hours in its care at ``start``
    placed_hours: dict[str, Decimal] = field(default_factory=dict)  # hours placed with it in the period
    hand_backs: dict[str, int] = field(default_factory=dict)  # hand-backs it gave in the period

    @property
    def start_day(self) -> dt.date:
        return clock.uk_date(self.start)

    @property
    def days(self) -> int:
        """UK days from the start's to the end's (the last one included when the end is after its
        midnight)."""
        last = clock.uk_date(self.end - dt.timedelta(microseconds=1))
        return (last - self.start_day).days + 1


PACKAGES_SQL = """
SELECT package_id, zone, band, urgency, hours_per_week, funding, start_date, requested_at, placed_at, hand_backs
  FROM packages
 WHERE requested_at >= $1 AND requested_at < $2 AND zone IS NOT NULL
 ORDER BY requested_at, package_id"""

# Every provider of every offer round of the period's packages, with its answer if it gave one.
ROUNDS_SQL = """
SELECT p.zone, p.band, p.urgency, o.tier, op.provider_id, a.kind, a.reason, a.hourly_rate / o.band_rate AS ratio,
       extract(epoch FROM a.answered_at - o.offered_at) / 60 AS minutes
  FROM packages p
  JOIN offers o ON o.package_id = p.package_id
  CROSS JOIN LATERAL unnest(o.provider_ids) AS op(provider_id)
  LEFT JOIN answers a
    ON a.package_id = o.package_id AND a.offer_round = o.offer_round AND a.provider_id = op.provider_id
 WHERE p.requested_at >= $1 AND p.requested_at < $2 AND p.zone IS NOT NULL"""

# Hours in each provider's care when the period began (the KPIs' "in care" rule).
COMMITTED_SQL = """
SELECT provider_id, sum(placed_hours) AS hours
  FROM packages
 WHERE placed_at < $1 AND provider_id IS NOT NULL
   AND (cancelled_at IS NULL OR cancelled_at >= $1)
   AND (handed_back_at IS NULL OR handed_back_at < placed_at OR handed_back_at >= $1)
   AND (ended_on IS NULL OR (ended_on::timestamp AT TIME ZONE 'Europe/London') >= $1)
 GROUP BY provider_id"""

PLACED_SQL = """
SELECT provider_id, sum(hours_per_week) AS hours FROM placements
 WHERE placed_at >= $1 AND placed_at < $2 GROUP BY provider_id"""

HAND_BACKS_SQL = """
SELECT provider_id, count(*)::int AS n FROM milestones
 WHERE event_type = 'PackageHandedBack' AND occurred_at >= $1 AND occurred_at < $2 AND provider_id IS NOT NULL
 GROUP BY provider_id"""


async def read_history(conn: Connection, start: dt.datetime, end: dt.datetime) -> History:
    """The period's history from the projection (``conn``'s search path the ``reporting``
    schema), read in one read-only snapshot so its parts agree. A row the simulator cannot use
    (a request whose columns are missing) is left out here; one the framework does not know is
    left out by :func:`replay_of`, which counts it."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        packages = [
            RecordedPackage(
                r["package_id"],
                r["zone"],
                r["band"],
                r["urgency"],
                r["hours_per_week"],
                r["funding"],
                r["start_date"],
                r["requested_at"],
                r["placed_at"],
                r["hand_backs"],
            )
            for r in await conn.fetch(PACKAGES_SQL, start, end)
            if r["band"] and r["urgency"] and r["hours_per_week"] is not None and r["start_date"]
        ]
        answers = [
            RecordedAnswer(
                r["provider_id"],
                r["band"],
                r["zone"],
                r["urgency"],
                r["tier"],
                r["kind"] or "none",
                r["reason"],
                float(r["minutes"]) if r["minutes"] is not None else None,
                float(r["ratio"]) if r["ratio"] is not None else None,
            )
            for r in await conn.fetch(ROUNDS_SQL, start, end)
            if r["band"] and r["urgency"]
        ]
        tiers = {r["provider_id"]: r["tier"] for r in await conn.fetch("SELECT provider_id, tier FROM providers")}
        committed = {r["provider_id"]: r["hours"] for r in await conn.fetch(COMMITTED_SQL, start)}
        placed = {r["provider_id"]: r["hours"] for r in await conn.fetch(PLACED_SQL, start, end)}
        hand_backs = {r["provider_id"]: r["n"] for r in await conn.fetch(HAND_BACKS_SQL, start, end)}
    return History(start, end, packages, answers, tiers, committed, placed, hand_backs)


def visit_pattern(hours_per_week: Decimal) -> VisitPattern:
    """A single-handed daily pattern giving about ``hours_per_week``: calls of at most an hour
    (at least 15 minutes, at most 6 a day)."""
    per_day = float(hours_per_week) * 60 / 7
    calls = min(6, max(1, math.ceil(per_day / 60)))
    return VisitPattern(
        calls_per_day=calls, minutes_per_call=min(180, max(15, round(per_day / calls))), carers_per_call=1
    )


def replay_of(
    history: History, framework: Framework, demand: DemandParams, *, capacity_scale: float = 1.0
) -> tuple[Replay, int]:
    """The history as a simulation's input - the demand (every request in its order, at its time
    from the period's first UK midnight: :func:`demand_of`), the market (:func:`market_of`) and
    the calibration (:func:`~services.simulator.calibration.calibrate`) - and how many requests
    were skipped (a zone or a value the framework does not know)."""
    requests, skipped = demand_of(history, framework, demand)
    market = market_of(history, framework, demand, capacity_scale)
    return Replay(history.start_day, requests, market, calibrate(history.answers)), skipped


def demand_of(history: History, framework: Framework, params: DemandParams) -> tuple[list[Demand], int]:
    """The recorded requests as the simulation's demand, and how many were skipped (a zone the
    framework does not have, or a value the contract refuses). Care lengths and hand-backs are
    drawn (seed ``params.seed``): care for ``params.mean_care_weeks`` on average, hand-backs at
    the period's recorded share of placed packages."""
    rng = random.Random(params.seed)
    origin = clock.uk_day_start(history.start_day)
    placed = [p for p in history.packages if p.placed_at is not None]
    share = sum(p.hand_backs > 0 for p in placed) / len(placed) if placed else params.hand_back_share
    requests: list[Demand] = []
    skipped = 0
    for package in history.packages:
        zone = framework.zones.get(package.zone)
        if zone is None:
            skipped += 1
            continue
        try:
            spec = PackageSpec(
                zone=package.zone,
                band=package.band,
                postcode_district=zone.postcode_districts[0],
                hours_per_week=package.hours_per_week,
                visits=visit_pattern(package.hours_per_week),
                needs=[CareNeed.personal_care],
                urgency=package.urgency,
                start_date=package.start_date,
                funding=package.funding or "council",
            )
        except ValidationError:
            skipped += 1
            continue
        care_weeks = rng.expovariate(1 / params.mean_care_weeks)
        hand_back = rng.random() * care_weeks * 168 if rng.random() < share else None
        at = (package.requested_at - origin).total_seconds() / 3600
        requests.append(Demand(len(requests), at, spec, care_weeks, hand_back))
    return requests, skipped


def market_of(history: History, framework: Framework, params: DemandParams, capacity_scale: float = 1.0) -> Market:
    """The providers offered work in the period, as the record describes them (the module's
    docstring says what is inferred). Their bids are drawn from their recorded ones
    (:meth:`Calibration.bid_ratio`); the price floors kept here (each provider's mean recorded bid
    per band times the band rate in force at the start) are for reading, the replay draws."""
    home: dict[str, Counter[str]] = defaultdict(Counter)
    next_door: dict[str, Counter[str]] = defaultdict(Counter)
    bands: dict[str, set[str]] = defaultdict(set)
    ratios: dict[tuple[str, str], list[float]] = defaultdict(list)
    prime_rounds: set[str] = set()
    for a in history.answers:
        bands[a.provider_id].add(a.band)
        if a.tier == "adjacent":
            zone = framework.zones.get(a.zone)
            next_door[a.provider_id].update(zone.adjacent if zone else ())
        else:
            home[a.provider_id][a.zone] += 1
        if a.prime_round:
            prime_rounds.add(a.provider_id)
        if a.kind == "bid" and a.rate_ratio:
            ratios[(a.provider_id, a.band)].append(a.rate_ratio)
    rates = framework.rate_card_on(history.start_day).rates
    weeks = max(1.0, history.days / 7)
    profiles, rules, floors, baseline = {}, {}, {}, {}
    for pid in sorted(bands):
        zones = sorted(z for z in home[pid] if z in framework.zones)
        if not zones and next_door[pid]:
            top = max(next_door[pid].values())
            zones = sorted(z for z, n in next_door[pid].items() if n == top and z in framework.zones)
        if not zones:
            continue  # offered only in zones this framework does not have
        committed = Decimal(history.committed_at_start.get(pid) or 0)
        steady = (
            Decimal(history.placed_hours.get(pid) or 0) / Decimal(str(weeks)) * Decimal(str(params.mean_care_weeks))
        )
        room = max(steady * Decimal(str(CAPACITY_HEADROOM)), MIN_ROOM_HOURS)
        capacity = ((committed + room) * Decimal(str(capacity_scale))).quantize(Decimal(1))
        tier = history.tiers.get(pid) or ("prime" if pid in prime_rounds else "supplementary")
        profiles[pid] = ProviderProfile(
            provider_id=pid,
            name=pid,
            tier=tier if tier in ("prime", "supplementary") else "supplementary",
            status="active",  # offered work in the period: active then
            zones=zones,
            bands=sorted(b for b in bands[pid] if b in Band._value2member_map_),
            skills=list(CareNeed),
            double_handed=True,
            cqc_rating="good",
            local_risk="low",
            hand_backs_12m=history.hand_backs.get(pid, 0),
            weekly_capacity_hours=capacity,
            committed_hours=min(committed, capacity),
        )
        rules[pid] = AutomaticRules()
        floors[pid] = {
            band: (rate * Decimal(str(_mean(ratios.get((pid, band.value)), 1.0)))).quantize(Decimal("0.01"))
            for band, rate in rates.items()
        }
        baseline[pid] = profiles[pid].committed_hours
    return Market(profiles, rules, floors, baseline)


def _mean(values: list[float] | None, default: float) -> float:
    return sum(values) / len(values) if values else default


def replay_summary(history: History, replay: Replay, skipped: int) -> dict:
    """result.json's ``replay``: the period, what was replayed and what the record itself says
    happened (requested, never placed, hours to place by urgency)."""
    by_urgency: dict[str, list[float]] = {}
    for p in history.packages:
        if p.placed_at is not None:
            by_urgency.setdefault(p.urgency, []).append((p.placed_at - p.requested_at).total_seconds() / 3600)
    return {
        "from": history.start.isoformat(),
        "to": history.end.isoformat(),
        "requests": len(history.packages),
        "replayed": len(replay.demand),
        "skipped": skipped,
        "providers": len(replay.market.profiles),
        "calibration": replay.calibration.summary(),
        "recorded": {
            "requested": len(history.packages),
            "never_placed": sum(p.placed_at is None for p in history.packages),
            "median_hours_to_place": {u: round(statistics.median(v), 2) for u, v in sorted(by_urgency.items())},
        },
    }
